"""``switchboard gateway``: one process, one NATS connection, the whole bot pool, shared
services (limits, artifacts, runs and sessions buckets); SIGTERM / SIGINT stop it gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext

from artifacts import open_artifact_store
from core.config import Settings, Topology
from core.errors import BrokerError
from core.errors import NotRunningError as BusNotRunning
from gateway.bridge import Bridge
from gateway.config import DEFAULT_BOT, BotConfig, GatewaySettings
from gateway.discord import ArtifactSink, BotServices, configure_discord_endpoints
from gateway.errors import NotRunningError
from gateway.kv import limits_bucket, messages_bucket
from gateway.limits import Limiter
from gateway.pool._pool import BotPool
from gateway.pool._store import BotStore
from runtime import SessionStore, setup_tracing, stop_on_signals
from runtime.bus import check_running, connect, sessions_bucket

_log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0


async def open_services(js: JetStreamContext, settings: Settings, topology: Topology,
                        gateway: GatewaySettings) -> BotServices:
    """The services every bot shares: limiter, artifact store, sessions and runs buckets.

    Raises:
        StoreError: a bucket could not be opened.
    """
    subjects = topology.subjects
    replicas = topology.stream_replicas
    limiter = Limiter(await limits_bucket(js, subjects, replicas=replicas), gateway)
    sessions = SessionStore(await sessions_bucket(js, subjects, replicas=replicas))
    return BotServices(limiter=limiter, artifacts=await _artifacts(js, settings, topology),
                       js=js, subjects=subjects, sessions=sessions,
                       breakglass_users=frozenset(topology.breakglass.allowed_users),
                       messages=await messages_bucket(js, subjects, replicas=replicas))


async def _artifacts(js: JetStreamContext, settings: Settings, topology: Topology
                     ) -> ArtifactSink:
    store: ArtifactSink = await open_artifact_store(js, settings, topology)
    return store


def default_bot(settings: Settings) -> BotConfig | None:
    """The bot made from ``DISCORD_TOKEN`` alone (None without it)."""
    if not settings.discord_token:
        return None
    return BotConfig(name=DEFAULT_BOT, token=settings.discord_token)


async def run_gateway(settings: Settings, topology: Topology, *, nats_url: str,
                      gateway: GatewaySettings | None = None, stop: asyncio.Event | None = None,
                      **bot_options: Any) -> None:
    """Run the bot pool until ``stop`` is set (default: SIGTERM / SIGINT), then stop every bot
    within the shutdown timeout.

    Raises:
        NotRunningError: NATS or Switchboard's streams are not there.
        DiscordConfigError: a Discord endpoint URL is invalid.
    """
    gateway = gateway or GatewaySettings()
    configure_discord_endpoints(settings.discord_api_base, settings.discord_gateway_url)
    try:
        nc = await connect(nats_url, name="gateway", settings=settings,
                           timeout_s=CONNECT_TIMEOUT_S)
    except BrokerError as exc:
        msg = f"Switchboard is not running: {exc}. Start it with `switchboard up`."
        raise NotRunningError(msg) from exc
    setup_tracing("switchboard-gateway", console=settings.trace_console)
    try:
        await _serve(nc, settings, topology, gateway, stop or stop_on_signals(), bot_options)
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await nc.drain()


async def _serve(nc: Client, settings: Settings, topology: Topology, gateway: GatewaySettings,
                 stop: asyncio.Event, bot_options: dict[str, Any]) -> None:
    js = nc.jetstream(timeout=CONNECT_TIMEOUT_S)
    subjects = topology.subjects
    try:
        await check_running(js, subjects)
    except BusNotRunning as exc:
        raise NotRunningError(str(exc)) from exc
    store = await BotStore.open(js, subjects, replicas=topology.stream_replicas)
    bot_options.setdefault("services", await open_services(js, settings, topology, gateway))

    async def bridge_for(origin: str) -> Bridge:
        return Bridge(nc, subjects, origin)

    pool = BotPool(store, bridge_for, gateway, default=default_bot(settings), **bot_options)
    running = asyncio.create_task(pool.run(), name="pool")
    stopped = asyncio.create_task(stop.wait(), name="pool:stop")
    done, _ = await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
    _log.info("gateway stopping: %d bots", len(pool.runners))
    for task in (running, stopped):
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    if running in done and running.exception() is not None:
        raise running.exception()  # type: ignore[misc]

