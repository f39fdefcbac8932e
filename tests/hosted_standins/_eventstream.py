"""The AWS event-stream binary framing (``application/vnd.amazon.eventstream``), encoded.

Each message: a 12-byte prelude (total length, headers length, both big-endian uint32, and
the CRC32 of those 8 bytes), the headers, the payload, and the CRC32 of everything before it
(https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html#streaming-event-stream;
the decoder this must satisfy is botocore's ``botocore/eventstream.py``:
``EventStreamBuffer``, ``DecodeUtils.unpack_prelude``, ``_validate_checksum``). A header is
its name's length (1 byte), the name, a value type (1 byte; 7 is a string) and, for a string,
its length (2 bytes, big-endian) and UTF-8 bytes.
"""

from __future__ import annotations

import struct
from binascii import crc32

_STRING = 7
PRELUDE_BYTES = 12


def encode_headers(headers: dict[str, str]) -> bytes:
    """String headers in event-stream encoding."""
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack("!B", len(raw_name)) + raw_name
        out += struct.pack("!BH", _STRING, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One framed message: prelude, prelude CRC, headers, payload, message CRC."""
    raw_headers = encode_headers(headers)
    total = PRELUDE_BYTES + len(raw_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw_headers))
    prelude += struct.pack("!I", crc32(prelude) & 0xFFFFFFFF)
    body = prelude + raw_headers + payload
    return body + struct.pack("!I", crc32(body) & 0xFFFFFFFF)


def event(event_type: str, payload: bytes) -> bytes:
    """An ``event`` message of ``event_type`` with a JSON payload."""
    return encode_message({":event-type": event_type, ":content-type": "application/json",
                           ":message-type": "event"}, payload)


def exception(exception_type: str, payload: bytes) -> bytes:
    """An ``exception`` message (a modeled error, ``throttlingException`` ...)."""
    return encode_message({":exception-type": exception_type,
                           ":content-type": "application/json",
                           ":message-type": "exception"}, payload)
