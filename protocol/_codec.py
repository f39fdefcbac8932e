"""Header names and the one encoder / decoder per subject family, built once."""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

import msgspec

from protocol._families import Outbound, TaskMessage
from protocol._messages import Control
from protocol._observe import DeadLetter, ExecutionEvent
from protocol._state import ArtifactManifest, Case, Checkpoint, RunState, SessionState

HEADER_TYPE = "Sb-Type"
"""The message's ``type`` tag, so a reader can route before decoding."""
HEADER_SESSION = "Sb-Session"
HEADER_TRACEPARENT = "traceparent"
"""W3C Trace Context (https://www.w3.org/TR/trace-context/), as OpenTelemetry propagates it."""
HEADER_TRACESTATE = "tracestate"
"""W3C Trace Context's vendor entries, carried with ``traceparent`` when there are any."""
HEADER_MSG_ID = "Nats-Msg-Id"
"""JetStream de-duplication id (docs.nats.io, "JetStream Model Deep Dive", deduplication)."""

T = TypeVar("T")


class Decoder(Generic[T]):
    """A ``msgspec.json.Decoder`` of ``T`` whose every refusal is a ``msgspec.DecodeError``
    (``msgspec.ValidationError`` for a valid document of the wrong shape): msgspec raises
    ``UnicodeDecodeError`` for invalid UTF-8 inside a string, which readers that catch
    ``DecodeError`` would let through (found by ``tests/test_fuzz.py``)."""

    __slots__ = ("_decode", "type")

    def __init__(self, type: Any) -> None:  # msgspec's name for it
        self.type = type
        self._decode = msgspec.json.Decoder(type).decode

    def decode(self, data: bytes | bytearray | memoryview | str) -> T:
        """The message in ``data``.

        Raises:
            msgspec.DecodeError: ``data`` is not JSON, not UTF-8, or (``ValidationError``)
                not a ``T``.
        """
        try:
            return cast(T, self._decode(data))
        except UnicodeDecodeError as exc:
            msg = f"not UTF-8: {exc}"
            raise msgspec.DecodeError(msg) from exc


encoder = msgspec.json.Encoder()
task_decoder: Decoder[TaskMessage] = Decoder(TaskMessage)
outbound_decoder: Decoder[Outbound] = Decoder(Outbound)
event_decoder: Decoder[ExecutionEvent] = Decoder(ExecutionEvent)
control_decoder: Decoder[Control] = Decoder(Control)
dead_letter_decoder: Decoder[DeadLetter] = Decoder(DeadLetter)
session_decoder: Decoder[SessionState] = Decoder(SessionState)
run_decoder: Decoder[RunState] = Decoder(RunState)
checkpoint_decoder: Decoder[Checkpoint] = Decoder(Checkpoint)
case_decoder: Decoder[Case] = Decoder(Case)
manifest_decoder: Decoder[ArtifactManifest] = Decoder(ArtifactManifest)


def type_tag(message: msgspec.Struct) -> str:
    """The ``type`` tag of a wire message (``"chat_message"`` for a ChatMessage)."""
    return str(type(message).__struct_config__.tag)
