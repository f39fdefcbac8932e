"""Errors of the gateway (Discord bot pool, Interactions endpoint, terminal chat).

Hierarchy::

    GatewayError
    ├── DiscordConfigError     the Discord settings are missing or invalid (token, endpoints)
    ├── BotConfigError         a bot configuration (KV value, YAML file, CLI option) is invalid
    ├── StoreError             a gateway KV bucket (bots, limits, runs) did not answer
    ├── AttachmentError        an attachment could not be taken into the workspace
    │   └── AttachmentTooLargeError   it is larger than the configured limit
    ├── CommandError           a slash command cannot be done (the message is for the person)
    └── SignatureError         an Interactions request's Ed25519 signature is bad or stale

``NotRunningError`` (Switchboard's streams are absent: the system is not up) is
``core.errors.NotRunningError``, re-exported here: one class wherever it is raised.
"""

from __future__ import annotations

from core.errors import NotRunningError

__all__ = [
    "AttachmentError",
    "AttachmentTooLargeError",
    "BotConfigError",
    "CommandError",
    "DiscordConfigError",
    "GatewayError",
    "NotRunningError",
    "SignatureError",
    "StoreError",
]


class GatewayError(Exception):
    """Root of every error raised by the ``gateway`` package."""


class DiscordConfigError(GatewayError):
    """Discord settings (``DISCORD_TOKEN``, ``DISCORD_API_BASE``, ...) are missing or invalid."""


class BotConfigError(GatewayError):
    """A bot configuration is invalid or names a bot that does not exist."""


class StoreError(GatewayError):
    """A JetStream KV bucket of the gateway failed or did not answer in time."""


class AttachmentError(GatewayError):
    """An attachment could not be downloaded or stored."""


class AttachmentTooLargeError(AttachmentError):
    """An attachment is larger than ``GatewaySettings.attachment_max_bytes``."""


class CommandError(GatewayError):
    """A slash command cannot be done; the message is for the person (answered
    ephemerally)."""


class SignatureError(GatewayError):
    """An Interactions request is unsigned, forged, stale or malformed (answered 401)."""
