"""A role's conversation memory (docs/design.md#reflexion-memory): the session's history and what
the person said in their other conversations, read for a model before an answer and written
after it. The rules over the stored values are ``actors.memory``'s."""

from __future__ import annotations

import logging
from typing import Any

from actors.memory import (
    Speaker,
    append_exchange,
    history_messages,
    recover_confidence,
    user_memory_text,
)
from core.errors import StoreConflictError
from runtime import SessionStore


class Conversation:
    """The conversation memory an agent role reads and writes.

    Args:
        sessions: the sessions store; ``users`` the per-user memory store.
        history_window: history entries a session keeps (``Topology.history_window``).
        low_confidence: the confidence an answered session recovers to
            (``feedback.low_confidence``, 10-100).
        log: where a per-user memory write that lost its race is logged.
    """

    def __init__(self, sessions: SessionStore, users: SessionStore, *, history_window: int,
                 low_confidence: int, log: logging.Logger) -> None:
        self._sessions, self._users = sessions, users
        self._window, self._floor, self._log = history_window, low_confidence, log

    async def context_messages(self, speaker: Speaker, *, limit: int = 10
                               ) -> list[dict[str, Any]]:
        """The conversation so far for a model: what this person said elsewhere (per-user
        memory, as a system message) and this session's last ``limit`` history entries."""
        # Kept for ``remember``, which updates both after the answer (one read each saved).
        session = await self._sessions.get(speaker.session, keep=True)
        person = await self._users.get(speaker.memory_key, keep=True)
        remembered = user_memory_text(person, speaker.session)
        extra = [{"role": "system", "content": remembered}] if remembered else []
        return [*extra, *history_messages(session, limit)]

    async def confidence(self, session: str) -> int:
        """The session's confidence (10-100), where a new run starts."""
        return (await self._sessions.get(session)).confidence

    async def remember(self, speaker: Speaker, said: str, answer: str, *,
                       request_id: str = "") -> None:
        """Keep the exchange (what the person ``said``, the ``answer``, under ``request_id``:
        the id the answer replied to) in the session's history and in the person's memory;
        the session's confidence recovers from a 👎 (``recover_confidence``).

        The person's memory is one key for all their conversations with a bot, so many
        answers at once write it concurrently: when it still loses the race after every
        retry, the line is left out of their memory (logged) rather than failing the delivery,
        which would answer the person a second time.

        Raises:
            StoreConflictError: the session's own history could not be written.
        """
        window, floor = self._window, self._floor

        def _add(state: Any) -> None:
            append_exchange(state, said, answer, user_id=speaker.user_id, window=window,
                            session=speaker.session, request_id=request_id)

        def _answered(state: Any) -> None:
            _add(state)
            recover_confidence(state, floor)

        await self._sessions.update(speaker.session, _answered)
        try:
            await self._users.update(speaker.memory_key, _add)
        except StoreConflictError as exc:
            self._log.warning("session %s: %s's memory not updated: %s", speaker.session,
                              speaker.user_id, exc)
