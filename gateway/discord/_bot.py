"""``SwitchboardBot``: a discord.py client that hands people's messages to the actors and
posts what comes back (progress, answers, options) in threads (docs/design.md#gateways)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import discord

from gateway.config import DEFAULT_BOT, BotConfig, GatewaySettings
from gateway.discord._approvals import ApprovalButton, ApprovalClicks, deny_waiting
from gateway.discord._attachments import store_attachments, with_paths
from gateway.discord._commands import add_commands, sync_tree
from gateway.discord._inbound import is_addressed, should_answer, to_chat_message
from gateway.discord._intake import Intake, Pending
from gateway.discord._notices import Notices, say
from gateway.discord._outbound import OutboundPoster
from gateway.discord._reactions import (
    ALREADY_VOTED_TEXT,
    Reaction,
    control_for,
    may_control,
    refusal_text,
)
from gateway.discord._requests import Requests
from gateway.discord._status import REST_TIMEOUT_S
from gateway.discord._tracker import MessageTracker
from gateway.errors import AttachmentError, NotRunningError
from gateway.services import BotServices
from protocol import ChatMessage, Control, ControlAction, Outbound, SessionId

_log = logging.getLogger(__name__)

NOT_RUNNING_TEXT = "⚠️ Switchboard is not running right now, so I cannot answer. Try again later."
EMPTY_TEXT = "👋 Mention me with a question, or reply to one of my messages."
QUEUED_TEXT = ("⏳ Queued: I'm still working on the previous request here, and I'll answer "
               "this right after it.")
BUSY_TEXT = ("⏳ Busy: I'm answering many requests right now. You are number {position} in "
             "line, and I'll start on yours as soon as a slot frees up.")
TOO_BUSY_TEXT = ("🚦 Too busy: {waiting} requests are already waiting, so I can't take this one. "
                 "Please try again in a few minutes.")


class Sender(Protocol):
    """What the bot needs of ``gateway.bridge.Bridge``."""

    origin: str

    async def send(self, message: ChatMessage) -> None: ...

    async def control(self, control: Control) -> None: ...


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
    """The Discord side of one bot of the pool.

    Args:
        bridge: sends ChatMessages and Controls to the actors (``None`` until ``attach``;
            messages received meanwhile are answered with "not running").
        config: the bot's configuration (DMs, allowlists, profile); a DM-enabled bot with no
            allowlist by default.
        settings: gateway settings (debounce, throttles, limits).
        services: limits, artifact store, runs and sessions buckets.
        dms: overrides ``config.dms``.
        edit_interval_s: overrides ``settings.edit_interval_s``.
        commands: register and answer slash commands.
        **options: passed to ``discord.Client`` (``guild_ready_timeout``, ...).
    """

    def __init__(self, bridge: Sender | None = None, *, config: BotConfig | None = None,
                 settings: GatewaySettings | None = None, services: BotServices | None = None,
                 dms: bool | None = None, edit_interval_s: float | None = None,
                 commands: bool = True, **options: Any) -> None:
        options.setdefault("intents", default_intents())
        super().__init__(**options)
        self.bridge = bridge
        self.settings = settings or GatewaySettings()
        self.config = config or BotConfig(name=DEFAULT_BOT, token="-")
        if dms is not None:
            self.config = self.config.model_copy(update={"dms": dms})
        self.services = services or BotServices()
        self.requests = Requests(edit_interval_s or self.settings.edit_interval_s)
        self.tracker = MessageTracker(kv=self.services.messages)
        self.notices = Notices(timeout_s=REST_TIMEOUT_S)
        self.intake = Intake(self._dispatch, self._tell_queued, self._tell_busy,
                             debounce_s=self.settings.debounce_s,
                             stale_s=self.settings.queue_stale_s,
                             max_in_flight=self.settings.max_in_flight,
                             max_waiting=self.settings.max_waiting)
        self.poster = OutboundPoster(self, self.requests, self.tracker, self.intake,
                                     limiter=self.services.limiter)
        self.approvals = ApprovalClicks(self.tracker, self._publish_control,
                                        lambda: self.config.admins, lambda: self.origin)
        """Clicks on Approve / Deny (``ApprovalButton.callback`` finds it here)."""
        self.add_dynamic_items(ApprovalButton)
        self.tree: discord.app_commands.CommandTree[SwitchboardBot] | None = None
        if commands:
            self.tree = discord.app_commands.CommandTree(self)
            add_commands(self.tree, self)
        self._closed = asyncio.Event()

    @property
    def dms(self) -> bool:
        return self.config.dms

    @property
    def origin(self) -> str:
        return self.bridge.origin if self.bridge else "none"

    def attach(self, bridge: Sender) -> None:
        """Start sending received messages through ``bridge``."""
        self.bridge = bridge

    def apply_config(self, config: BotConfig) -> None:
        """Use a new configuration of the same token (allowlists, DMs, profile) at once."""
        self.config = config

    async def sync_commands(self) -> None:
        """Register this bot's slash commands with Discord (logged, never raised)."""
        if self.tree is not None:
            await sync_tree(self.tree, self.config)

    async def close(self) -> None:
        """Close the Discord connection (scheduled status edits and queued sends are dropped)."""
        self.requests.close()
        await self.intake.close()
        await self.notices.close()
        await super().close()
        self._closed.set()

    async def wait_closed(self) -> None:
        """Return once ``close`` has run (the service's lifetime: no timeout)."""
        await self._closed.wait()

    # ------------------------------------------------------------------ inbound

    def allowed(self, message: discord.Message) -> bool:
        """Whether this bot answers ``message``: the rules of ``should_answer`` and the
        configuration's DM setting and guild / channel allowlists."""
        me = self.user
        if me is None or not should_answer(message, me, dms=self.config.dms,
                                           listen_channels=self.config.listen_channels):
            return False
        channel = message.channel
        parent = getattr(channel, "parent_id", None)
        return self.config.allows(message.guild.id if message.guild else None,
                                  (channel.id, parent))

    async def on_message(self, message: discord.Message) -> None:
        if not self.allowed(message):
            return
        assert self.user is not None
        request = self.config.stamp(to_chat_message(
            message, self.user.id, self.origin, addressed=is_addressed(message, self.user)))
        if not request.text and not request.attachments:
            if request.addressed:
                await say(message, EMPTY_TEXT, request.session)
            return
        await self.intake.submit(Pending(request, message, list(message.attachments)))

    async def submit(self, pending: Pending) -> None:
        """Send a request made another way (a slash command) through the same queue."""
        await self.intake.submit(pending, debounce=False)

    async def _dispatch(self, pending: Pending) -> bool:
        """Check limits, store attachments, send; False when refused. The person is told why
        when they spoke to the bot; a message not addressed to it is refused silently."""
        request, message = pending.request, pending.anchor
        limiter = self.services.limiter
        if limiter is not None:
            refusal = await limiter.admit(request.user_id, request.guild_id)
            if refusal is not None:
                _log.info("session %s: user %s refused: %s", request.session, request.user_id,
                          refusal.reason)
                await self._refuse(pending, refusal.text)
                return False
        if pending.attachments and self.services.artifacts is not None:
            try:
                stored = await store_attachments(pending.attachments, request.session,
                                                 self.services.artifacts,
                                                 self.settings.attachment_max_bytes)
            except AttachmentError as exc:
                await self._refuse(pending, str(exc))
                return False
            request = with_paths(request, pending.attachments, stored)
        self.requests.open(request, message)
        try:
            if self.bridge is None:
                raise NotRunningError
            await self.bridge.send(request)
        except NotRunningError as exc:
            self.requests.drop(request.message_id)
            _log.warning("session %s: not sent: %s", request.session, exc)
            await self._refuse(pending, NOT_RUNNING_TEXT)
            return False
        _log.info("session %s: message %s sent%s", request.session, request.message_id,
                  "" if request.addressed else " (not addressed to the bot)")
        return True

    async def _refuse(self, pending: Pending, text: str) -> None:
        """Tell the person why their request did not go out, if they spoke to the bot."""
        if pending.request.addressed:
            await say(pending.anchor, text, pending.request.session)

    async def _tell_queued(self, pending: Pending) -> None:
        self.notices.tell(pending.anchor, QUEUED_TEXT, pending.request.session)

    async def _tell_busy(self, pending: Pending, position: int | None) -> None:
        """Tell the person where their request waits, or that it was refused (``None``)."""
        text = (TOO_BUSY_TEXT.format(waiting=self.intake.waiting) if position is None
                else BUSY_TEXT.format(position=position))
        self.notices.tell(pending.anchor, text, pending.request.session)

    # ------------------------------------------------------------------ reactions

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if self.user is None or payload.user_id == self.user.id:
            return
        tracked = await self.tracker.lookup(payload.message_id)
        if tracked is None:
            return
        found = control_for(Reaction(str(payload.emoji), payload.user_id, payload.message_id),
                            tracked, self.origin)
        if found is None:
            return
        control, ack = found
        if not (may_control(payload.user_id, tracked, self.config.admins,
                            manages_messages=False)
                or await self._manages_messages(payload)):
            _log.info("session %s: %s from user %s refused: not theirs", control.session,
                      control.action, payload.user_id)
            await self._post_in(payload.channel_id, refusal_text(control))
            return
        vote = control.action is ControlAction.FEEDBACK
        previous = await self.tracker.vote_of(tracked.request_id, payload.user_id) if vote else 0
        if vote and previous == control.value:
            await self._post_in(payload.channel_id, ALREADY_VOTED_TEXT.format(
                user=payload.user_id, emoji=str(payload.emoji)))
            return
        if vote:  # before publishing: the same vote arriving meanwhile is a repeat
            self.tracker.record_vote(tracked.request_id, payload.user_id, control.value)
        try:
            if self.bridge is None:
                raise NotRunningError
            await self.bridge.control(control)
        except (NotRunningError, ValueError) as exc:
            _log.warning("session %s: %s not sent: %s", control.session, control.action, exc)
            ack = NOT_RUNNING_TEXT
            if vote:
                self.tracker.record_vote(tracked.request_id, payload.user_id, previous)
        else:
            if control.action is ControlAction.ABORT:
                await deny_waiting(self.tracker, self._publish_control, control.session,
                                   str(payload.user_id))
        _log.info("session %s: %s from user %s", control.session, control.action,
                  payload.user_id)
        if ack is not None:
            await self._post_in(payload.channel_id, ack)

    async def _publish_control(self, control: Control) -> None:
        if self.bridge is None:
            raise NotRunningError
        await self.bridge.control(control)

    async def _manages_messages(self, payload: discord.RawReactionActionEvent) -> bool:
        """Whether the person who reacted has Manage Messages in the channel (guild channels
        and threads: https://discord.com/developers/docs/topics/permissions); False in DMs."""
        member = payload.member
        if member is None:
            return False
        channel = self.get_channel(payload.channel_id)
        try:
            if channel is None:
                async with asyncio.timeout(REST_TIMEOUT_S):
                    channel = await self.fetch_channel(payload.channel_id)
            if isinstance(channel, discord.abc.GuildChannel | discord.Thread):
                return channel.permissions_for(member).manage_messages
        except (discord.HTTPException, discord.ClientException, TimeoutError) as exc:
            _log.warning("channel %s: permissions of %s unknown: %s", payload.channel_id,
                         payload.user_id, exc)
        return False

    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        """A deleted thread takes its workspace and stored artifacts with it
        (docs/design.md#workspaces-and-artifacts):
        its session is ``discord-<thread id>``."""
        control = Control(session=str(SessionId("discord", str(payload.thread_id))),
                          action=ControlAction.DELETE_SESSION,
                          message_id=str(payload.thread_id), origin=self.origin)
        try:
            if self.bridge is None:
                raise NotRunningError
            await self.bridge.control(control)
        except NotRunningError as exc:
            _log.warning("session %s: thread deleted but not forgotten: %s", control.session,
                         exc)
            return
        _log.info("session %s: thread deleted; forgetting its workspace", control.session)

    async def _post_in(self, channel_id: int, text: str) -> None:
        try:
            async with asyncio.timeout(REST_TIMEOUT_S):
                channel = self.get_channel(channel_id) or await self.fetch_channel(channel_id)
            if isinstance(channel, discord.abc.Messageable):
                async with asyncio.timeout(REST_TIMEOUT_S):
                    await channel.send(text)
        except (discord.HTTPException, TimeoutError) as exc:
            _log.warning("channel %s: could not post %r: %s", channel_id, text, exc)

    # ------------------------------------------------------------------ outbound

    async def on_outbound(self, outbound: Outbound) -> None:
        """Handle one message from the bridge (see ``OutboundPoster.handle``)."""
        await self.poster.handle(outbound)
