"""Switchboard's Discord bot (SPEC.md §7); the implementation lives in ``gateway.discord``."""

from gateway.discord import (
    SwitchboardBot,
    configure_discord_endpoints,
    discord_gateway,
    run_discord,
)

__all__ = ["SwitchboardBot", "configure_discord_endpoints", "discord_gateway", "run_discord"]
