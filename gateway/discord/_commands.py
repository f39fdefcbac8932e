"""The slash commands of one bot (docs/design.md#gateways): ``/ask``, ``/status``, ``/stop``,
``/model``,
``/breakglass``, registered per bot (globally, or in ``command_guilds``); every error is
answered ephemerally (https://discord.com/developers/docs/interactions/receiving-and-responding,
message flag EPHEMERAL)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from gateway.commands import CommandError, command_session, model_text, status_text
from gateway.discord._intake import Pending
from gateway.discord._status import REST_TIMEOUT_S
from gateway.errors import NotRunningError
from protocol import ChatMessage, Control, ControlAction

if TYPE_CHECKING:
    from gateway.discord._bot import SwitchboardBot

_log = logging.getLogger(__name__)

SYNC_TIMEOUT_S = 30.0
Interaction = discord.Interaction


def _session(bot: SwitchboardBot, interaction: Interaction) -> str:
    """The session ``/status``, ``/stop`` and ``/model`` are about: in a thread the bot opened
    for a run, that run's; else ``_own_session``."""
    return bot.tracker.run_session(interaction.channel_id or 0, _own_session(interaction))


def _own_session(interaction: Interaction) -> str:
    """The thread's or DM's session, else the person's own in the channel
    (``gateway.commands.command_session``)."""
    kind = getattr(interaction.channel, "type", None)
    return command_session(interaction.channel_id or 0, interaction.user.id,
                           kind.value if isinstance(kind, discord.ChannelType) else None)


def _may_stop(bot: SwitchboardBot, interaction: Interaction) -> bool:
    """Whether ``interaction``'s user may stop the run it is about: in a thread the bot opened
    for someone's request, that person, the bot's admins or a member with Manage Messages
    there (as for the 🛑 reaction, ``_reactions.may_control``); elsewhere the run is the
    person's own conversation's."""
    owner = bot.tracker.thread_owner(interaction.channel_id or 0)
    user = str(interaction.user.id)
    return (not owner or owner == user or user in bot.config.admins
            or bool(interaction.permissions.manage_messages))


async def _ephemeral(interaction: Interaction, text: str) -> None:
    async with asyncio.timeout(REST_TIMEOUT_S):
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)


def build_tree(bot: SwitchboardBot) -> app_commands.CommandTree[SwitchboardBot]:
    """The command tree of ``bot`` with every command and an ephemeral error handler."""
    tree: app_commands.CommandTree[SwitchboardBot] = app_commands.CommandTree(bot)

    @tree.command(name="ask", description="Ask Switchboard (same as mentioning the bot)")
    @app_commands.describe(question="what you want done or answered")
    async def ask(interaction: Interaction, question: str) -> None:
        await _submit(bot, interaction, question, breakglass=False)

    @tree.command(name="status", description="What is running in this thread")
    async def status(interaction: Interaction) -> None:
        await _ephemeral(interaction, await status_text(bot.services, _session(bot, interaction)))

    @tree.command(name="stop", description="Stop the run in this thread at its next turn")
    async def stop(interaction: Interaction) -> None:
        session = _session(bot, interaction)
        if not _may_stop(bot, interaction):
            raise CommandError("🔒 Only the person who asked, the bot's admins or members who "
                               "manage messages here can stop this run; nothing was changed.")
        if bot.bridge is None:
            raise CommandError("⚠️ Switchboard is not running right now.")
        try:
            await bot.bridge.control(Control(
                session=session, action=ControlAction.ABORT, user_id=str(interaction.user.id),
                message_id=str(interaction.id), origin=bot.origin))
        except NotRunningError as exc:
            raise CommandError(f"⚠️ {exc}") from exc
        async with asyncio.timeout(REST_TIMEOUT_S):
            await interaction.response.send_message(
                f"⏹️ Stop requested by {interaction.user.mention}, halting at the next turn.")

    @tree.command(name="model", description="Show or pick the model tier for this thread")
    @app_commands.describe(tier="1 cheap chat, 2 tool-capable, 3 strong code, 4 critical")
    async def model(interaction: Interaction, tier: int | None = None) -> None:
        await _ephemeral(interaction, await model_text(bot.services, _session(bot, interaction),
                                                       tier))

    @tree.command(name="breakglass", description="Ask the top model directly (allowed users)")
    @app_commands.describe(question="what you want answered by the top model")
    async def breakglass(interaction: Interaction, question: str) -> None:
        if str(interaction.user.id) not in bot.services.breakglass_users:
            raise CommandError("🔒 /breakglass is only for the users the operator allowed.")
        await _submit(bot, interaction, question, breakglass=True)

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

    return tree


async def _submit(bot: SwitchboardBot, interaction: Interaction, question: str, *,
                  breakglass: bool) -> None:
    """Answer the command with the question (the message answers attach to), then send the
    request through the bot's queue like a mention."""
    user = interaction.user
    label = "🔓 breakglass" if breakglass else "❓"
    async with asyncio.timeout(REST_TIMEOUT_S):
        await interaction.response.send_message(f"{label} {user.mention}: {question}"[:2000])
        anchor = await interaction.original_response()
    channel_id = interaction.channel_id or 0
    request = bot.config.stamp(ChatMessage(
        message_id=str(anchor.id), session=_own_session(interaction), origin=bot.origin,
        user_id=str(user.id), user_name=user.display_name, text=question,
        channel_id=str(channel_id), guild_id=str(interaction.guild_id or ""),
        parent_channel_id=str(getattr(interaction.channel, "parent_id", None) or ""),
        breakglass=breakglass, sent_at=time.time(), addressed=True))
    await bot.submit(Pending(request, anchor))


async def sync_tree(bot: SwitchboardBot, tree: app_commands.CommandTree[SwitchboardBot]) -> None:
    """Register the commands: in each of ``config.command_guilds`` (instant), else globally.
    A failure is logged: the bot still answers mentions."""
    try:
        async with asyncio.timeout(SYNC_TIMEOUT_S):
            if bot.config.command_guilds:
                for guild_id in bot.config.command_guilds:
                    guild = discord.Object(id=int(guild_id))
                    tree.copy_global_to(guild=guild)
                    await tree.sync(guild=guild)
            else:
                await tree.sync()
    except (discord.HTTPException, TimeoutError, ValueError) as exc:
        _log.error("bot %s: slash commands not registered: %s", bot.config.name, exc)
