"""Start and stop a Discord gateway instance: log in, connect the bridge, connect the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import discord

from actors.bus import resolve_nats_url
from actors.config import Settings, Topology
from gateway.bridge import Bridge, connect_bridge
from gateway.discord._bot import SwitchboardBot
from gateway.discord._endpoints import configure_discord_endpoints
from gateway.errors import DiscordConfigError, GatewayError
from protocol import Subjects

_log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
CLOSE_TIMEOUT_S = 10.0


def origin_for(bot_user_id: int | None) -> str:
    """The bridge origin of a bot: ``discord-<bot user id>`` (stable across restarts, so its
    durable outbox consumer keeps answers published while it was down)."""
    return f"discord-{bot_user_id or 'main'}"


@contextlib.asynccontextmanager
async def discord_gateway(
    settings: Settings,
    subjects: Subjects,
    *,
    nats_url: str | None = None,
    durable: bool = True,
    ready_timeout_s: float = READY_TIMEOUT_S,
    **bot_options: Any,
) -> AsyncIterator[SwitchboardBot]:
    """A logged-in, connected, ready ``SwitchboardBot`` wired to the actors; closed on exit.

    Args:
        settings: ``DISCORD_TOKEN`` (required), ``DISCORD_API_BASE``, ``DISCORD_GATEWAY_URL``,
            NATS settings.
        subjects: subject names of the deployment.
        nats_url: overrides the URL from ``settings``.
        durable: read the outbox through a durable consumer (answers survive a restart).
        ready_timeout_s: how long to wait for READY and the guilds.
        **bot_options: passed to ``SwitchboardBot`` (``dms``, ``edit_interval_s``,
            ``guild_ready_timeout``, ...).

    Raises:
        DiscordConfigError: no token, a bad endpoint URL, or Discord rejected the token.
        NotRunningError: NATS or Switchboard's streams are not there.
        GatewayError: the gateway connection failed or READY did not come in time.
    """
    token = settings.discord_token
    if not token:
        msg = "DISCORD_TOKEN is not set: the Discord gateway needs a bot token"
        raise DiscordConfigError(msg)
    configure_discord_endpoints(settings.discord_api_base, settings.discord_gateway_url)
    bot = SwitchboardBot(**bot_options)
    bridge: Bridge | None = None
    connection: asyncio.Task[None] | None = None
    try:
        try:
            await bot.login(token)
        except discord.LoginFailure as exc:
            msg = "Discord rejected DISCORD_TOKEN (401 on /users/@me)"
            raise DiscordConfigError(msg) from exc
        except discord.HTTPException as exc:
            msg = f"Discord login failed: {exc}"
            raise GatewayError(msg) from exc
        origin = origin_for(bot.user.id if bot.user else None)
        bridge = await connect_bridge(settings, subjects, origin,
                                      nats_url=resolve_nats_url(settings, nats_url))
        await bridge.start(bot.on_outbound, durable=durable)
        bot.attach(bridge)
        connection = asyncio.create_task(bot.connect(reconnect=True), name=f"discord:{origin}")
        await _wait_ready(bot, connection, ready_timeout_s)
        _log.info("Discord bot %s ready (origin %s)", bot.user, origin)
        yield bot
    finally:
        await _close(bot, connection, bridge)


async def _wait_ready(bot: SwitchboardBot, connection: asyncio.Task[None],
                      timeout_s: float) -> None:
    ready = asyncio.create_task(bot.wait_until_ready(), name="discord:ready")
    done, _ = await asyncio.wait({ready, connection}, timeout=timeout_s,
                                 return_when=asyncio.FIRST_COMPLETED)
    if ready in done:
        return
    ready.cancel()
    if connection in done:
        exc = connection.exception()
        msg = f"the Discord gateway connection ended before READY: {exc!r}"
        raise GatewayError(msg) from exc
    msg = f"Discord did not send READY within {timeout_s:.0f} s"
    raise GatewayError(msg)


async def _close(bot: SwitchboardBot, connection: asyncio.Task[None] | None,
                 bridge: Bridge | None) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await bot.close()
    if connection is not None:
        if not connection.done():
            connection.cancel()
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await connection
    if bridge is not None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await bridge.stop()


async def run_discord(settings: Settings, topology: Topology, *,
                      nats_url: str | None = None) -> None:
    """Run the Discord gateway until the bot is closed or the task is cancelled.

    Entry of ``switchboard gateway`` / ``switchboard up`` when ``DISCORD_TOKEN`` is set.

    Raises:
        DiscordConfigError, NotRunningError, GatewayError: as ``discord_gateway``.
    """
    async with discord_gateway(settings, topology.subjects, nats_url=nats_url) as bot:
        await bot.wait_closed()
