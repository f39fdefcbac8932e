"""What comes back from the actors, posted in Discord: progress in one status message edited in
place, the answer (split, with files), options; each bot message remembered for reactions."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Protocol

import discord

from gateway.approvals import render_approval
from gateway.discord._approvals import approval_view
from gateway.discord._inbound import session_of, strip_mentions, thread_name
from gateway.discord._intake import Intake
from gateway.discord._notices import say
from gateway.discord._reactions import STOP, THUMBS_DOWN, THUMBS_UP
from gateway.discord._requests import Requests
from gateway.discord._status import REST_TIMEOUT_S, RequestState
from gateway.discord._tracker import Kind, MessageTracker, Tracked
from gateway.limits import Limiter
from gateway.render import render_options, render_progress, render_reply, split_message
from protocol import (
    ApprovalRequest,
    ConsolidatedOptions,
    FileBlob,
    Flow,
    Outbound,
    Progress,
    Reply,
    SessionId,
    is_final,
)

_log = logging.getLogger(__name__)

FILES_PER_MESSAGE = 10
"""Attachments in one message (https://discord.com/developers/docs/resources/message,
"Create Message": up to 10 files)."""
THREADED_FLOWS = frozenset({Flow.SEQUENTIAL, Flow.BRANCH})


COMMIT_HINT = "👍 to merge · 👎 to delete the branch"
"""What the reactions on a commit message do (docs/design.md#the-agentic-loop); the bot adds both
to the message."""

Channel = discord.abc.GuildChannel | discord.Thread | discord.abc.PrivateChannel


class Channels(Protocol):
    """What the poster uses of the Discord client (``discord.Client``): the bot's own user
    (``None`` before login), and a channel or thread by id, from the client's cache or
    fetched from Discord (``fetch_channel`` raises ``discord.HTTPException``)."""

    @property
    def user(self) -> discord.ClientUser | None: ...

    def get_channel(self, id: int, /) -> Channel | None: ...

    async def fetch_channel(self, channel_id: int, /) -> Channel: ...


class OutboundPoster:
    """Posts one bot's outbound messages.

    Args:
        client: the bot's user and channels.
        requests: the state of the requests in flight (the poster shows their progress,
            rebuilds a lost one from Discord and finishes each when it is answered).
        tracker: remembers each bot message posted and each thread opened.
        intake: told when a request is answered (or dropped), and of the thread opened for it.
        limiter: counts each answer's tokens against the person's quota (None: unlimited).
    """

    def __init__(self, client: Channels, requests: Requests, tracker: MessageTracker,
                 intake: Intake, *, limiter: Limiter | None = None) -> None:
        self.client = client
        self.requests = requests
        self.tracker = tracker
        self.intake = intake
        self.limiter = limiter

    async def handle(self, outbound: Outbound) -> None:
        """Handle one message from the bridge; Discord errors are logged and told in Discord."""
        state = await self._state_for(outbound.in_reply_to, outbound.session)
        if state is None:
            _log.warning("session %s: %s for unknown message %s dropped", outbound.session,
                         type(outbound).__name__, outbound.in_reply_to)
            if is_final(outbound):
                self.intake.finish(outbound.in_reply_to)
            return
        try:
            match outbound:
                case Progress():
                    await self._on_progress(state, outbound)
                case Reply():
                    await self._on_reply(state, outbound)
                case ConsolidatedOptions():
                    await self._on_options(state, outbound)
                case ApprovalRequest():
                    await self._on_approval(state, outbound)
        except (discord.HTTPException, TimeoutError) as exc:
            _log.exception("session %s: posting %s failed", state.session,
                           type(outbound).__name__)
            await say(state.message, f"⚠️ I could not post the answer: {exc}", state.session)
        finally:
            if is_final(outbound):
                self.intake.finish(outbound.in_reply_to)

    async def _on_progress(self, state: RequestState, p: Progress) -> None:
        if p.stage == "classified" and p.flow in THREADED_FLOWS:
            await self._open_thread(state)
        elif p.stage == "classified" and state.status is None:
            async with asyncio.timeout(REST_TIMEOUT_S):
                await state.target.typing()
            return
        first = state.status is None
        await self.requests.show_progress(state, render_progress(p), streamed=p.stage == "stream")
        if first and state.status is not None:
            self.tracker.remember(state.status.id, Tracked(
                Kind.STATUS if p.flow == Flow.SEQUENTIAL else Kind.ANSWER, state.session,
                str(state.message.id), user_id=state.user_id))
            if p.flow == Flow.SEQUENTIAL:
                await self._react(state.status, STOP)

    async def _open_thread(self, state: RequestState) -> None:
        message = state.message
        if state.thread is not None or not isinstance(message.channel, discord.TextChannel):
            return
        me = self.client.user.id if self.client.user else 0
        name = thread_name(strip_mentions(message.content, me) or state.text)
        async with asyncio.timeout(REST_TIMEOUT_S):
            thread = await message.create_thread(name=name)
        self.requests.thread_opened(state, thread)
        self.tracker.remember_thread(thread.id, state.session, state.user_id)
        self.intake.hold(session_of(thread), str(message.id))
        _log.info("session %s: opened thread %s", state.session, thread.id)

    async def _on_reply(self, state: RequestState, r: Reply) -> None:
        await self.requests.finish(r.in_reply_to)
        await self._count_tokens(state, r.usage.prompt_tokens + r.usage.completion_tokens)
        kind = Kind.COMMIT if r.branch else Kind.ANSWER
        text = render_reply(r) + (f"\n{COMMIT_HINT}" if kind is Kind.COMMIT else "")
        chunks = split_message(text)
        tracked = Tracked(kind, r.session, r.in_reply_to, role=r.role, branch=r.branch,
                          user_id=state.user_id)
        posted: list[discord.Message] = []
        if state.streamed and state.status is not None and chunks and state.thread is None:
            async with asyncio.timeout(REST_TIMEOUT_S):
                await state.status.edit(content=chunks[0])
            posted.append(state.status)
            chunks = chunks[1:]
        posted += await self._post(state, chunks, r.files, reply=r.flow not in THREADED_FLOWS)
        for message in posted:
            self.tracker.remember(message.id, tracked)
        if kind is Kind.COMMIT and posted:
            for emoji in (THUMBS_UP, THUMBS_DOWN):
                await self._react(posted[-1], emoji)
        _log.info("session %s: answered %s (%d chunks, %d files)", state.session,
                  r.in_reply_to, len(chunks), len(r.files))

    async def _on_approval(self, state: RequestState, a: ApprovalRequest) -> None:
        """Post the approval request with Approve and Deny (docs/design.md#approvals); the
        request stays in flight: the run's answer follows once someone decides."""
        async with asyncio.timeout(REST_TIMEOUT_S):
            posted = await state.target.send(render_approval(a)[:2000],
                                             view=approval_view(a.role, a.approval_id))
        self.tracker.remember(posted.id, Tracked(
            Kind.APPROVAL, a.session, a.in_reply_to, role=a.role,
            user_id=a.user_id or state.user_id, approval_id=a.approval_id))
        _log.info("session %s: approval %s asked (%s)", state.session, a.approval_id,
                  ", ".join(c.name for c in a.calls))

    async def _on_options(self, state: RequestState, o: ConsolidatedOptions) -> None:
        await self.requests.finish(o.in_reply_to)
        await self._count_tokens(state, o.usage.prompt_tokens + o.usage.completion_tokens)
        posted = await self._post(state, split_message(render_options(o)), (), reply=False)
        for message in posted:
            self.tracker.remember(message.id, Tracked(Kind.ANSWER, o.session, o.in_reply_to,
                                                      user_id=state.user_id))

    async def _count_tokens(self, state: RequestState, tokens: int) -> None:
        if self.limiter is not None and state.user_id:
            await self.limiter.add_tokens(state.user_id, tokens)

    async def _post(self, state: RequestState, chunks: list[str], files: tuple[FileBlob, ...],
                    *, reply: bool) -> list[discord.Message]:
        """Send ``chunks`` to the thread (or channel); files ride on the last chunk, ten per
        message, extra batches in messages of their own. Returns the messages posted."""
        batches = [files[i:i + FILES_PER_MESSAGE] for i in range(0, len(files), FILES_PER_MESSAGE)]
        messages: list[tuple[str | None, tuple[FileBlob, ...]]] = [(c, ()) for c in chunks]
        if batches and messages:
            messages[-1] = (messages[-1][0], batches.pop(0))
        messages.extend((None, batch) for batch in batches)
        posted = []
        for index, (text, batch) in enumerate(messages):
            attachments = [discord.File(io.BytesIO(f.data), filename=f.name) for f in batch]
            async with asyncio.timeout(REST_TIMEOUT_S):
                if index == 0 and reply and state.thread is None:
                    posted.append(await state.message.reply(text, files=attachments,
                                                            mention_author=False))
                else:
                    posted.append(await state.target.send(text, files=attachments))
        return posted

    async def _react(self, message: discord.Message, emoji: str) -> None:
        try:
            async with asyncio.timeout(REST_TIMEOUT_S):
                await message.add_reaction(emoji)
        except (discord.HTTPException, TimeoutError) as exc:
            _log.warning("could not add %s to message %s: %s", emoji, message.id, exc)

    async def _state_for(self, message_id: str, session: str) -> RequestState | None:
        """The request's state; rebuilt from Discord when it is not in memory (a restart)."""
        if (state := self.requests.get(message_id)) is not None:
            return state
        try:
            # discord-<channel>, or discord-<channel>-<user> for a person's /ask in a channel
            channel_id = int(SessionId.from_str(session).key.partition("-")[0])
            async with asyncio.timeout(REST_TIMEOUT_S):
                channel = (self.client.get_channel(channel_id)
                           or await self.client.fetch_channel(channel_id))
            if isinstance(channel, discord.Thread) and str(channel.id) == message_id:
                parent = channel.parent  # the request that opened this thread lives there
                if parent is not None:
                    channel = parent
            if not isinstance(channel, discord.abc.Messageable):
                return None
            async with asyncio.timeout(REST_TIMEOUT_S):
                message = await channel.fetch_message(int(message_id))
        except (ValueError, discord.HTTPException, TimeoutError) as exc:
            _log.warning("session %s: cannot find message %s: %s", session, message_id, exc)
            return None
        return self.requests.restore(message_id, message)
