"""Which bot message is what: the status message of a run (🛑 aborts it), an answer (👍 / 👎 is
feedback) or a commit message (👍 merges, 👎 deletes the branch); and which session a thread the
bot opened belongs to. Kept in memory (bounded: the oldest entries are forgotten first) and, when
a KV bucket is given, written through to it so reactions still work after a gateway restart."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

_log = logging.getLogger(__name__)
KV_TIMEOUT_S = 5.0

TRACKED_LIMIT = 10_000
"""Bot messages remembered per bot."""


class Kind(enum.StrEnum):
    STATUS = "status"
    ANSWER = "answer"
    COMMIT = "commit"
    APPROVAL = "approval"
    """An approval request with Approve / Deny buttons (``gateway.discord._approvals``)."""


@dataclass(frozen=True, slots=True)
class Tracked:
    """A bot message and the request it belongs to.

    Attributes:
        kind: what a reaction on it means.
        session: the request's session id.
        request_id: the id of the person's message it answers.
        role: the agent role that answered (controls on commits go to it).
        branch: the git branch of a commit message.
        user_id: the person who asked (who may control the run, besides the bot's admins);
            "" when not known (a message remembered before it was kept).
        approval_id: the approval an approval request's buttons decide.
    """

    kind: Kind
    session: str
    request_id: str
    role: str = ""
    branch: str = ""
    user_id: str = ""
    approval_id: str = ""


class MessageTracker:
    """Bot message id → ``Tracked``; thread id → the session of the run it was opened for;
    (request id, person) → the 👍 / 👎 counted (``vote_of`` / ``record_vote``)."""

    def __init__(self, limit: int = TRACKED_LIMIT, *, kv: KeyValue | None = None) -> None:
        self.limit = limit
        self._kv = kv
        self._messages: OrderedDict[int, Tracked] = OrderedDict()
        self._threads: OrderedDict[int, tuple[str, str]] = OrderedDict()
        self._votes: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._approvals: OrderedDict[str, Tracked | None] = OrderedDict()
        self._writes: set[asyncio.Task[None]] = set()

    def remember(self, message_id: int, tracked: Tracked) -> None:
        self._messages[message_id] = tracked
        self._messages.move_to_end(message_id)
        while len(self._messages) > self.limit:
            self._messages.popitem(last=False)
        value = json.dumps(dataclasses.asdict(tracked)).encode()
        self._write(f"m.{message_id}", value)
        if tracked.kind is Kind.APPROVAL:
            self._set_approval(tracked.session, tracked, value)

    def _set_approval(self, session: str, tracked: Tracked | None, value: bytes) -> None:
        self._approvals[session] = tracked
        self._approvals.move_to_end(session)
        while len(self._approvals) > self.limit:
            self._approvals.popitem(last=False)
        self._write(f"a.{session}", value)

    async def pending_approval(self, session: str) -> Tracked | None:
        """The approval request shown last in ``session`` and not decided here since (None
        when there is none): from memory, else from the bucket. It may have been decided
        elsewhere or expired; a decision on it then changes nothing."""
        if session in self._approvals or self._kv is None:
            return self._approvals.get(session)
        tracked = None
        with contextlib.suppress(nats.js.errors.KeyNotFoundError, TimeoutError,
                                 nats.errors.Error, ValueError, TypeError, KeyError):
            async with asyncio.timeout(KV_TIMEOUT_S):
                entry = await self._kv.get(f"a.{session}")
            if entry.value:
                data = json.loads(entry.value)
                data["kind"] = Kind(data["kind"])
                tracked = Tracked(**data)
        self._approvals[session] = tracked
        return tracked

    def approval_decided(self, session: str, approval_id: str) -> None:
        """Approval ``approval_id`` of ``session`` was decided here: no longer pending."""
        current = self._approvals.get(session)
        if current is None or current.approval_id == approval_id:
            self._set_approval(session, None, b"")

    def _write(self, key: str, value: bytes) -> None:
        """Write ``key`` through to the bucket in the background (logged when it fails)."""
        if self._kv is not None:
            task = asyncio.get_running_loop().create_task(self._store(key, value),
                                                          name=f"track:{key}")
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _store(self, key: str, value: bytes) -> None:
        assert self._kv is not None
        try:
            async with asyncio.timeout(KV_TIMEOUT_S):
                await self._kv.put(key, value)
        except (TimeoutError, nats.errors.Error) as exc:
            _log.warning("%s: not kept for reactions after a restart: %s", key, exc)

    async def vote_of(self, request_id: str, user_id: int) -> int:
        """The 👍 / 👎 value (``Control.value``) this person's vote on the answer of
        ``request_id`` counted with, 0 when none did: from memory, else from the bucket."""
        key = (request_id, user_id)
        if key in self._votes or self._kv is None:
            return self._votes.get(key, 0)
        with contextlib.suppress(nats.js.errors.KeyNotFoundError, TimeoutError,
                                 nats.errors.Error, ValueError):
            async with asyncio.timeout(KV_TIMEOUT_S):
                entry = await self._kv.get(f"v.{request_id}.{user_id}")
            self._votes[key] = int(entry.value or b"0")
        return self._votes.get(key, 0)

    def record_vote(self, request_id: str, user_id: int, value: int) -> None:
        """Remember that this person's vote on the answer of ``request_id`` is ``value``."""
        self._votes[(request_id, user_id)] = value
        self._votes.move_to_end((request_id, user_id))
        while len(self._votes) > self.limit:
            self._votes.popitem(last=False)
        self._write(f"v.{request_id}.{user_id}", str(value).encode())

    def get(self, message_id: int) -> Tracked | None:
        return self._messages.get(message_id)

    async def lookup(self, message_id: int) -> Tracked | None:
        """What ``message_id`` is: from memory, else from the bucket (after a restart)."""
        if (tracked := self._messages.get(message_id)) is not None or self._kv is None:
            return tracked
        with contextlib.suppress(nats.js.errors.KeyNotFoundError, TimeoutError,
                                 nats.errors.Error, ValueError, TypeError, KeyError):
            async with asyncio.timeout(KV_TIMEOUT_S):
                entry = await self._kv.get(f"m.{message_id}")
            data = json.loads(entry.value or b"{}")
            data["kind"] = Kind(data["kind"])
            tracked = Tracked(**data)
            self._messages[message_id] = tracked
        return tracked

    def remember_thread(self, thread_id: int, session: str, user_id: str = "") -> None:
        """The bot opened ``thread_id`` for a request of ``user_id`` in ``session``."""
        self._threads[thread_id] = (session, user_id)
        while len(self._threads) > self.limit:
            self._threads.popitem(last=False)

    def run_session(self, channel_id: int, fallback: str) -> str:
        """The session a control in ``channel_id`` is about: the run the bot opened that thread
        for, else ``fallback`` (the channel's own session)."""
        return self._threads.get(channel_id, (fallback, ""))[0]

    def thread_owner(self, channel_id: int) -> str:
        """Who asked for the run the bot opened thread ``channel_id`` for ("" when unknown)."""
        return self._threads.get(channel_id, ("", ""))[1]
