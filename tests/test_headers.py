"""``runtime._headers``: the header parser put in nats-py's place gives nats-py's own result
for every header block, and is the one in use once the runtime is imported."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

import runtime  # noqa: F401  (installs the parser)
from runtime._headers import ORIGINAL, parse_header_lines

_pieces = st.sampled_from([
    b"Nats-Msg-Id", b"traceparent", b"Sb-Session", b":", b": ", b" ", b"\t", b"\x0b", b"\x1c",
    b"\x1f", b"\r\n", b"\r", b"\n", b"value", b"00-abc-01", b"\xc3\xa9", b"\xff", b"-", b"",
])


@settings(max_examples=2000)
@given(st.lists(_pieces, max_size=24).map(b"".join))
def test_it_parses_every_block_as_nats_py_does(raw: bytes) -> None:
    assert ORIGINAL is not None
    assert parse_header_lines(raw) == ORIGINAL(raw)


@given(st.binary(max_size=200))
def test_it_parses_arbitrary_bytes_as_nats_py_does(raw: bytes) -> None:
    assert ORIGINAL is not None
    assert parse_header_lines(raw) == ORIGINAL(raw)


def test_a_jetstream_block_and_the_names_it_skips() -> None:
    raw = (b"Nats-Stream: KV_sessions\r\nNats-Sequence: 42\r\nbad name: x\r\n"
           b"\x1cname: y\r\nnocolon\r\n: empty\r\nNats-Sequence:43\r\n\r\n")
    assert parse_header_lines(raw) == {"Nats-Stream": "KV_sessions", "Nats-Sequence": "43",
                                       "": "empty"}
    assert ORIGINAL is not None
    assert parse_header_lines(raw) == ORIGINAL(raw)


def test_the_runtime_installs_it_in_nats_py() -> None:
    assert ORIGINAL is not None  # the locked nats-py has the parser it replaces
    assert Client._parse_header_lines is parse_header_lines
