"""The wire contract: round trips, tags, identifiers, subjects and schema evolution."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import protocol as p


def _chat(**changes: object) -> p.ChatMessage:
    fields: dict[str, Any] = {"message_id": "1", "session": "discord-42",
                              "origin": "discord-main", "user_id": "7", "text": "hello"}
    fields.update(changes)
    return p.ChatMessage(**fields)


def test_task_messages_round_trip_with_their_tag() -> None:
    facts = p.RequestFacts.of(_chat(), flow=p.Flow.SEQUENTIAL,
                              complexity=p.Complexity.MEDIUM)
    request = p.TurnRequest(reply_to=p.ReplyTo.of(_chat()), request=facts, plan=("a", "b"),
                            tier=2, max_turns=20)
    data = p.encoder.encode(request)
    assert msgspec.json.decode(data)["type"] == "turn_request"
    assert p.task_decoder.decode(data) == request
    assert p.type_tag(request) == "turn_request"


def test_outbound_union_decodes_each_kind() -> None:
    for message in (
        p.Progress(session="s-1", origin="o", in_reply_to="1", stage="turn", turn=2),
        p.Reply(session="s-1", origin="o", in_reply_to="1", text="hi",
                files=(p.FileBlob(name="a.py", data=b"\x00\xff"),)),
        p.ConsolidatedOptions(session="s-1", origin="o", in_reply_to="1", question="q",
                              options=(p.Approach(title="t", summary="s", pros=("x",)),)),
    ):
        assert p.outbound_decoder.decode(p.encoder.encode(message)) == message


def test_unknown_fields_are_ignored_and_missing_defaults_filled() -> None:
    """Schema evolution (protocol/README.md): newer senders and older senders both work."""
    newer = b'{"type":"chat_message","message_id":"1","session":"t-x","origin":"o",' \
            b'"user_id":"u","text":"hi","a_field_from_the_future":[1,2]}'
    message = p.task_decoder.decode(newer)
    assert isinstance(message, p.ChatMessage)
    assert message.attachments == () and message.breakglass is False


def test_an_unknown_tag_is_rejected_loudly() -> None:
    with pytest.raises(msgspec.ValidationError):
        p.task_decoder.decode(b'{"type":"no_such_message"}')


def test_defaults_are_omitted_on_the_wire() -> None:
    assert b"breakglass" not in p.encoder.encode(_chat())


def test_session_and_actor_ids_round_trip_and_validate() -> None:
    session = p.SessionId("discord", "1234567890")
    assert str(session) == "discord-1234567890"
    assert p.SessionId.from_str(str(session)) == session
    assert p.ActorId.from_str("python_coder/2") == p.ActorId("python_coder", 2)
    for bad in ("discord-a.b", "nodash", "discord-a b", "discord-*"):
        with pytest.raises(ValueError):
            p.SessionId.from_str(bad)
    with pytest.raises(ValueError):
        p.ActorId("bad.role")


def test_subjects_use_the_prefix_and_refuse_wildcards() -> None:
    subjects = p.Subjects("prod")
    assert subjects.task("python_coder") == "prod.task.python_coder"
    assert subjects.task_stream("python_coder") == "PROD_TASK_PYTHON_CODER"
    assert subjects.outbox("term-1") == "prod.out.term-1"
    assert subjects.event("planner", "planned", "discord-42") == \
        "prod.event.planner.planned.discord-42"
    assert subjects.event("planner", "planned") == "prod.event.planner.planned.*"
    assert subjects.event(session="terminal-ann") == "prod.event.*.*.terminal-ann"
    # a session that is not a token never makes the publish fail
    assert subjects.event("planner", "planned", "a.b c") == "prod.event.planner.planned.a_b_c"
    assert subjects.sessions_bucket == "PROD_SESSIONS"
    with pytest.raises(ValueError):
        subjects.task("a.>")
    with pytest.raises(ValueError):
        p.Subjects("bad prefix")


def test_usage_adds_up() -> None:
    total = p.Usage(model="a", prompt_tokens=1, completion_tokens=2, cost_usd=0.5, calls=1) + \
        p.Usage(model="b", prompt_tokens=3, completion_tokens=4, cost_usd=0.25, calls=1)
    assert total == p.Usage(model="b", prompt_tokens=4, completion_tokens=6, cost_usd=0.75,
                            calls=2)
