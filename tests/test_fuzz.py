"""Bad input on purpose: random and mutated bytes fed to every decoder of
``protocol/`` and to the Discord Interactions endpoint get a typed error or a 4xx, never a
crash, a hang or an unbounded allocation (property-based, hypothesis)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from discord_standin.fixtures import discord_standin  # noqa: F401 - fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_gateway_interactions import Endpoint, endpoint  # noqa: F401 - fixture

import protocol._codec as codec
from bench._wire_bytes import flat_messages
from protocol import (
    Case,
    Checkpoint,
    Control,
    ControlAction,
    DeadLetter,
    ExecutionEvent,
    RequestFacts,
    RunState,
    SessionState,
    encoder,
)

DECODERS: dict[str, codec.Decoder[Any]] = {
    name: value for name, value in vars(codec).items()
    if name.endswith("_decoder") and isinstance(value, codec.Decoder)
}


def _seeds() -> list[bytes]:
    """Valid encodings of every family: what a mutation starts from."""
    messages: list[msgspec.Struct] = [
        m for hops in flat_messages().values() for m in hops.values()]
    messages += [
        ExecutionEvent(event_id="e1", session="s", actor="a", kind="handled", trace_id="t" * 32,
                       span_id="1" * 16),
        Control(session="s", action=ControlAction.ABORT),
        DeadLetter(actor="a", subject="sb.task.a", reason="r", deliveries=3, data=b"\x00x"),
        SessionState(session="s"),
        RunState(session="s", request_id="r", role="python_coder", holder="python_coder/0"),
        Checkpoint(session="s", request_id="r", role="python_coder",
                   request=RequestFacts(text="t"), turn=2,
                   messages=b'[{"role":"user","content":"hi"}]'),
        Case(case_id="c", session="s", task="reverse a string", role="python_coder"),
    ]
    return [encoder.encode(m) for m in messages]


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid message with a few bytes replaced, inserted, deleted, or cut short."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        match draw(st.sampled_from(["replace", "insert", "delete", "truncate", "token"])):
            case "replace" if data:
                data[at] = draw(st.integers(0, 255))
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            case "delete":
                del data[at:at + draw(st.integers(1, 16))]
            case "truncate":
                del data[at:]
            case _:
                data[at:at] = draw(st.sampled_from(
                    [b'"', b"{", b"}", b"[", b"]", b",", b":", b"null", b"1e999999", b"-0",
                     b'"\\ud800"', b"9" * 40, b'"type":"chat_message"', b'"type":"nope"']))
    return bytes(data)


def _decode_or_typed_error(decode: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        return decode(data)
    except msgspec.DecodeError:  # ValidationError is one too
        return None


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=150, deadline=None)
@given(data=st.one_of(st.binary(max_size=512), mutated()))
def test_every_decoder_answers_bad_bytes_with_a_typed_error(name: str, data: bytes) -> None:
    _decode_or_typed_error(DECODERS[name].decode, data)


@pytest.mark.parametrize("data", [
    b"[" * 100_000,  # nesting far deeper than any message
    b'{"type":"chat_message","text":"' + b"x" * 5_000_000,  # a 5 MB string never closed
    b"1e999999",
    b'{"type":"chat_message"' + b',"a":1' * 50_000 + b"}",  # 50,000 unknown fields
])
@pytest.mark.parametrize("name", sorted(DECODERS))
def test_pathological_documents_are_refused_or_read_quickly(name: str, data: bytes) -> None:
    """Unknown fields are ignored (schema rule 5), so a type whose fields all have defaults
    reads the last document; everything else is a DecodeError. Either way, at once."""
    started = time.perf_counter()
    _decode_or_typed_error(DECODERS[name].decode, data)
    assert time.perf_counter() - started < 2.0


# ------------------------------------------------------------------ the Interactions endpoint


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


INTERACTION = json.dumps({
    "type": 2, "id": "1311874512996454401", "application_id": "2", "token": "tok",
    "channel_id": "3", "guild_id": "4", "member": {"user": {"id": "5", "username": "ann"}},
    "data": {"name": "ask", "type": 1, "options": [{"name": "question", "type": 3,
                                                     "value": "hi"}]},
}).encode()


PRINTABLE = st.characters(min_codepoint=32, max_codepoint=126)
"""What an HTTP header value can carry here (``http.client`` sends Latin-1)."""


@st.composite
def interaction_bodies(draw: st.DrawFn) -> bytes:
    """Random bytes, or a command interaction with bytes mutated."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=400))
    data = bytearray(INTERACTION)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        data[at:at + draw(st.integers(0, 6))] = draw(st.binary(min_size=0, max_size=6))
    return bytes(data)


@pytest.mark.e2e
async def test_the_interactions_endpoint_answers_any_body_with_a_4xx_or_an_answer(
        endpoint: Endpoint) -> None:  # noqa: F811 - the fixture
    url, key = endpoint.url, endpoint.key
    statuses: list[int] = []

    @settings(max_examples=120, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=interaction_bodies(), signed=st.booleans(),
           timestamp=st.one_of(st.just(""), st.text(PRINTABLE, max_size=12)))
    def post_any(body: bytes, signed: bool, timestamp: str) -> None:
        ts = timestamp or str(int(time.time()))
        signature = key.sign(ts.encode() + body).signature.hex() \
            if signed else "00" * 64
        headers = {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": ts,
                   "Content-Type": "application/json"}
        status = _post(url, body, headers)
        statuses.append(status)
        assert status in {200, 400, 401, 413}, (status, body)
        if not signed:
            assert status == 401

    # Hypothesis drives plain HTTP from a worker thread while this loop serves the endpoint.
    await asyncio.wait_for(asyncio.to_thread(post_any), timeout=240)
    assert 401 in statuses and len(statuses) >= 120
    ping = b'{"type": 1, "id": "1", "application_id": "2"}'
    ts = str(int(time.time()))
    headers = {"X-Signature-Ed25519": key.sign(ts.encode() + ping).signature.hex(),
               "X-Signature-Timestamp": ts, "Content-Type": "application/json"}
    assert await asyncio.to_thread(_post, url, ping, headers) == 200  # still serving
