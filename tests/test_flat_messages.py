"""The flat-message contract (protocol/README.md, "Flat messages"): no task message nests
another, ReplyTo addresses every answer, the request's RequestFacts pass through every step
unchanged, and each hop of a typical request is smaller than the nested shapes made it."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest

import protocol as p
from bench._wire_bytes import BEFORE, flat_messages
from runtime import waiting_request

TASK_TYPES = typing.get_args(p.TaskMessage)


def _chat(**changes: object) -> p.ChatMessage:
    fields: dict[str, Any] = {"message_id": "m-1", "session": "discord-42",
                              "origin": "discord-7", "user_id": "u", "text": "fix it"}
    return p.ChatMessage(**{**fields, **changes})


def _tag(kind: type) -> str:
    return str(kind.__struct_config__.tag)  # type: ignore[attr-defined]


def _nested(kind: type, seen: frozenset[type] = frozenset()) -> set[type]:
    """The task message types found in ``kind``'s fields, through tuples, dicts, unions,
    optionals and untagged parts (a part wrapping a message is nesting too)."""
    found: set[type] = set()

    def walk(annotation: Any) -> None:
        if annotation in typing.get_args(p.TaskMessage):
            found.add(annotation)
        elif (isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)
              and annotation not in seen):
            found.update(_nested(annotation, seen | {kind}))
        for argument in typing.get_args(annotation):
            walk(argument)

    for field in msgspec.structs.fields(kind):
        walk(field.type)
    return found


@pytest.mark.parametrize("kind", TASK_TYPES, ids=lambda k: k.__name__)
def test_no_task_message_carries_another_task_message(kind: type) -> None:
    assert _nested(kind) == set()


@pytest.mark.parametrize("kind", [p.Checkpoint, p.SessionState, p.RunState, p.Case],
                         ids=lambda k: k.__name__)
def test_stored_values_keep_state_not_task_messages(kind: type) -> None:
    assert _nested(kind) == set()


class _Wrapped(msgspec.Struct, frozen=True):
    """A part that wraps a message (what the check must catch through a part)."""

    chat: p.ChatMessage


class _Nesting(msgspec.Struct, frozen=True, tag="nesting"):
    verdict: p.Classification | None = None
    parts: tuple[_Wrapped, ...] = ()


def test_the_nesting_check_finds_nested_messages() -> None:
    """The check above is not vacuous: a message in a field, through optionals, unions,
    tuples and parts, is found."""
    assert _nested(_Nesting) == {p.Classification, p.ChatMessage}


def test_task_message_tags_are_the_plain_names() -> None:
    assert {_tag(t) for t in TASK_TYPES} == {
        "chat_message", "classification", "turn_request", "run_answer", "turn_result",
        "evaluation", "brainstorm_result", "control"}


def test_the_request_facts_pass_through_every_step_unchanged() -> None:
    """The classifier fixes the request's RequestFacts once; the TurnRequest, the run's
    TurnResult, the Evaluation and the checkpoint carry that same value."""
    flat = flat_messages()["sequential"]
    chat = flat["chat_message"]
    verdict = flat["classification"]
    assert isinstance(chat, p.ChatMessage) and isinstance(verdict, p.Classification)
    facts = verdict.request
    assert (facts.text, facts.user_id, facts.flow, facts.task_type, facts.complexity) == (
        chat.text, chat.user_id, p.Flow.SEQUENTIAL, p.TaskType.CODING, p.Complexity.MEDIUM)
    for hop in ("turn_request", "turn_result", "evaluation", "checkpoint"):
        message = flat[hop]
        assert isinstance(message, p.TurnRequest | p.TurnResult | p.Evaluation | p.Checkpoint)
        assert message.request == facts, hop
    brainstormed = p.BrainstormResult(reply_to=verdict.reply_to, request=facts, proposals=())
    decoded = p.task_decoder.decode(p.encoder.encode(brainstormed))
    assert isinstance(decoded, p.BrainstormResult) and decoded.request == facts


def test_request_facts_omit_their_defaults() -> None:
    facts = p.RequestFacts.of(_chat())
    assert msgspec.json.decode(p.encoder.encode(facts)) == {"text": "fix it", "user_id": "u"}


def test_reply_to_round_trips() -> None:
    reply_to = p.ReplyTo.of(_chat())
    assert reply_to == p.ReplyTo(session="discord-42", origin="discord-7", in_reply_to="m-1")
    assert msgspec.json.decode(p.encoder.encode(reply_to), type=p.ReplyTo) == reply_to
    answer = p.RunAnswer(reply_to=reply_to, request_id="m-0", text="use Redis", user_id="u")
    decoded = p.task_decoder.decode(p.encoder.encode(answer))
    assert isinstance(decoded, p.RunAnswer) and decoded.reply_to == reply_to


@pytest.mark.parametrize("kind, fields", [
    (p.Reply, {"text": "42", "error": p.ErrorCode.TIMEOUT}),
    (p.Progress, {"stage": "turn", "turn": 2}),
    (p.ConsolidatedOptions, {"question": "q", "options": ()}),
], ids=["reply", "progress", "options"])
def test_an_answer_built_from_reply_to_addresses_the_request(kind: type[Any],
                                                             fields: dict[str, Any]) -> None:
    chat = _chat(message_id="m-9", session="terminal-abc", origin="term-1")
    message = p.ReplyTo.of(chat).build(kind, **fields)
    decoded = p.outbound_decoder.decode(p.encoder.encode(message))
    assert type(decoded) is kind
    assert (decoded.session, decoded.origin, decoded.in_reply_to) == (
        "terminal-abc", "term-1", "m-9")
    assert all(getattr(decoded, name) == value for name, value in fields.items())


def test_build_rejects_a_field_the_message_does_not_have() -> None:
    with pytest.raises(TypeError):
        p.ReplyTo.of(_chat()).build(p.Progress, stage="turn", no_such_field=1)


def test_the_runtime_tells_the_waiting_person_through_the_reply_to() -> None:
    flat = flat_messages()["sequential"]
    chat = flat["chat_message"]
    assert isinstance(chat, p.ChatMessage)
    for message in (chat, flat["classification"], flat["turn_request"]):
        assert waiting_request(message) == p.ReplyTo.of(chat)  # type: ignore[arg-type]
    assert waiting_request(flat["turn_result"]) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("flow", ["simple", "sequential"])
def test_each_hop_of_a_typical_request_is_smaller_flat(flow: str) -> None:
    """``BEFORE`` holds the bytes the nested shapes gave for the same content."""
    before, after = BEFORE[flow], flat_messages()[flow]
    assert before.keys() == after.keys()
    for hop, old in before.items():
        new = len(p.encoder.encode(after[hop]))
        if hop in {"chat_message", "reply"}:  # shapes unchanged
            assert new == old, hop
        else:
            assert new < old, f"{hop}: {new} bytes flat, {old} nested"


def test_every_task_message_names_its_session() -> None:
    """Actors' publishes carry no session header: the runtime reads the session from the body
    (``session_of``)."""
    from runtime import session_of

    for hop, message in flat_messages()["sequential"].items():
        if hop not in {"reply", "checkpoint"}:
            assert session_of(message) == "discord-1311874512996454400", hop  # type: ignore[arg-type]
