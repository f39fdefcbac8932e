"""One bot of the pool: log in, bridge to the actors, connect to the gateway, stop — each step
bounded by a timeout, each failure a ``GatewayError`` that names the bot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from core.tasks import cancel_and_wait
from gateway.bridge import Bridge
from gateway.config import BotConfig, GatewaySettings
from gateway.discord._bot import SwitchboardBot
from gateway.errors import DiscordConfigError, GatewayError

_log = logging.getLogger(__name__)

BridgeFactory = Callable[[str], Awaitable[Bridge]]
"""Makes the (not yet started) bridge of an origin."""


def origin_for(bot_user_id: int | None) -> str:
    """The bridge origin of a bot: ``discord-<bot user id>`` (stable across restarts, so its
    durable outbox consumer keeps answers published while it was down)."""
    return f"discord-{bot_user_id or 'main'}"


class BotRunner:
    """Runs one ``SwitchboardBot`` for ``config``.

    Args:
        config: the bot's configuration.
        bridge_for: makes the bridge for the bot's origin (``discord-<bot user id>``).
        settings: gateway settings (timeouts, throttles, limits).
        durable: read the outbox through a durable consumer (answers survive a restart).
        **bot_options: more ``SwitchboardBot`` options (``services``, ``guild_ready_timeout``).
    """

    def __init__(self, config: BotConfig, bridge_for: BridgeFactory, settings: GatewaySettings,
                 *, durable: bool = True, **bot_options: Any) -> None:
        self.config = config
        self.settings = settings
        self._bridge_for = bridge_for
        self._durable = durable
        bot_options.setdefault("guild_ready_timeout", settings.guild_ready_timeout_s)
        self.bot = SwitchboardBot(config=config, settings=settings, **bot_options)
        self.bridge: Bridge | None = None
        self.connection: asyncio.Task[None] | None = None

    @property
    def origin(self) -> str:
        return origin_for(self.bot.user.id if self.bot.user else None)

    async def start(self) -> None:
        """Log in, start the bridge, connect and wait for READY.

        Raises:
            DiscordConfigError: Discord rejected the token.
            NotRunningError: NATS or Switchboard's streams are not there.
            GatewayError: login or the gateway connection failed, or READY did not come within
                ``settings.ready_timeout_s``.
        """
        name, timeout = self.config.name, self.settings.ready_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await self.bot.login(self.config.token)
        except discord.LoginFailure as exc:
            msg = f"bot {name}: Discord rejected the token (401 on /users/@me)"
            raise DiscordConfigError(msg) from exc
        except (discord.HTTPException, TimeoutError, OSError) as exc:
            msg = f"bot {name}: Discord login failed: {exc or type(exc).__name__}"
            raise GatewayError(msg) from exc
        self.bridge = await self._bridge_for(self.origin)
        await self.bridge.start(self.bot.on_outbound, durable=self._durable)
        self.bot.attach(self.bridge)
        self.connection = asyncio.create_task(self.bot.connect(reconnect=True),
                                              name=f"discord:{self.origin}")
        await self._wait_ready(timeout)
        await self.bot.sync_commands()
        _log.info("bot %s ready as %s (origin %s)", name, self.bot.user, self.origin)

    async def _wait_ready(self, timeout_s: float) -> None:
        assert self.connection is not None
        ready = asyncio.create_task(self.bot.wait_until_ready(), name="discord:ready")
        done, _ = await asyncio.wait({ready, self.connection}, timeout=timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if ready in done:
            return
        ready.cancel()
        if self.connection in done:
            exc = self.connection.exception()
            if isinstance(exc, discord.LoginFailure | discord.PrivilegedIntentsRequired):
                msg = f"bot {self.config.name}: Discord refused the connection: {exc}"
                raise DiscordConfigError(msg) from exc
            msg = f"bot {self.config.name}: the gateway connection ended before READY: {exc!r}"
            raise GatewayError(msg) from exc
        msg = f"bot {self.config.name}: Discord did not send READY within {timeout_s:.0f} s"
        raise GatewayError(msg)

    def apply(self, config: BotConfig) -> None:
        """Use ``config`` from now on (same token: no reconnect)."""
        self.config = config
        self.bot.apply_config(config)

    async def stop(self) -> None:
        """Close the Discord connection and the bridge, each within
        ``settings.shutdown_timeout_s``; never raises."""
        timeout = self.settings.shutdown_timeout_s
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                await self.bot.close()
        if self.connection is not None:
            # Not ``asyncio.timeout`` around ``await``: a task that loses its cancellation
            # (discord.py waits with ``wait_for``; ``core.tasks``) keeps its awaiter waiting.
            await cancel_and_wait(self.connection, timeout_s=timeout,
                                  what=f"bot {self.config.name} connection")
        if self.bridge is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await self.bridge.stop()
        _log.info("bot %s stopped", self.config.name)
