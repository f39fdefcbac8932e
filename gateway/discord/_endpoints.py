"""Point discord.py at another Discord: a local stand-in in tests, a proxy in production."""

from __future__ import annotations

import logging

import discord.gateway
import discord.http
import yarl

from gateway.errors import DiscordConfigError

_log = logging.getLogger(__name__)


def configure_discord_endpoints(api_base: str | None, gateway_url: str | None) -> None:
    """Set discord.py's REST base and gateway URL (process-wide class attributes).

    ``discord.http.Route.BASE`` is read for every REST route; ``DiscordWebSocket.DEFAULT_GATEWAY``
    is where a plain ``Client`` connects, and must be a ``yarl.URL`` (docs/measurements.md, measured
    with discord.py 2.7.1).

    Args:
        api_base: e.g. ``http://127.0.0.1:8080/api/v10`` (``DISCORD_API_BASE``); None keeps it.
        gateway_url: e.g. ``ws://127.0.0.1:8080/gateway`` (``DISCORD_GATEWAY_URL``); None keeps it.

    Raises:
        DiscordConfigError: a URL has no ``http(s)://`` / ``ws(s)://`` scheme or no host.
    """
    if api_base:
        _check(api_base, {"http", "https"}, "DISCORD_API_BASE")
        discord.http.Route.BASE = api_base.rstrip("/")
        _log.info("Discord REST base: %s", api_base)
    if gateway_url:
        _check(gateway_url, {"ws", "wss"}, "DISCORD_GATEWAY_URL")
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
        _log.info("Discord gateway: %s", gateway_url)


def current_endpoints() -> tuple[str, str]:
    """The REST base and gateway URL discord.py uses now (to restore them later)."""
    return discord.http.Route.BASE, str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)


def _check(url: str, schemes: set[str], name: str) -> None:
    parsed = yarl.URL(url)
    if parsed.scheme not in schemes or not parsed.host:
        msg = f"{name} must be a {' or '.join(sorted(schemes))} URL with a host, not {url!r}"
        raise DiscordConfigError(msg)
