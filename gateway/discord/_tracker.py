"""Which bot message is what: the status message of a run (🛑 aborts it), an answer (👍 / 👎 is
feedback) or a commit message (👍 merges, 👎 deletes the branch); and which session a thread the
bot opened belongs to. Bounded: the oldest entries are forgotten first."""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass

TRACKED_LIMIT = 10_000
"""Bot messages remembered per bot."""


class Kind(enum.StrEnum):
    STATUS = "status"
    ANSWER = "answer"
    COMMIT = "commit"


@dataclass(frozen=True, slots=True)
class Tracked:
    """A bot message and the request it belongs to.

    Attributes:
        kind: what a reaction on it means.
        session: the request's session id.
        request_id: the id of the person's message it answers.
        role: the agent role that answered (controls on commits go to it).
        branch: the git branch of a commit message.
    """

    kind: Kind
    session: str
    request_id: str
    role: str = ""
    branch: str = ""


class MessageTracker:
    """Bot message id → ``Tracked``; thread id → the session of the run it was opened for."""

    def __init__(self, limit: int = TRACKED_LIMIT) -> None:
        self.limit = limit
        self._messages: OrderedDict[int, Tracked] = OrderedDict()
        self._threads: OrderedDict[int, str] = OrderedDict()

    def remember(self, message_id: int, tracked: Tracked) -> None:
        self._messages[message_id] = tracked
        self._messages.move_to_end(message_id)
        while len(self._messages) > self.limit:
            self._messages.popitem(last=False)

    def get(self, message_id: int) -> Tracked | None:
        return self._messages.get(message_id)

    def remember_thread(self, thread_id: int, session: str) -> None:
        self._threads[thread_id] = session
        while len(self._threads) > self.limit:
            self._threads.popitem(last=False)

    def run_session(self, channel_id: int, fallback: str) -> str:
        """The session a control in ``channel_id`` is about: the run the bot opened that thread
        for, else ``fallback`` (the channel's own session)."""
        return self._threads.get(channel_id, fallback)
