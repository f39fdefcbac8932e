"""The evaluator: heuristic 0-100 scores of a SEQUENTIAL run's trajectory (SPEC.md §4).

Heuristics (no model call, so the same trajectory always gets the same scores):

- task completion: 40 when the run produced an answer, +25 when the model's last report said
  ``done`` or the model finished on its own (its last turn asked for no tool and reported
  neither ``continue`` nor ``stuck``: how chat models end), +25 when a test command passed
  (exit code 0), -25 when the last test run failed, +10 when a coding task wrote files (-20
  when it wrote none), -20 when the run hit max turns.
- code quality: 50, +20 when a test file was written, +10 when any file was written,
  -10 per tool error (at most -40), +(average confidence - 50) / 5.
- efficiency: 100 × (1 - (turns - 1) / max turns), -5 per tool error, -10 per repeated
  identical tool call.
Each score is clamped to 0-100.
"""

from __future__ import annotations

import re

from actors.runtime import Actor, MessageContext, handler
from protocol import Evaluation, Scores, TaskType, TurnResult

_EXIT = re.compile(r"exit(?:ed with)?(?: code|_code|status)?[:= ]+(-?\d+)", re.IGNORECASE)
_TEST_CMD = re.compile(r"pytest|unittest|test|npm test|jest|go test", re.IGNORECASE)
_TEST_FILE = re.compile(r"(^|/)(test_[^/]+|[^/]+_test\.\w+|[^/]+\.test\.\w+|tests?/)")


def _clamp(value: float) -> int:
    return max(0, min(100, round(value)))


def score(result: TurnResult) -> tuple[Scores, tuple[str, ...]]:
    """Score ``result`` by the rules of the module docstring; returns the scores and notes."""
    from actors.llm import parse_report

    notes: list[str] = []
    steps = result.trajectory
    max_turns = max(1, result.request.max_turns)
    tool_errors = sum(r.is_error for s in steps for r in s.tool_results)
    test_runs: list[bool] = []
    calls_seen: set[tuple[str, str]] = set()
    repeats = 0
    for step in steps:
        for call, res in zip(step.tool_calls, step.tool_results, strict=False):
            key = (call.name, call.arguments)
            repeats += key in calls_seen
            calls_seen.add(key)
            if call.name == "run_command" and _TEST_CMD.search(call.arguments):
                match = _EXIT.search(res.content)
                test_runs.append(not res.is_error and match is not None and match.group(1) == "0")
    last_status = parse_report(steps[-1].text).status if steps else None
    finished = bool(steps) and not steps[-1].tool_calls and last_status not in {"continue",
                                                                                "stuck"}
    coding = result.request.classification.task_type in {TaskType.CODING, TaskType.DEVOPS,
                                                         TaskType.DATABASE, TaskType.DOCS}
    completion = 40.0 if result.ok and result.text else 0.0
    if last_status == "done" or finished:
        completion += 25
    if test_runs and test_runs[-1]:
        completion += 25
        notes.append("tests passed")
    elif test_runs:
        completion -= 25
        notes.append("last test run failed")
    if coding:
        completion += 10 if result.files_written else -20
    if len(steps) >= max_turns:
        completion -= 20
        notes.append("hit max turns")
    wrote_tests = any(_TEST_FILE.search(path) for path in result.files_written)
    average_confidence = (sum(s.confidence for s in steps) / len(steps)) if steps else 50
    quality = 50.0 + 20 * wrote_tests + 10 * bool(result.files_written)
    quality += -min(40, 10 * tool_errors) + (average_confidence - 50) / 5
    efficiency = 100 * (1 - (max(1, len(steps)) - 1) / max_turns) - 5 * tool_errors - 10 * repeats
    if tool_errors:
        notes.append(f"{tool_errors} tool errors")
    return Scores(task_completion=_clamp(completion), code_quality=_clamp(quality),
                  efficiency=_clamp(efficiency)), tuple(notes)


class Evaluator(Actor):
    """Scores each TurnResult and hands the Evaluation to the reflector."""

    role = "evaluator"

    @handler
    async def on_result(self, result: TurnResult, ctx: MessageContext) -> None:
        scores, notes = score(result)
        await ctx.emit("evaluated", detail=f"completion {scores.task_completion} quality "
                       f"{scores.code_quality} efficiency {scores.efficiency}; {', '.join(notes)}")
        await ctx.send("reflector", Evaluation(result=result, scores=scores, notes=notes))
