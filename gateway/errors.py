"""Errors of the gateway (Discord bot, terminal chat, HTTP endpoints).

Hierarchy::

    GatewayError
    ├── NotRunningError        Switchboard's streams are absent: the system is not up
    └── DiscordConfigError     the Discord settings are missing or invalid (token, endpoints)
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error raised by the ``gateway`` package."""


class NotRunningError(GatewayError):
    """Switchboard is not running: the NATS server answers but its streams are missing."""

    def __init__(self, msg: str = "Switchboard is not running") -> None:
        super().__init__(msg)


class DiscordConfigError(GatewayError):
    """Discord settings (``DISCORD_TOKEN``, ``DISCORD_API_BASE``, ...) are missing or invalid."""
