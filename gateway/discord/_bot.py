"""``SwitchboardBot``: a discord.py client that hands people's messages to the actors and
posts what comes back (progress, answers, options) in threads (SPEC.md §7)."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any, Protocol

import discord

from gateway.discord._inbound import (
    session_of,
    should_answer,
    strip_mentions,
    thread_name,
    to_chat_message,
)
from gateway.discord._status import REST_TIMEOUT_S, RequestState, StatusEditor
from gateway.errors import NotRunningError
from gateway.render import render_options, render_progress, render_reply, split_message
from protocol import (
    ChatMessage,
    ConsolidatedOptions,
    FileBlob,
    Flow,
    Outbound,
    Progress,
    Reply,
    SessionId,
)

_log = logging.getLogger(__name__)

FILES_PER_MESSAGE = 10
"""Attachments in one message (https://discord.com/developers/docs/resources/message,
"Create Message": up to 10 files)."""
THREADED_FLOWS = frozenset({Flow.SEQUENTIAL, Flow.BRANCH})
NOT_RUNNING_TEXT = "⚠️ Switchboard is not running right now, so I cannot answer. Try again later."
EMPTY_TEXT = "👋 Mention me with a question, or reply to one of my messages."


class Sender(Protocol):
    """What the bot needs of ``gateway.bridge.Bridge``."""

    origin: str

    async def send(self, message: ChatMessage) -> None: ...


def default_intents() -> discord.Intents:
    """Guilds, guild messages, DMs, message content (privileged) and reactions."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = True
    intents.guild_reactions = True
    intents.dm_reactions = True
    return intents


class SwitchboardBot(discord.Client):
    """The Discord side of one Switchboard gateway instance.

    Args:
        bridge: sends ChatMessages to the actors (``None`` until ``attach``; messages received
            meanwhile are answered with "not running").
        dms: answer direct messages (SPEC.md §7: configurable, on by default).
        edit_interval_s: at most one status edit per request per this many seconds.
        **options: passed to ``discord.Client`` (``guild_ready_timeout``, ...).
    """

    def __init__(self, bridge: Sender | None = None, *, dms: bool = True,
                 edit_interval_s: float = 1.0, **options: Any) -> None:
        options.setdefault("intents", default_intents())
        super().__init__(**options)
        self.bridge = bridge
        self.dms = dms
        self.status_editor = StatusEditor(edit_interval_s)
        self.requests: dict[str, RequestState] = {}
        self._closed = asyncio.Event()

    def attach(self, bridge: Sender) -> None:
        """Start sending received messages through ``bridge``."""
        self.bridge = bridge

    async def close(self) -> None:
        """Close the Discord connection (scheduled status edits are dropped)."""
        for state in self.requests.values():
            if state.flusher is not None:
                state.flusher.cancel()
        await super().close()
        self._closed.set()

    async def wait_closed(self) -> None:
        """Return once ``close`` has run (the service's lifetime: no timeout)."""
        await self._closed.wait()

    # ------------------------------------------------------------------ inbound

    async def on_message(self, message: discord.Message) -> None:
        me = self.user
        if me is None or not should_answer(message, me, dms=self.dms):
            return
        request = to_chat_message(message, me.id, self.bridge.origin if self.bridge else "none")
        if not request.text and not request.attachments:
            await self._say(message, EMPTY_TEXT, request.session)
            return
        thread = message.channel if isinstance(message.channel, discord.Thread) else None
        self.requests[request.message_id] = RequestState(message, request.session, thread=thread)
        try:
            if self.bridge is None:
                raise NotRunningError
            await self.bridge.send(request)
        except NotRunningError as exc:
            self.requests.pop(request.message_id, None)
            _log.warning("session %s: not sent: %s", request.session, exc)
            await self._say(message, NOT_RUNNING_TEXT, request.session)
            return
        _log.info("session %s: message %s sent", request.session, request.message_id)

    # ------------------------------------------------------------------ outbound

    async def on_outbound(self, outbound: Outbound) -> None:
        """Handle one message from the bridge; Discord errors are logged and told in Discord."""
        state = await self._state_for(outbound.in_reply_to, outbound.session)
        if state is None:
            _log.warning("session %s: %s for unknown message %s dropped", outbound.session,
                         type(outbound).__name__, outbound.in_reply_to)
            return
        try:
            match outbound:
                case Progress():
                    await self._on_progress(state, outbound)
                case Reply():
                    await self._on_reply(state, outbound)
                case ConsolidatedOptions():
                    await self._on_options(state, outbound)
        except (discord.HTTPException, TimeoutError) as exc:
            _log.exception("session %s: posting %s failed", state.session,
                           type(outbound).__name__)
            await self._say(state.message, f"⚠️ I could not post the answer: {exc}",
                            state.session)

    async def _on_progress(self, state: RequestState, p: Progress) -> None:
        if p.stage == "classified" and p.flow in THREADED_FLOWS:
            await self._open_thread(state)
        elif p.stage == "classified" and state.status is None:
            async with asyncio.timeout(REST_TIMEOUT_S):
                await state.target.typing()
            return
        state.streamed = p.stage == "stream"
        await self.status_editor.show(state, render_progress(p))

    async def _open_thread(self, state: RequestState) -> None:
        message = state.message
        if state.thread is not None or not isinstance(message.channel, discord.TextChannel):
            return
        name = thread_name(strip_mentions(message.content, self.user.id if self.user else 0))
        async with asyncio.timeout(REST_TIMEOUT_S):
            state.thread = await message.create_thread(name=name)
        _log.info("session %s: opened thread %s", state.session, state.thread.id)

    async def _on_reply(self, state: RequestState, r: Reply) -> None:
        await self.status_editor.finish(state)
        self.requests.pop(r.in_reply_to, None)
        chunks = split_message(render_reply(r))
        if state.streamed and state.status is not None and chunks and state.thread is None:
            async with asyncio.timeout(REST_TIMEOUT_S):
                await state.status.edit(content=chunks[0])
            chunks = chunks[1:]
        await self._post(state, chunks, r.files, reply=r.flow not in THREADED_FLOWS)
        _log.info("session %s: answered %s (%d chunks, %d files)", state.session,
                  r.in_reply_to, len(chunks), len(r.files))

    async def _on_options(self, state: RequestState, o: ConsolidatedOptions) -> None:
        await self.status_editor.finish(state)
        self.requests.pop(o.in_reply_to, None)
        await self._post(state, split_message(render_options(o)), (), reply=False)

    async def _post(self, state: RequestState, chunks: list[str], files: tuple[FileBlob, ...],
                    *, reply: bool) -> None:
        """Send ``chunks`` to the thread (or channel); files ride on the last chunk, ten per
        message, extra batches in messages of their own."""
        batches = [files[i:i + FILES_PER_MESSAGE] for i in range(0, len(files), FILES_PER_MESSAGE)]
        messages: list[tuple[str | None, tuple[FileBlob, ...]]] = [(c, ()) for c in chunks]
        if batches and messages:
            messages[-1] = (messages[-1][0], batches.pop(0))
        messages.extend((None, batch) for batch in batches)
        for index, (text, batch) in enumerate(messages):
            attachments = [discord.File(io.BytesIO(f.data), filename=f.name) for f in batch]
            async with asyncio.timeout(REST_TIMEOUT_S):
                if index == 0 and reply and state.thread is None:
                    await state.message.reply(text, files=attachments, mention_author=False)
                else:
                    await state.target.send(text, files=attachments)

    async def _say(self, message: discord.Message, text: str, session: str) -> None:
        try:
            async with asyncio.timeout(REST_TIMEOUT_S):
                await message.reply(text, mention_author=False)
        except (discord.HTTPException, TimeoutError) as exc:
            _log.warning("session %s: could not tell the user %r: %s", session, text, exc)

    async def _state_for(self, message_id: str, session: str) -> RequestState | None:
        """The request's state; rebuilt from Discord when it is not in memory (a restart)."""
        if (state := self.requests.get(message_id)) is not None:
            return state
        try:
            channel_id = int(SessionId.from_str(session).key)
            channel = self.get_channel(channel_id) or await self.fetch_channel(channel_id)
            if not isinstance(channel, discord.abc.Messageable):
                return None
            async with asyncio.timeout(REST_TIMEOUT_S):
                message = await channel.fetch_message(int(message_id))
        except (ValueError, discord.HTTPException, TimeoutError) as exc:
            _log.warning("session %s: cannot find message %s: %s", session, message_id, exc)
            return None
        thread = message.channel if isinstance(message.channel, discord.Thread) else None
        state = RequestState(message, session_of(message.channel), thread=thread)
        self.requests[message_id] = state
        return state
