"""``switchboard gateway --interactions HOST:PORT``: serve the Interactions endpoint until
SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import web
from nats.js import JetStreamContext

from core.config import Settings, Topology
from gateway.bridge import connect_bridge
from gateway.config import BotConfig, GatewaySettings
from gateway.errors import DiscordConfigError
from gateway.interactions._server import PATH, BotConfigSource, InteractionsEndpoint
from gateway.interactions._webhook import InteractionWebhooks
from gateway.pool import BotStore, open_services
from runtime import stop_on_signals

_log = logging.getLogger(__name__)

ORIGIN = "discord-interactions"
"""The outbox origin of the endpoint (one endpoint process per deployment and prefix)."""
SHUTDOWN_TIMEOUT_S = 10.0


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT`` for every interface) → ``(host, port)``.

    Raises:
        DiscordConfigError: not ``HOST:PORT`` with a port 1-65535.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        msg = f"--interactions expects HOST:PORT, e.g. 0.0.0.0:8080, not {value!r}"
        raise DiscordConfigError(msg)
    return host or "0.0.0.0", int(port)


async def run_interactions(settings: Settings, topology: Topology, *, nats_url: str,
                           listen: str, gateway: GatewaySettings | None = None,
                           stop: asyncio.Event | None = None) -> None:
    """Serve ``POST /interactions`` on ``listen`` until ``stop`` (default: SIGTERM / SIGINT).

    Raises:
        DiscordConfigError: no or an invalid ``DISCORD_PUBLIC_KEY``, or a bad ``listen``.
        NotRunningError: NATS or Switchboard's streams are not there.
    """
    gateway = gateway or GatewaySettings()
    if not gateway.public_key:
        msg = ("DISCORD_PUBLIC_KEY is not set: the Interactions endpoint needs the "
               "application's public key (Developer Portal → General Information)")
        raise DiscordConfigError(msg)
    host, port = parse_listen(listen)
    bridge = await connect_bridge(settings, topology.subjects, ORIGIN, nats_url=nats_url)
    runner: web.AppRunner | None = None
    try:
        services = await open_services(bridge.js, settings, topology, gateway)
        bot_config = await bot_config_source(bridge.js, topology, gateway.interactions_bot)
        async with aiohttp.ClientSession() as http:
            endpoint = InteractionsEndpoint(
                gateway.public_key, bridge, InteractionWebhooks(http, settings.discord_api_base),
                services, edit_interval_s=gateway.edit_interval_s, bot_config=bot_config)
            await bridge.start(endpoint.on_outbound, durable=True)
            runner = web.AppRunner(endpoint.app(), shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                                   handle_signals=False, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            _log.info("Interactions endpoint on http://%s:%d%s", host, port, PATH)
            await (stop or stop_on_signals()).wait()
    finally:
        if runner is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                    await runner.cleanup()
        await bridge.stop()



async def bot_config_source(js: JetStreamContext, topology: Topology, name: str | None
                            ) -> BotConfigSource | None:
    """Reads bot ``name`` of the bots bucket (``SB_GATEWAY_INTERACTIONS_BOT``) for each
    request, so ``switchboard bots set`` applies at once; None without a name.

    Raises:
        BotConfigError: there is no such bot (checked once, at start).
    """
    if not name:
        return None
    store = await BotStore.open(js, topology.subjects, replicas=topology.stream_replicas)
    await store.get(name)

    async def read() -> BotConfig:
        return await store.get(name)

    return read
