"""One Discord bot outside a pool: log in, connect the bridge, connect the gateway (tests and
tools; ``switchboard gateway`` runs a pool, ``gateway.pool``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from core.config import Settings
from gateway.bridge import Bridge, connect_bridge
from gateway.config import DEFAULT_BOT, BotConfig, GatewaySettings
from gateway.discord._bot import SwitchboardBot
from gateway.discord._endpoints import configure_discord_endpoints
from gateway.discord._runner import BotRunner
from gateway.errors import DiscordConfigError
from protocol import Subjects
from runtime.bus import resolve_nats_url

_log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0


@contextlib.asynccontextmanager
async def discord_gateway(
    settings: Settings,
    subjects: Subjects,
    *,
    nats_url: str | None = None,
    durable: bool = True,
    ready_timeout_s: float = READY_TIMEOUT_S,
    config: BotConfig | None = None,
    gateway: GatewaySettings | None = None,
    **bot_options: Any,
) -> AsyncIterator[SwitchboardBot]:
    """A logged-in, connected, ready ``SwitchboardBot`` wired to the actors; closed on exit.

    Args:
        settings: ``DISCORD_TOKEN`` (unless ``config`` has the token), ``DISCORD_API_BASE``,
            ``DISCORD_GATEWAY_URL``, NATS settings.
        subjects: subject names of the deployment.
        nats_url: overrides the URL from ``settings``.
        durable: read the outbox through a durable consumer (answers survive a restart).
        ready_timeout_s: how long to wait for login, READY and the guilds.
        config: the bot's configuration (default: the ``DISCORD_TOKEN`` bot).
        gateway: gateway settings (default: from ``SB_GATEWAY_*``).
        **bot_options: passed to ``SwitchboardBot`` (``services``, ``dms``,
            ``edit_interval_s``, ``guild_ready_timeout``, ...).

    Raises:
        DiscordConfigError: no token, a bad endpoint URL, or Discord rejected the token.
        NotRunningError: NATS or Switchboard's streams are not there.
        GatewayError: the gateway connection failed or READY did not come in time.
    """
    if config is None:
        if not settings.discord_token:
            msg = "DISCORD_TOKEN is not set: the Discord gateway needs a bot token"
            raise DiscordConfigError(msg)
        config = BotConfig(name=DEFAULT_BOT, token=settings.discord_token)
    configure_discord_endpoints(settings.discord_api_base, settings.discord_gateway_url)
    gateway = (gateway or GatewaySettings()).model_copy(
        update={"ready_timeout_s": ready_timeout_s})
    url = resolve_nats_url(settings, nats_url)

    async def bridge_for(origin: str) -> Bridge:
        return await connect_bridge(settings, subjects, origin, nats_url=url)

    runner = BotRunner(config, bridge_for, gateway, durable=durable, **bot_options)
    try:
        await runner.start()
        yield runner.bot
    finally:
        await runner.stop()
