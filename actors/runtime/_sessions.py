"""Session state in the JetStream KV bucket, updated with compare-and-set."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import msgspec
import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from actors.errors import BrokerError, StoreConflictError
from protocol import SessionState, encoder, session_decoder

_log = logging.getLogger(__name__)

KV_TIMEOUT_S = 5.0
MAX_CAS_ATTEMPTS = 8
CAS_BACKOFF_S = 0.002
"""After the n-th lost compare-and-set, wait a random 0 to ``CAS_BACKOFF_S * 2**n`` seconds
(full jitter) before reading again, so writers of one key spread out instead of colliding
again: at most about 0.5 s over all attempts."""
MIN_CONFIDENCE, MAX_CONFIDENCE = 10, 100
"""Confidence is clamped to 10-100 (SPEC.md §5)."""


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
        try:
            async with asyncio.timeout(KV_TIMEOUT_S):
                entry = await self._kv.get(session)
        except nats.js.errors.KeyNotFoundError:
            return SessionState(session=session), None
        except (TimeoutError, nats.errors.Error) as exc:
            msg = f"session store did not answer for {session}: {exc or type(exc).__name__}"
            raise BrokerError(msg) from exc
        if not entry.value:
            return SessionState(session=session), entry.revision
        try:
            return session_decoder.decode(entry.value), entry.revision
        except msgspec.DecodeError:
            _log.error("session %s: stored state is unreadable; starting afresh", session)
            return SessionState(session=session), entry.revision

    async def update(self, session: str, change: Callable[[SessionState], None]) -> SessionState:
        """Apply ``change`` to the session's state and store it with compare-and-set.

        ``change`` mutates the state in place; it may run more than once when another replica
        writes the same session concurrently (each retry after a jittered backoff,
        ``CAS_BACKOFF_S``).

        Raises:
            StoreConflictError: lost the race ``MAX_CAS_ATTEMPTS`` times in a row.
            BrokerError: the bucket does not answer.
        """
        for attempt in range(MAX_CAS_ATTEMPTS):
            if attempt:
                await asyncio.sleep(random.uniform(0, CAS_BACKOFF_S * 2 ** attempt))
            state, revision = await self._read(session)
            change(state)
            state.confidence = max(MIN_CONFIDENCE, min(MAX_CONFIDENCE, state.confidence))
            state.updated_at = time.time()
            data = encoder.encode(state)
            try:
                async with asyncio.timeout(KV_TIMEOUT_S):
                    if revision is None:
                        await self._kv.create(session, data)
                    else:
                        await self._kv.update(session, data, last=revision)
                return state
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyValueError):
                continue
            except nats.js.errors.BadRequestError:
                continue
            except (TimeoutError, nats.errors.Error) as exc:
                msg = f"session store did not answer for {session}: {exc or type(exc).__name__}"
                raise BrokerError(msg) from exc
        msg = f"session {session}: {MAX_CAS_ATTEMPTS} concurrent writers in a row, giving up"
        raise StoreConflictError(msg)
