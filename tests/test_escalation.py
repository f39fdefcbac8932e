"""Escalation triggers at their exact boundaries (docs/design.md#the-agentic-loop): 29 vs 30, 2 vs
1 turns,
3 vs 2 errors, 5 vs 4 unchanged turns, stuck."""

from __future__ import annotations

from actors.escalation import EscalationMemo, TurnSignals, observe, turn_confidence
from protocol import ToolCall, ToolResult


def _signals(*, confidence: int | None = 80, status: str | None = "continue",
             errors: tuple[str, ...] = (), changed: int = 1,
             calls: tuple[ToolCall, ...] = (), results: tuple[ToolResult, ...] = ()
             ) -> TurnSignals:
    error_results = tuple(ToolResult(call_id=str(i), name="run_command", content=text,
                                     is_error=True) for i, text in enumerate(errors))
    error_calls = tuple(ToolCall(call_id=str(i), name="run_command") for i in range(len(errors)))
    return TurnSignals(reported_confidence=confidence, status=status,
                       tool_calls=calls + error_calls, tool_results=results + error_results,
                       files_changed=changed)


def _run(memo: EscalationMemo, confidences: list[int], **kwargs: object) -> list[str | None]:
    return [observe(memo, c, _signals(confidence=c, **kwargs))  # type: ignore[arg-type]
            for c in confidences]


def test_confidence_29_for_two_turns_escalates_30_does_not() -> None:
    assert _run(EscalationMemo(), [29, 29])[-1] is not None
    assert _run(EscalationMemo(), [30, 30, 30]) == [None, None, None]
    assert _run(EscalationMemo(), [29, 30, 29]) == [None, None, None]  # not consecutive


def test_one_low_turn_is_not_enough() -> None:
    assert _run(EscalationMemo(), [10]) == [None]
    reasons = _run(EscalationMemo(), [10, 10])
    assert reasons[0] is None and "confidence under 30 for 2 turns" in str(reasons[1])


def test_the_same_error_3_times_escalates_2_does_not() -> None:
    memo = EscalationMemo()
    error = ("error: command 'rm' is not allowed (line 12)",)
    assert observe(memo, 80, _signals(errors=error)) is None
    assert observe(memo, 80, _signals(errors=("error: command 'rm' is not allowed (line 99)",))
                   ) is None  # digits differ: the same error
    third = observe(memo, 80, _signals(errors=error))
    assert third is not None and "the same error 3 times" in third


def test_different_errors_do_not_add_up() -> None:
    memo = EscalationMemo()
    for text in ("error: a", "error: b", "error: c", "error: a", "error: b"):
        assert observe(memo, 80, _signals(errors=(text,))) is None


def test_no_file_change_for_5_turns_escalates_4_does_not() -> None:
    memo = EscalationMemo()
    reasons = [observe(memo, 80, _signals(changed=0)) for _ in range(5)]
    assert reasons[:4] == [None] * 4
    assert reasons[4] == "no file changed for 5 turns"
    memo = EscalationMemo()
    reasons = [observe(memo, 80, _signals(changed=0 if i != 3 else 1)) for i in range(7)]
    assert reasons == [None] * 7


def test_stuck_escalates_at_once() -> None:
    assert observe(EscalationMemo(), 90, _signals(status="stuck")) == (
        "the model reported it is stuck")


def test_turn_confidence_uses_the_report_and_the_evaluators_signals() -> None:
    assert turn_confidence(50, _signals(confidence=None)) == 50
    assert turn_confidence(50, _signals(confidence=70)) == 70
    assert turn_confidence(50, _signals(confidence=70, errors=("e1", "e2"))) == 50
    assert turn_confidence(50, _signals(confidence=70, errors=("1", "2", "3", "4"))) == 40
    test = ToolCall(call_id="t", name="run_command", arguments='{"command": "pytest -q"}')
    passed = ToolResult(call_id="t", name="run_command", content="$ pytest\nexit code: 0\nok")
    assert turn_confidence(50, _signals(confidence=85, calls=(test,), results=(passed,))) == 95
    assert turn_confidence(50, _signals(confidence=95, calls=(test,), results=(passed,))) == 100
