"""What a bot uses besides Discord and its bridge; shared by every bot of the pool."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from gateway.errors import StoreError
from gateway.kv import open_bucket
from gateway.limits import Limiter
from protocol import Subjects
from runtime import SessionStore


class ArtifactSink(Protocol):
    """Where attachments go before a run (``artifacts.ArtifactStore``)."""

    async def put(self, session: str, path: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class BotServices:
    """Shared services; a missing one switches its feature off.

    Attributes:
        limiter: rate limits and token quotas (None: unlimited).
        artifacts: the artifact store attachments are put into (None: attachments are only
            described to the actors, not stored).
        js: JetStream, to open the runs bucket ``/status`` reads (None: "nothing running").
        subjects: the deployment's names (the runs bucket's).
        sessions: the session store ``/model`` reads and writes.
        breakglass_users: user ids allowed to use ``/breakglass``.
        messages: what each bot message is (None: kept in memory only, lost on restart).
    """

    limiter: Limiter | None = None
    artifacts: ArtifactSink | None = None
    js: JetStreamContext | None = None
    subjects: Subjects = field(default_factory=Subjects)
    sessions: SessionStore | None = None
    breakglass_users: frozenset[str] = field(default_factory=frozenset)
    messages: KeyValue | None = None

    async def runs(self) -> KeyValue | None:
        """The runs bucket the agent actors write, or None while it does not exist (no run
        has started yet; the gateway never creates it).

        Raises:
            StoreError: JetStream did not answer.
        """
        if self.js is None:
            return None
        return await open_bucket(self.js, self.subjects.runs_bucket, create=False)


__all__ = ["ArtifactSink", "BotServices", "StoreError"]
