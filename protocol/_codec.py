"""Header names and the one encoder / decoder per subject family, built once."""

from __future__ import annotations

import msgspec

from protocol._families import Outbound, TaskMessage
from protocol._legacy import LegacyCheckpoint
from protocol._messages import Control, DeadLetter, ExecutionEvent
from protocol._state import ArtifactManifest, Case, Checkpoint, RunState, SessionState

HEADER_TYPE = "Sb-Type"
"""The message's ``type`` tag, so a reader can route before decoding."""
HEADER_SESSION = "Sb-Session"
HEADER_TRACEPARENT = "traceparent"
"""W3C Trace Context (https://www.w3.org/TR/trace-context/), as OpenTelemetry propagates it."""
HEADER_MSG_ID = "Nats-Msg-Id"
"""JetStream de-duplication id (docs.nats.io, "JetStream Model Deep Dive", deduplication)."""

encoder = msgspec.json.Encoder()
task_decoder = msgspec.json.Decoder(TaskMessage)
outbound_decoder = msgspec.json.Decoder(Outbound)
event_decoder = msgspec.json.Decoder(ExecutionEvent)
control_decoder = msgspec.json.Decoder(Control)
dead_letter_decoder = msgspec.json.Decoder(DeadLetter)
session_decoder = msgspec.json.Decoder(SessionState)
run_decoder = msgspec.json.Decoder(RunState)
checkpoint_decoder = msgspec.json.Decoder(Checkpoint)
legacy_checkpoint_decoder = msgspec.json.Decoder(LegacyCheckpoint)
"""Reads a checkpoint written before flat messages (one with ``request`` and no ``role``)."""
case_decoder = msgspec.json.Decoder(Case)
manifest_decoder = msgspec.json.Decoder(ArtifactManifest)


def type_tag(message: msgspec.Struct) -> str:
    """The ``type`` tag of a wire message (``"chat_message"`` for a ChatMessage)."""
    return str(type(message).__struct_config__.tag)
