"""``switchboard api``: serve the HTTP API until SIGTERM / SIGINT (or ``stop``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import nats.errors
from aiohttp import web

from api._access import ACCESS_LOGGER, AccessLogger, server_logger
from api._analytics import DB_NAME as ANALYTICS_DB
from api._analytics import AnalyticsRoutes
from api._app import MAX_BODY_BYTES, ApiApp
from api._files import ArtifactOpener, RunFiles
from api._health import health
from api._idempotency import Idempotency
from api._keys import KeyRing
from api._limits import Quotas
from api._metrics import EventCounter, Metrics
from api._ops import OpsRoutes
from api._outbox import OutboxConsumer
from api._query import RunQuery
from api._query_routes import QueryRoutes
from api._records import ORIGIN
from api._roles import RoleRoutes
from api._runs import QUEUE_STALE_S, RunService
from api._schema import Health
from api._sse import KEEPALIVE_S, RunEvents
from api._store import RunStore
from api._submit import Submitter
from api._webhook_rules import WebhookConfig, check_url, secret_key
from api._webhooks import Webhooks
from api.errors import ApiConfigError, ApiError, UnavailableError
from artifacts import open_artifact_store
from core.config import Settings, Topology
from gateway.bridge import Bridge, connect_bridge
from gateway.errors import NotRunningError
from runtime import setup_tracing, stop_on_signals
from runtime.bus import check_running

if TYPE_CHECKING:
    from artifacts import ArtifactStore

_log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 10.0
SERVICE_NAME = "switchboard-api"
"""The API process's ``service.name`` in its spans (one tracer provider per process)."""


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``:PORT`` for every interface; ``[::1]:PORT`` for IPv6; port 0 lets the
    OS choose) → ``(host, port)``.

    Raises:
        ApiConfigError: not ``HOST:PORT`` with a port 0-65535.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        msg = f"--listen expects HOST:PORT, e.g. 127.0.0.1:8080, not {value!r}"
        raise ApiConfigError(msg)
    return host.strip("[]") or "0.0.0.0", int(port)


def api_keys(settings: Settings) -> KeyRing:
    """The API keys: ``SB_API_TOKEN`` (the ``default`` key, every scope) and those of
    ``SB_API_KEYS_FILE``.

    Raises:
        ApiConfigError: neither gives a key, or the keys file is not valid.
    """
    token = settings.api_token.get_secret_value() if settings.api_token else ""
    return KeyRing.load(token, settings.api_keys_file)


def webhook_config(settings: Settings) -> WebhookConfig:
    """The webhook settings (``SB_API_WEBHOOK_*``) as one typed object.

    Raises:
        ApiConfigError: a secret that is not valid, or a default URL the API would refuse.
    """
    secret = settings.api_webhook_secret.get_secret_value() if settings.api_webhook_secret \
        else ""
    try:
        config = WebhookConfig(
            key=secret_key(secret.strip()) if secret.strip() else b"",
            allow_hosts=frozenset(h.strip().lower().strip("[]")
                                  for h in settings.api_webhook_allow_hosts.split(",")
                                  if h.strip()),
            attempts=settings.api_webhook_attempts, backoff_s=settings.api_webhook_backoff_s)
        if settings.api_webhook_url:
            check_url(settings.api_webhook_url, config)
    except ApiError as exc:
        msg = f"SB_API_WEBHOOK_*: {exc}"
        raise ApiConfigError(msg) from exc
    return replace(config, default_url=settings.api_webhook_url or "")


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """Tunables of one API process: largest body in bytes, seconds between SSE keep-alives,
    seconds after which an unanswered run stops holding its session."""

    max_body_bytes: int = MAX_BODY_BYTES
    keepalive_s: float = KEEPALIVE_S
    stale_s: float = QUEUE_STALE_S


async def run_api(settings: Settings, topology: Topology, *, nats_url: str, listen: str,
                  stop: asyncio.Event | None = None, options: ApiOptions | None = None,
                  on_ready: asyncio.Future[tuple[str, int]] | None = None) -> None:
    """Serve the HTTP API on ``listen`` until ``stop`` (default: SIGTERM / SIGINT).

    ``on_ready`` gets the bound ``(host, port)`` once requests are served (port 0 picks one).

    Raises:
        ApiConfigError: no key, a bad keys file, or a bad ``listen``.
        UnavailableError: NATS cannot be reached or Switchboard's streams are missing.
        StoreError: the API's buckets cannot be opened.
    """
    keys = api_keys(settings)
    host, port = parse_listen(listen)
    options = options or ApiOptions()
    setup_tracing(SERVICE_NAME, console=settings.trace_console)  # before the bridge's
    hooks = webhook_config(settings)
    try:
        bridge = await connect_bridge(settings, topology.subjects, ORIGIN, nats_url=nats_url)
    except NotRunningError as exc:
        raise UnavailableError(str(exc)) from exc
    runner: web.AppRunner | None = None
    consumer: OutboxConsumer | None = None
    files: RunFiles | None = None
    counter: EventCounter | None = None
    webhooks: Webhooks | None = None
    try:
        await _check_running(bridge)
        store = await RunStore.open(bridge.js, topology.subjects,
                                    replicas=topology.stream_replicas)
        runs = RunService(store, bridge, stale_s=options.stale_s,
                          default_webhook=hooks.default_url)
        webhooks = Webhooks(store, bridge.nc, topology.subjects, hooks)
        consumer = OutboxConsumer(bridge.js, topology.subjects, ORIGIN, runs.on_outbound)
        await consumer.start()
        files = RunFiles(store, _artifact_opener(bridge, settings, topology))
        roles, outbox_durable = list(topology.roles), consumer.durable

        async def _health() -> Health:
            return await health(bridge.nc, bridge.js, topology.subjects, roles, outbox_durable)

        metrics = Metrics()
        counter = await _count_events(bridge, metrics)
        ops = OpsRoutes(bridge.nc, bridge.js, topology.subjects, roles, metrics)
        app = ApiApp(keys, runs, RunEvents(bridge.js, topology.subjects, runs,
                                           keepalive_s=options.keepalive_s),
                     files, _health, max_body_bytes=options.max_body_bytes, ops=ops,
                     submitter=Submitter(runs, Idempotency(store.bucket), hooks,
                                         Quotas(store.bucket)),
                     queries=QueryRoutes(RunQuery(runs)))
        web_app = app.app()
        _add_console_api(web_app.router, RoleRoutes(ops.consumers), AnalyticsRoutes(
            bridge.js, topology.subjects, Path(settings.data_dir) / ANALYTICS_DB))
        runner = web.AppRunner(web_app, shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                               handle_signals=False, access_log_class=AccessLogger,
                               access_log=logging.getLogger(ACCESS_LOGGER),
                               logger=server_logger())
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = _bound(site, host, port)
        _log.info("HTTP API on http://%s:%d (origin %s; keys: %s)", bound[0], bound[1],
                  ORIGIN, ", ".join(keys.names))
        if on_ready is not None and not on_ready.done():
            on_ready.set_result(bound)
        await (stop or stop_on_signals()).wait()
    finally:
        if runner is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                    await runner.cleanup()
        if counter is not None:
            await counter.stop()
        if consumer is not None:
            await consumer.stop()
        if webhooks is not None:
            await webhooks.stop()
        if files is not None:
            with contextlib.suppress(Exception):
                await files.close()
        await bridge.stop()
        _log.info("HTTP API stopped")


def _add_console_api(router: web.UrlDispatcher, roles: RoleRoutes,
                     analytics: AnalyticsRoutes) -> None:
    """The JSON routes the browser console reads besides the run routes (bearer token)."""
    router.add_get("/v1/roles", roles.roles)
    router.add_get("/v1/analytics/report", analytics.report)


async def _check_running(bridge: Bridge) -> None:
    try:
        await check_running(bridge.js, bridge.subjects)
    except NotRunningError as exc:
        msg = f"{exc}. Start it with `switchboard up`."
        raise UnavailableError(msg) from exc


async def _count_events(bridge: Bridge, metrics: Metrics) -> EventCounter | None:
    """Follow the execution events into ``metrics``; None (logged) when JetStream refuses:
    ``/metrics`` then has the consumers and the HTTP requests only."""
    counter = EventCounter(bridge.js, bridge.subjects, metrics)
    try:
        await counter.start()
    except nats.errors.Error as exc:
        _log.warning("metrics: cannot follow the execution events (%s): /metrics counts no "
                     "model calls, tokens or answers", exc)
        return None
    return counter


def _artifact_opener(bridge: Bridge, settings: Settings, topology: Topology) -> ArtifactOpener:
    """Opens the deployment's artifact store (S3's client is imported only when used)."""

    async def _open() -> ArtifactStore:
        return await open_artifact_store(bridge.js, settings, topology)

    return _open


def _bound(site: web.TCPSite, host: str, port: int) -> tuple[str, int]:
    """The address the site listens on (the port the OS chose for port 0)."""
    server = site._server  # aiohttp keeps the asyncio server here
    sockets = getattr(server, "sockets", None) or []
    for sock in sockets:
        address = sock.getsockname()
        return str(address[0]), int(address[1])
    return host, port
