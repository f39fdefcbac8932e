"""Session state in the JetStream KV bucket, updated with compare-and-set."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import msgspec
from nats.js.kv import KeyValue

from protocol import SessionState, encoder, session_decoder
from runtime._cas import compare_and_set, read_entry

_log = logging.getLogger(__name__)

MIN_CONFIDENCE, MAX_CONFIDENCE = 10, 100
"""Confidence is clamped to 10-100 (docs/design.md#feedback-and-confidence)."""


class SessionStore:
    """Reads and updates ``SessionState`` values keyed by session id."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def get(self, session: str) -> SessionState:
        """The session's state, or a new one when the key does not exist.

        Raises:
            BrokerError: the bucket does not answer within 5 s.
        """
        state, _revision = await self._read(session)
        return state

    async def _read(self, session: str) -> tuple[SessionState, int | None]:
        value, revision = await read_entry(self._kv, session, what="session store")
        return self._decode(session, value), revision

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

        await compare_and_set(self._kv, session, _next, what="session store")
        return written[0]
