"""The slash commands of one bot (docs/design.md#gateways): ``/ask``, ``/status``, ``/stop``,
``/model``,
``/breakglass``, registered per bot (globally, or in ``command_guilds``); every error is
answered ephemerally (https://discord.com/developers/docs/interactions/receiving-and-responding,
message flag EPHEMERAL)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import discord
from discord import app_commands

from gateway.commands import CommandError, command_session, model_text, status_text
from gateway.config import BotConfig
from gateway.discord._approvals import PendingApprovals, deny_waiting
from gateway.discord._intake import Pending
from gateway.discord._status import REST_TIMEOUT_S
from gateway.errors import NotRunningError
from gateway.services import BotServices
from protocol import ChatMessage, Control, ControlAction

_log = logging.getLogger(__name__)

SYNC_TIMEOUT_S = 30.0
Interaction = discord.Interaction


class Controller(Protocol):
    """Where ``/stop`` sends its control (``gateway.bridge.Bridge``).

    Raises:
        NotRunningError: Switchboard's streams are not there.
    """

    async def control(self, control: Control) -> None: ...


class RunThreads(PendingApprovals, Protocol):
    """Which run a thread the bot opened is for, and the approval it may wait on
    (``_tracker.MessageTracker``)."""

    def run_session(self, channel_id: int, fallback: str) -> str: ...

    def thread_owner(self, channel_id: int) -> str: ...


class CommandHost(Protocol):
    """What the slash commands use of their bot, read each time a command runs (its
    configuration changes while it runs; its bridge comes once it is attached).

    Attributes:
        config: allowlists, admins and what ``stamp`` adds to a request.
        bridge: where ``/stop`` goes (``None``: Switchboard is not running).
        origin: the bridge origin requests and controls carry.
        services: the runs bucket (``/status``), the sessions (``/model``), the breakglass
            users.
        tracker: the run each thread the bot opened is for, and who asked for it.
    """

    @property
    def config(self) -> BotConfig: ...

    @property
    def bridge(self) -> Controller | None: ...

    @property
    def origin(self) -> str: ...

    @property
    def services(self) -> BotServices: ...

    @property
    def tracker(self) -> RunThreads: ...

    async def submit(self, pending: Pending) -> None:
        """Send a request through the bot's queue, like a mention."""


def _session(host: CommandHost, interaction: Interaction) -> str:
    """The session ``/status``, ``/stop`` and ``/model`` are about: in a thread the bot opened
    for a run, that run's; else ``_own_session``."""
    return host.tracker.run_session(interaction.channel_id or 0, _own_session(interaction))


def _own_session(interaction: Interaction) -> str:
    """The thread's or DM's session, else the person's own in the channel
    (``gateway.commands.command_session``)."""
    kind = getattr(interaction.channel, "type", None)
    return command_session(interaction.channel_id or 0, interaction.user.id,
                           kind.value if isinstance(kind, discord.ChannelType) else None)


def _may_stop(host: CommandHost, interaction: Interaction) -> bool:
    """Whether ``interaction``'s user may stop the run it is about: in a thread the bot opened
    for someone's request, that person, the bot's admins or a member with Manage Messages
    there (as for the 🛑 reaction, ``_reactions.may_control``); elsewhere the run is the
    person's own conversation's."""
    owner = host.tracker.thread_owner(interaction.channel_id or 0)
    user = str(interaction.user.id)
    return (not owner or owner == user or user in host.config.admins
            or bool(interaction.permissions.manage_messages))


async def _ephemeral(interaction: Interaction, text: str) -> None:
    async with asyncio.timeout(REST_TIMEOUT_S):
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)


def add_commands(tree: app_commands.CommandTree[discord.Client], host: CommandHost) -> None:
    """Add every command, answered for ``host``, and an ephemeral error handler to ``tree``
    (the command tree of the bot's Discord client)."""

    @tree.command(name="ask", description="Ask Switchboard (same as mentioning the bot)")
    @app_commands.describe(question="what you want done or answered")
    async def ask(interaction: Interaction, question: str) -> None:
        await _submit(host, interaction, question, breakglass=False)

    @tree.command(name="status", description="What is running in this thread")
    async def status(interaction: Interaction) -> None:
        await _ephemeral(interaction, await status_text(host.services, _session(host, interaction)))

    @tree.command(name="stop", description="Stop the run in this thread at its next turn")
    async def stop(interaction: Interaction) -> None:
        session = _session(host, interaction)
        if not _may_stop(host, interaction):
            raise CommandError("🔒 Only the person who asked, the bot's admins or members who "
                               "manage messages here can stop this run; nothing was changed.")
        if host.bridge is None:
            raise CommandError("⚠️ Switchboard is not running right now.")
        try:
            await host.bridge.control(Control(
                session=session, action=ControlAction.ABORT, user_id=str(interaction.user.id),
                message_id=str(interaction.id), origin=host.origin))
        except NotRunningError as exc:
            raise CommandError(f"⚠️ {exc}") from exc
        await deny_waiting(host.tracker, host.bridge.control, session, str(interaction.user.id))
        async with asyncio.timeout(REST_TIMEOUT_S):
            await interaction.response.send_message(
                f"⏹️ Stop requested by {interaction.user.mention}, halting at the next turn.")

    @tree.command(name="model", description="Show or pick the model tier for this thread")
    @app_commands.describe(tier="1 cheap chat, 2 tool-capable, 3 strong code, 4 critical")
    async def model(interaction: Interaction, tier: int | None = None) -> None:
        await _ephemeral(interaction, await model_text(host.services, _session(host, interaction),
                                                       tier))

    @tree.command(name="breakglass", description="Ask the top model directly (allowed users)")
    @app_commands.describe(question="what you want answered by the top model")
    async def breakglass(interaction: Interaction, question: str) -> None:
        if str(interaction.user.id) not in host.services.breakglass_users:
            raise CommandError("🔒 /breakglass is only for the users the operator allowed.")
        await _submit(host, interaction, question, breakglass=True)

    @tree.error
    async def on_error(interaction: Interaction, error: app_commands.AppCommandError) -> None:
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        if isinstance(cause, CommandError):
            text = str(cause)
        else:
            _log.error("command %s failed: %r", interaction.command and
                       interaction.command.name, cause)
            text = f"⚠️ That did not work: {cause}"
        try:
            await _ephemeral(interaction, text)
        except (discord.HTTPException, TimeoutError) as exc:
            _log.warning("could not answer the command's error: %s", exc)


async def _submit(host: CommandHost, interaction: Interaction, question: str, *,
                  breakglass: bool) -> None:
    """Answer the command with the question (the message answers attach to), then send the
    request through the bot's queue like a mention."""
    user = interaction.user
    label = "🔓 breakglass" if breakglass else "❓"
    async with asyncio.timeout(REST_TIMEOUT_S):
        await interaction.response.send_message(f"{label} {user.mention}: {question}"[:2000])
        anchor = await interaction.original_response()
    channel_id = interaction.channel_id or 0
    request = host.config.stamp(ChatMessage(
        message_id=str(anchor.id), session=_own_session(interaction), origin=host.origin,
        user_id=str(user.id), user_name=user.display_name, text=question,
        channel_id=str(channel_id), guild_id=str(interaction.guild_id or ""),
        parent_channel_id=str(getattr(interaction.channel, "parent_id", None) or ""),
        breakglass=breakglass, sent_at=time.time(), addressed=True))
    await host.submit(Pending(request, anchor))


async def sync_tree(tree: app_commands.CommandTree[discord.Client], config: BotConfig) -> None:
    """Register the commands with Discord within 30 s: in each of ``config.command_guilds``
    (instant), else globally. A failure is logged: the bot still answers mentions."""
    try:
        async with asyncio.timeout(SYNC_TIMEOUT_S):
            if config.command_guilds:
                for guild_id in config.command_guilds:
                    guild = discord.Object(id=int(guild_id))
                    tree.copy_global_to(guild=guild)
                    await tree.sync(guild=guild)
            else:
                await tree.sync()
    except (discord.HTTPException, TimeoutError, ValueError) as exc:
        _log.error("bot %s: slash commands not registered: %s", config.name, exc)
