"""Session state in the JetStream KV bucket, updated with compare-and-set."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import msgspec
from nats.js.kv import KeyValue

from protocol import SessionState, encoder, session_decoder
from runtime._cas import compare_and_set, read_entry
from runtime._kv import Bucket

_log = logging.getLogger(__name__)

MIN_CONFIDENCE, MAX_CONFIDENCE = 10, 100
"""Confidence is clamped to 10-100 (docs/design.md#feedback-and-confidence)."""


RECENT = 4096
"""Most keys whose last read this process keeps for its next update (``SessionStore``)."""
RECENT_S = 60.0
"""How long a read is kept for the next update, in seconds."""


class SessionStore:
    """Reads and updates ``SessionState`` values keyed by session id.

    A read made with ``keep=True`` is kept (at most ``RECENT_S``, for ``RECENT`` keys) for
    this process's next update of the key, whose compare-and-set starts from it instead of
    reading the key again: a delivery that reads the state before its model call and updates
    it after saves the second read. A stale start only loses the compare-and-set, which then
    reads. Reads always go to the bucket.
    """

    def __init__(self, kv: KeyValue | Bucket) -> None:
        self._kv = kv
        self._recent: OrderedDict[str, tuple[bytes | None, int | None, float]] = OrderedDict()

    def _keep(self, key: str, value: bytes | None, revision: int | None) -> None:
        self._recent[key] = (value, revision, time.monotonic())
        self._recent.move_to_end(key)
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)

    def _known(self, key: str) -> tuple[bytes | None, int | None] | None:
        kept = self._recent.pop(key, None)
        if kept is None or time.monotonic() - kept[2] > RECENT_S:
            return None
        return kept[0], kept[1]

    async def get(self, session: str, *, keep: bool = False) -> SessionState:
        """The session's state, or a new one when the key does not exist; ``keep``: an update
        of it follows (see the class docstring).

        Raises:
            BrokerError: the bucket does not answer within 5 s.
        """
        value, revision = await read_entry(self._kv, session, what="session store")
        if keep:
            self._keep(session, value, revision)
        return self._decode(session, value)

    @staticmethod
    def _decode(session: str, value: bytes | None) -> SessionState:
        if not value:
            return SessionState(session=session)
        try:
            return session_decoder.decode(value)
        except msgspec.DecodeError:
            _log.error("session %s: stored state is unreadable; starting afresh", session)
            return SessionState(session=session)

    async def update(self, session: str, change: Callable[[SessionState], None]) -> SessionState:
        """Apply ``change`` to the session's state and store it with compare-and-set
        (``runtime._cas``).

        ``change`` mutates the state in place; it may run more than once when another replica
        writes the same session concurrently.

        Raises:
            StoreConflictError: lost the race 8 times in a row.
            BrokerError: the bucket does not answer.
        """
        written: list[SessionState] = []

        def _next(value: bytes | None) -> bytes:
            state = self._decode(session, value)
            change(state)
            state.confidence = max(MIN_CONFIDENCE, min(MAX_CONFIDENCE, state.confidence))
            state.updated_at = time.time()
            written[:] = [state]
            return encoder.encode(state)

        await compare_and_set(self._kv, session, _next, what="session store",
                              known=self._known(session))
        return written[0]
