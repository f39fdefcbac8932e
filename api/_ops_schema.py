"""Bodies of the operations routes (``/readyz``, ``/v1/dead-letters``), as msgspec structs: the
source of their OpenAPI component schemas (``api._openapi_ops``)."""

from __future__ import annotations

import base64
from typing import Literal

import msgspec

from runtime.consumers import RoleConsumer
from runtime.dead_letters import Replayed, StoredLetter

MAX_SEQ = 2**63 - 1
"""Largest dead-letter sequence a query or path takes (the OpenAPI document's maximum)."""


class RoleReadiness(msgspec.Struct, kw_only=True):
    """One role's durable consumer: ``ready`` when a replica asks for work (``num_waiting``,
    pull requests waiting, above 0); tasks not yet delivered (``num_pending``), held
    (``num_ack_pending``), held and redelivered (``num_redelivered``); ``error`` when the
    consumer cannot be read (the role never started)."""

    ready: bool
    num_waiting: int
    num_pending: int
    num_ack_pending: int
    num_redelivered: int
    error: str | None = None

    @classmethod
    def of(cls, consumer: RoleConsumer) -> RoleReadiness:
        return cls(ready=consumer.ready, num_waiting=consumer.num_waiting,
                   num_pending=consumer.num_pending, num_ack_pending=consumer.num_ack_pending,
                   num_redelivered=consumer.num_redelivered, error=consumer.error)


class Readiness(msgspec.Struct, kw_only=True):
    """``GET /readyz``: ``ready`` (200) when every role has a replica asking for work, else
    ``not_ready`` (503) with those roles in ``not_ready``."""

    status: Literal["ready", "not_ready"]
    roles: dict[str, RoleReadiness]
    not_ready: list[str]


class DeadLetterSummary(msgspec.Struct, kw_only=True):
    """A dead letter: its DLQ sequence (``seq``: what to replay or discard), the role that set
    it aside, the session ("" unknown), the error class and reason, how many times it was
    delivered, the task subject it came from, when it was stored (Unix seconds)."""

    seq: int
    role: str
    session: str
    error: str
    reason: str
    deliveries: int
    subject: str
    stored_at: float

    @classmethod
    def of(cls, stored: StoredLetter) -> DeadLetterSummary:
        letter = stored.letter
        return cls(seq=stored.seq, role=letter.actor, session=stored.session,
                   error=letter.error, reason=letter.reason, deliveries=letter.deliveries,
                   subject=letter.subject, stored_at=stored.stored_at)


class DeadLetterView(DeadLetterSummary, kw_only=True):
    """``GET /v1/dead-letters/{seq}``: the summary, the original headers, and the original
    bytes (``data_base64``; ``text`` as well when they are UTF-8)."""

    headers: dict[str, str]
    data_base64: str
    text: str | None

    @classmethod
    def full(cls, stored: StoredLetter) -> DeadLetterView:
        data = bytes(stored.letter.data)
        try:
            text: str | None = data.decode()
        except UnicodeDecodeError:
            text = None
        summary = msgspec.structs.asdict(DeadLetterSummary.of(stored))
        return cls(**summary, headers=dict(stored.letter.headers),
                   data_base64=base64.b64encode(data).decode(), text=text)


class DeadLetterList(msgspec.Struct, kw_only=True):
    """``GET /v1/dead-letters``: oldest first; ``next_after`` is the ``after`` of the next page
    (None: this is the last)."""

    letters: list[DeadLetterSummary]
    next_after: int | None


class DeadLetterReplayed(msgspec.Struct, kw_only=True):
    """``POST /v1/dead-letters/{seq}/replay``: the task went back to ``subject`` (stored as
    ``task_seq`` of its stream) and the letter was removed."""

    seq: int
    subject: str
    task_seq: int

    @classmethod
    def of(cls, replayed: Replayed) -> DeadLetterReplayed:
        return cls(seq=replayed.seq, subject=replayed.subject, task_seq=replayed.task_seq)
