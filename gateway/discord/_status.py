"""One request's state in Discord (``RequestState``: the user's message, the thread opened for
it, the status message), and its status message edited in place, at most once per interval,
always ending on the latest text (``StatusEditor``). ``_requests.Requests`` owns every
request's state and the editor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import discord

_log = logging.getLogger(__name__)

REST_TIMEOUT_S = 15.0
"""Bound on one Discord REST call, rate-limit waits included."""


@dataclass(eq=False)
class RequestState:
    """What the bot knows about one request, keyed by the user's message id.

    Attributes:
        message: the user's message.
        session: the request's session id (for logs).
        thread: the thread the bot opened (or the thread the message was in), if any.
        status: the one status message that progress edits.
        streamed: the status message shows the answer so far (``stream`` progress).
        user_id: the person who asked (limits count their tokens).
        text: the request's text (names the thread when the anchor is the bot's own message).
    """

    message: discord.Message
    session: str
    thread: discord.Thread | None = None
    user_id: str = ""
    text: str = ""
    status: discord.Message | None = None
    streamed: bool = False
    shown: str = ""
    pending: str | None = None
    last_edit: float = float("-inf")
    flusher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def target(self) -> discord.abc.Messageable:
        """Where answers go: the thread, else the message's channel."""
        return self.thread or self.message.channel


class StatusEditor:
    """Shows status text for requests, editing each request's status message in place.

    Args:
        interval_s: at most one edit per request per this many seconds; the latest text wins.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s

    async def show(self, state: RequestState, text: str) -> None:
        """Post the status message (first call) or schedule an edit to ``text``.

        Raises:
            discord.HTTPException: posting the first status message failed.
            TimeoutError: Discord did not answer within 15 s.
        """
        if state.status is None:
            async with asyncio.timeout(REST_TIMEOUT_S):
                if state.thread is None:  # in the channel: answer as a reply to the person
                    state.status = await state.message.reply(text, mention_author=False)
                else:
                    state.status = await state.target.send(text)
            state.shown = text
            state.last_edit = asyncio.get_running_loop().time()
            return
        state.pending = text
        if state.flusher is None or state.flusher.done():
            state.flusher = asyncio.create_task(
                self._flush_loop(state), name=f"status:{state.message.id}")

    async def _flush_loop(self, state: RequestState) -> None:
        loop = asyncio.get_running_loop()
        while state.pending is not None:
            wait = state.last_edit + self.interval_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # pacing edits (Discord rate limits), not a wait-for
            try:
                await self._edit(state)
            except (discord.HTTPException, TimeoutError) as exc:
                _log.warning("session %s: status edit failed: %s", state.session, exc)

    async def _edit(self, state: RequestState) -> None:
        """Show ``state.pending``; it stays pending only if this edit is cancelled midway."""
        text = state.pending
        if text is None or text == state.shown or state.status is None:
            state.pending = None
            return
        state.last_edit = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(REST_TIMEOUT_S):
                await state.status.edit(content=text)
            state.shown = text
        except (discord.HTTPException, TimeoutError):
            if state.pending is text:
                state.pending = None
            raise
        if state.pending is text:
            state.pending = None

    def cancel(self, state: RequestState) -> None:
        """Drop the scheduled edits of ``state`` (the pending text is not shown)."""
        if state.flusher is not None:
            state.flusher.cancel()

    async def finish(self, state: RequestState) -> None:
        """Stop scheduled edits and show the latest pending text now (before the answer)."""
        if state.flusher is not None and not state.flusher.done():
            state.flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state.flusher
        if state.pending is not None:
            try:
                await self._edit(state)
            except (discord.HTTPException, TimeoutError) as exc:
                _log.warning("session %s: final status edit failed: %s", state.session, exc)
