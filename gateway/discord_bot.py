"""Switchboard's Discord gateway entry points; the implementation lives in ``gateway.discord``
(one bot) and ``gateway.pool`` (the bot pool)."""

from __future__ import annotations

from core.config import Settings, Topology
from gateway.discord import (
    SwitchboardBot,
    configure_discord_endpoints,
    discord_gateway,
)
from gateway.pool import run_gateway
from runtime.bus import resolve_nats_url


async def run_discord(settings: Settings, topology: Topology, *,
                      nats_url: str | None = None) -> None:
    """Run the bot pool (``DISCORD_TOKEN`` and the bots bucket) until SIGTERM / SIGINT.

    Entry of ``switchboard gateway`` / ``switchboard up`` when ``DISCORD_TOKEN`` is set.

    Raises:
        NotRunningError, DiscordConfigError: as ``gateway.pool.run_gateway``.
    """
    await run_gateway(settings, topology, nats_url=resolve_nats_url(settings, nats_url))


__all__ = ["SwitchboardBot", "configure_discord_endpoints", "discord_gateway", "run_discord"]
