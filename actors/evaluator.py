"""The evaluator: heuristic 0-100 scores of a SEQUENTIAL run's trajectory
(docs/design.md#reflexion-memory).

Heuristics (no model call, so the same trajectory always gets the same scores):

- task completion: 40 when the run finished with an answer (``ok``), +25 when the model's last
  report said ``done`` or the model finished on its own (its last turn asked for no tool and
  reported neither ``continue`` nor ``stuck``: how chat models end), +25 when a test command passed
  (exit code 0), -25 when the last test run failed, +10 when a coding task wrote files (-20
  when it wrote none), -20 when the run hit max turns.
- code quality: 50, +20 when a test file was written, +10 when any file was written,
  -10 per tool error (at most -40), +(average confidence - 50) / 5.
- efficiency: 100 × (1 - (turns - 1) / max turns), -5 per tool error, -10 per repeated
  identical tool call (same ``ToolUse.fingerprint``).
Each score is clamped to 0-100.
"""

from __future__ import annotations

import re

from protocol import Evaluation, Scores, TaskType, TurnResult
from runtime import Actor, MessageContext, handler

_EXIT = re.compile(r"exit(?:ed with)?(?: code|_code|status)?[:= ]+(-?\d+)", re.IGNORECASE)
_TEST_CMD = re.compile(r"pytest|unittest|test|npm test|jest|go test", re.IGNORECASE)
_TEST_FILE = re.compile(r"(^|/)(test_[^/]+|[^/]+_test\.\w+|[^/]+\.test\.\w+|tests?/)")


def _clamp(value: float) -> int:
    return max(0, min(100, round(value)))


def score(result: TurnResult) -> tuple[Scores, tuple[str, ...]]:
    """Score ``result`` by the rules of the module docstring; returns the scores and notes."""
    notes: list[str] = []
    steps = result.trajectory
    max_turns = max(1, result.max_turns)
    tool_errors = sum(t.is_error for s in steps for t in s.tools)
    test_runs: list[bool] = []
    calls_seen: set[tuple[str, str]] = set()
    repeats = 0
    for step in steps:
        for use in step.tools:
            key = (use.name, use.fingerprint or use.arguments)
            repeats += key in calls_seen
            calls_seen.add(key)
            if use.name == "run_command" and _TEST_CMD.search(use.arguments):
                match = _EXIT.search(use.output)
                test_runs.append(not use.is_error and match is not None and match.group(1) == "0")
    last_status = steps[-1].status if steps else ""
    finished = bool(steps) and not steps[-1].tools and last_status not in {"continue", "stuck"}
    coding = result.request.task_type in {TaskType.CODING, TaskType.DEVOPS,
                                          TaskType.DATABASE, TaskType.DOCS}
    completion = 40.0 if result.ok else 0.0
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
        await ctx.send("reflector", evaluation(result, scores, notes))


def evaluation(result: TurnResult, scores: Scores, notes: tuple[str, ...]) -> Evaluation:
    """The Evaluation of ``result`` for the reflector: the scores and the result's fields the
    reflection and the case use (its request passed on as it is)."""
    return Evaluation(
        reply_to=result.reply_to, request_id=result.request_id, role=result.role,
        request=result.request, scores=scores, notes=notes, plan=result.plan, tier=result.tier,
        ok=result.ok, turns=result.turns, trajectory=result.trajectory,
        files_written=result.files_written, cost_usd=result.usage.cost_usd)
