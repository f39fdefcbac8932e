"""The flat-message contract (protocol/README.md, "Flat messages"): no task message nests
another, ReplyTo addresses every answer, the nested shapes written before are still read, and
each hop of a typical request is smaller than it was."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest

import protocol as p
from actors.legacy import upgrade, upgrade_checkpoint
from bench._wire_bytes import BEFORE, flat_messages, legacy_messages
from runtime import waiting_request

FLAT_TASK_TYPES = tuple(t for t in typing.get_args(p.TaskMessage)
                        if t not in p.LEGACY_TASK_TYPES)


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


@pytest.mark.parametrize("kind", FLAT_TASK_TYPES, ids=lambda k: k.__name__)
def test_no_task_message_carries_another_task_message(kind: type) -> None:
    assert _nested(kind) == set()


@pytest.mark.parametrize("kind", [p.Checkpoint, p.SessionState, p.RunState, p.Case],
                         ids=lambda k: k.__name__)
def test_stored_values_keep_state_not_task_messages(kind: type) -> None:
    assert _nested(kind) == set()


def test_the_nesting_check_finds_the_old_shapes() -> None:
    """The check above is not vacuous: the shapes written before flat messages fail it."""
    assert _nested(p.LegacyTurnRequest) == {p.LegacyClassification, p.ChatMessage}
    assert _nested(p.LegacyEvaluation) == {p.LegacyTurnResult}
    assert p.LegacyTurnRequest in _nested(p.LegacyCheckpoint)


def test_legacy_types_are_exactly_the_replaced_nested_shapes() -> None:
    """A type is only ever marked legacy when a flat type with a new tag replaced it."""
    assert {_tag(t) for t in p.LEGACY_TASK_TYPES} == {
        "classification", "turn_request", "turn_result", "evaluation", "brainstorm_result"}
    flat_tags = {_tag(t) for t in FLAT_TASK_TYPES}
    assert {f"{tag}_v2" for tag in ("classification", "turn_request", "turn_result",
                                    "evaluation", "brainstorm_result")} <= flat_tags


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
    flat, old = flat_messages()["sequential"], legacy_messages()["sequential"]
    chat = flat["chat_message"]
    assert isinstance(chat, p.ChatMessage)
    for message in (chat, flat["classification"], flat["turn_request"],
                    old["classification"], old["turn_request"]):
        assert waiting_request(message) == p.ReplyTo.of(chat)  # type: ignore[arg-type]
    assert waiting_request(flat["turn_result"]) is None  # type: ignore[arg-type]


def test_the_content_of_the_size_comparison_is_the_one_measured_before() -> None:
    """``bench._wire_bytes.BEFORE`` was measured on the nested shapes' own commit; the nested
    types kept for reading give the same bytes for the same content."""
    sizes = {flow: {hop: len(p.encoder.encode(m)) for hop, m in hops.items()}
             for flow, hops in legacy_messages().items()}
    assert sizes == BEFORE


@pytest.mark.parametrize("flow", ["simple", "sequential"])
def test_each_hop_of_a_typical_request_is_smaller_flat(flow: str) -> None:
    before, after = legacy_messages()[flow], flat_messages()[flow]
    assert before.keys() == after.keys()
    for hop in before:
        old, new = len(p.encoder.encode(before[hop])), len(p.encoder.encode(after[hop]))
        if hop in {"chat_message", "reply"}:  # shapes unchanged
            assert new == old, hop
        else:
            assert new < old, f"{hop}: {new} bytes flat, {old} nested"


def test_old_shapes_upgrade_to_the_flat_ones_with_the_same_content() -> None:
    old = legacy_messages()["sequential"]
    flat = flat_messages()["sequential"]
    for hop in ("classification", "turn_request", "turn_result", "evaluation"):
        decoded = p.task_decoder.decode(p.encoder.encode(old[hop]))
        assert isinstance(decoded, p.LEGACY_TASK_TYPES)
        assert upgrade(decoded) == flat[hop], hop
    checkpoint = p.legacy_checkpoint_decoder.decode(p.encoder.encode(old["checkpoint"]))
    assert upgrade_checkpoint(checkpoint) == flat["checkpoint"]
    with pytest.raises(msgspec.ValidationError):  # so the store knows to read it the old way
        p.checkpoint_decoder.decode(p.encoder.encode(old["checkpoint"]))


def test_an_old_request_with_an_answer_becomes_a_run_answer() -> None:
    old = legacy_messages()["sequential"]["turn_request"]
    assert isinstance(old, p.LegacyTurnRequest)
    answer = _chat(message_id="m-2", text="use Redis", user_id="v")
    resumed = upgrade(msgspec.structs.replace(old, answer=answer))
    assert resumed == p.RunAnswer(reply_to=p.ReplyTo.of(answer), text="use Redis", user_id="v",
                                  request_id=old.classification.request.message_id)


def test_every_task_message_names_its_session() -> None:
    """Actors' publishes carry no session header: the runtime reads the session from the body
    (``session_of``), flat or nested."""
    from runtime import session_of

    for shapes in (flat_messages(), legacy_messages()):
        for hop, message in shapes["sequential"].items():
            if hop not in {"reply", "checkpoint"}:
                assert session_of(message) == "discord-1311874512996454400", hop  # type: ignore[arg-type]
