"""The facts execution events carry for the analytics: the request every
event of a delivery names, and the cause of an escalation. Pure, no server."""

from __future__ import annotations

import pytest

import protocol as p
from actors.escalation import EscalationMemo, TurnSignals, cause_of, observe
from bench._wire_bytes import flat_messages
from runtime import request_of


def test_every_step_of_a_request_names_the_persons_message() -> None:
    flat = flat_messages()["sequential"]
    chat = flat["chat_message"]
    assert isinstance(chat, p.ChatMessage)
    for hop in ("chat_message", "classification", "turn_request", "turn_result", "evaluation"):
        assert request_of(flat[hop]) == chat.message_id, hop  # type: ignore[arg-type]
    control = p.Control(session=chat.session, action=p.ControlAction.FEEDBACK, value=15,
                        message_id="the-answer")
    assert request_of(control) == ""  # about the session, not a request


def _signals(status: str | None = None, changed: int = 1) -> TurnSignals:
    return TurnSignals(reported_confidence=None, status=status, tool_calls=(),
                       tool_results=(), files_changed=changed)


def test_each_escalation_rule_has_its_cause() -> None:
    assert cause_of(observe(EscalationMemo(), 90, _signals(status="stuck")) or "") == "stuck"
    memo = EscalationMemo()
    low = [observe(memo, 10, _signals()) for _ in range(2)][-1]
    assert cause_of(low or "") == "low_confidence"
    memo = EscalationMemo()
    idle = [observe(memo, 80, _signals(changed=0)) for _ in range(5)][-1]
    assert cause_of(idle or "") == "no_progress"
    assert cause_of("the same error 3 times: run_command: boom") == "repeated_error"


@pytest.mark.parametrize("text", ["", "something new"])
def test_an_unknown_reason_is_other(text: str) -> None:
    assert cause_of(text) == "other"


def test_new_event_fields_have_defaults_and_are_omitted() -> None:
    event = p.ExecutionEvent(event_id="e", session="s", actor="a", kind="started")
    assert b"request_id" not in p.encoder.encode(event)  # old readers see the same bytes
    old = b'{"type":"execution_event","event_id":"e","session":"s","actor":"a","kind":"k"}'
    decoded = p.event_decoder.decode(old)
    assert (decoded.request_id, decoded.flow, decoded.role, decoded.user_id,
            decoded.value) == ("", "", "", "", 0)
