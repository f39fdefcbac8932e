"""Confidence and escalation rules of the agentic loop (docs/design.md#the-agentic-loop).

Pure functions over an ``EscalationMemo`` that the loop keeps (and checkpoints). A turn
escalates to the next model of the tier path when:

- confidence < 30 for 2 consecutive turns;
- the same error 3 times (a tool error with the same first line, counted over the run);
- no file changed for 5 consecutive turns;
- the model reports it is stuck (``Status: stuck``).

Confidence of a turn: the model's own report (``Confidence: NN``, else the previous value),
then the evaluator's signals: -10 per tool error in the turn (at most -30), +10 when a test
command passed (exit code 0). Clamped to 0-100.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from protocol import EscalationMemo, ToolCall, ToolResult

LOW_CONFIDENCE = 30
LOW_CONFIDENCE_TURNS = 2
SAME_ERROR_TIMES = 3
UNCHANGED_TURNS = 5
ERROR_PENALTY, MAX_ERROR_PENALTY, TEST_PASS_BONUS = 10, 30, 10

_TEST_COMMAND = re.compile(r"pytest|unittest|\btest|npm test|jest|go test", re.IGNORECASE)
_EXIT_ZERO = re.compile(r"exit code:\s*0\b")


@dataclass(frozen=True, slots=True)
class TurnSignals:
    """What one turn showed: the model's report and its tools' outcomes."""

    reported_confidence: int | None
    status: str | None
    tool_calls: tuple[ToolCall, ...]
    tool_results: tuple[ToolResult, ...]
    files_changed: int


def error_signature(result: ToolResult) -> str:
    """The part of a tool error that identifies it: its tool and first line, digits masked."""
    first = next((line for line in result.content.splitlines() if line.strip()), "")
    return f"{result.name}: {re.sub(r'[0-9]+', '#', first.strip())[:200]}"


def turn_confidence(previous: int, signals: TurnSignals) -> int:
    """The turn's confidence (rules in the module docstring)."""
    value = signals.reported_confidence if signals.reported_confidence is not None else previous
    errors = sum(r.is_error for r in signals.tool_results)
    value -= min(MAX_ERROR_PENALTY, ERROR_PENALTY * errors)
    for call, result in zip(signals.tool_calls, signals.tool_results, strict=False):
        if (call.name == "run_command" and not result.is_error
                and _TEST_COMMAND.search(call.arguments) and _EXIT_ZERO.search(result.content)):
            value += TEST_PASS_BONUS
            break
    return max(0, min(100, value))


_CAUSES = (
    ("the model reported it is stuck", "stuck"),
    ("confidence under", "low_confidence"),
    ("the same error", "repeated_error"),
    ("no file changed", "no_progress"),
)


def cause_of(reason: str) -> str:
    """The rule behind an ``observe`` reason, for the ``escalation`` and ``paused`` events'
    ``source``: ``stuck``, ``low_confidence``, ``repeated_error`` or ``no_progress`` (in the
    order of the module docstring's rules); ``other`` for any other text."""
    return next((cause for prefix, cause in _CAUSES if reason.startswith(prefix)), "other")


def observe(memo: EscalationMemo, confidence: int, signals: TurnSignals) -> str | None:
    """Update ``memo`` with one turn; return why to escalate, or None.

    A reason resets the counters that caused it, so the next model starts afresh.
    """
    memo.low_turns = memo.low_turns + 1 if confidence < LOW_CONFIDENCE else 0
    memo.unchanged_turns = 0 if signals.files_changed else memo.unchanged_turns + 1
    repeated = ""
    for result in signals.tool_results:
        if result.is_error:
            signature = error_signature(result)
            memo.errors[signature] = memo.errors.get(signature, 0) + 1
            if memo.errors[signature] >= SAME_ERROR_TIMES:
                repeated = signature
    if signals.status == "stuck":
        return "the model reported it is stuck"
    if memo.low_turns >= LOW_CONFIDENCE_TURNS:
        memo.low_turns = 0
        return f"confidence under {LOW_CONFIDENCE} for {LOW_CONFIDENCE_TURNS} turns"
    if repeated:
        count = memo.errors.pop(repeated)
        return f"the same error {count} times: {repeated}"
    if memo.unchanged_turns >= UNCHANGED_TURNS:
        memo.unchanged_turns = 0
        return f"no file changed for {UNCHANGED_TURNS} turns"
    return None
