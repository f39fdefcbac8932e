"""Typed configuration of the gateway: one ``BotConfig`` per bot of the pool (stored in the bots
KV bucket) and the process-wide ``GatewaySettings`` (defaults, overridable by ``SB_GATEWAY_*``
environment variables). Parsed once; a change replaces the object, never mutates it."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import msgspec
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.errors import BotConfigError
from protocol import AGENT_ROLES, ChatMessage, check_token

_log = logging.getLogger(__name__)

MAX_BOTS = 50
"""Bots one gateway process runs at most by default (docs/design.md#gateways: "up to 50,
configurable")."""
DEFAULT_BOT = "default"
"""The name of the bot made from ``DISCORD_TOKEN`` alone."""


class BotConfig(BaseModel):
    """One bot of the pool: the value stored under ``bot.<name>`` in the bots bucket.

    Attributes:
        name: the bot's key (1-128 of ``A-Z a-z 0-9 _ -``).
        token: the Discord bot token (never logged; ``bots list`` masks it).
        profile: the default agent role for this bot's requests (one of ``AGENT_ROLES``;
            empty lets the classifier choose).
        dms: answer direct messages.
        guilds: guild ids this bot answers in; empty means every guild.
        channels: channel (or thread parent) ids this bot answers in; empty means every channel.
        models: model overrides, tier (``"1"``..``"4"``) → litellm model name.
        command_guilds: register slash commands in these guilds (instant) instead of globally
            (up to an hour to propagate:
            https://discord.com/developers/docs/interactions/application-commands).
        listen_channels: channel ids where the bot hears every message, mentioned or not
            (threads in them excepted); such a message goes out with ``addressed=False`` and
            the router decides whether to answer. A listening channel counts as allowed by
            ``channels``.
        max_answer_chars: the most characters of an answer (Unicode code points, as Discord
            counts them); 0: no cap. The actors cut longer answers
            (docs/design.md#safety-and-limits).
        max_tokens: the most completion tokens of one model call for this bot's requests
            (the model's tokens); 0: the model's own setting (docs/design.md#safety-and-limits).
        admins: Discord user ids who may control anyone's run with reactions (🛑, 👍 / 👎
            on answers and commits); others control only their own runs, unless they have
            Manage Messages in the channel.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    token: str = Field(min_length=1, repr=False)
    profile: str = ""
    dms: bool = True
    guilds: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    models: dict[str, str] = {}
    command_guilds: tuple[str, ...] = ()
    listen_channels: tuple[str, ...] = ()
    max_answer_chars: int = Field(default=0, ge=0)
    max_tokens: int = Field(default=0, ge=0)
    admins: tuple[str, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_token(value, "bot name")

    @field_validator("profile")
    @classmethod
    def _profile(cls, value: str) -> str:
        if value and value not in AGENT_ROLES:
            msg = f"unknown agent profile {value!r}; known: {', '.join(AGENT_ROLES)}"
            raise ValueError(msg)
        return value

    @field_validator("models")
    @classmethod
    def _models(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k in value if k not in {"1", "2", "3", "4"})
        if bad:
            msg = f"model overrides are keyed by tier 1-4, not {bad}"
            raise ValueError(msg)
        return value

    @field_validator("listen_channels")
    @classmethod
    def _listen_channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not (v.isascii() and v.isdigit())]
        if bad:
            msg = f"listening channels are channel ids (digits), not {bad}"
            raise ValueError(msg)
        return value

    @field_validator("admins")
    @classmethod
    def _admins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not (v.isascii() and v.isdigit())]
        if bad:
            msg = f"admins are Discord user ids (digits), not {bad}"
            raise ValueError(msg)
        return value

    def allows(self, guild_id: int | None, channel_ids: tuple[int | None, ...]) -> bool:
        """Whether the allowlists let this bot answer in ``guild_id`` / any of ``channel_ids``
        (a thread passes its own id and its parent's); a listening channel is allowed."""
        if guild_id is not None and self.guilds and str(guild_id) not in self.guilds:
            return False
        if guild_id is not None and self.channels:
            allowed = (*self.channels, *self.listen_channels)
            return any(c is not None and str(c) in allowed for c in channel_ids)
        return True

    def listens_in(self, channel_id: int | None) -> bool:
        """Whether ``channel_id`` is one of the bot's listening channels."""
        return channel_id is not None and str(channel_id) in self.listen_channels

    def stamp(self, request: ChatMessage) -> ChatMessage:
        """``request`` with this bot's name (what a rule's ``bot:`` names), agent profile,
        model overrides and answer limits: what every ChatMessage the bot sends carries (the
        actors apply them)."""
        return msgspec.structs.replace(
            request, bot_name=self.name, profile=self.profile, models=dict(self.models),
            max_answer_chars=self.max_answer_chars, max_tokens=self.max_tokens)

    def fingerprint(self) -> str:
        """12 hex characters that change with any field (the token included, never shown):
        the status key records the fingerprint a running bot applied."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]

    def public(self) -> dict[str, Any]:
        """The configuration without the token, for display."""
        data = self.model_dump(exclude={"token"})
        data["token"] = mask_token(self.token)
        return data


def mask_token(token: str) -> str:
    """``abcd…wxyz``: enough to tell tokens apart, never enough to use one."""
    return f"{token[:4]}…{token[-4:]}" if len(token) > 12 else "…"


class GatewaySettings(BaseSettings):
    """Gateway behaviour, defaults for every bot; ``SB_GATEWAY_<FIELD>`` overrides each field
    (``SB_GATEWAY_DEBOUNCE_S=0.5``).

    Durations are seconds, sizes bytes, token counts model tokens (prompt + completion).
    """

    model_config = SettingsConfigDict(env_prefix="SB_GATEWAY_", frozen=True, extra="ignore")

    max_bots: int = Field(default=MAX_BOTS, ge=1, le=1000)
    debounce_s: float = Field(default=1.5, ge=0)
    """Messages from one person in one conversation closer than this are one request."""
    edit_interval_s: float = Field(default=1.0, gt=0)
    """At most one status edit per request per this many seconds."""
    queue_stale_s: float = Field(default=900.0, gt=0)
    """A request with no answer for this long no longer holds its conversation's queue."""
    max_in_flight: int = Field(default=200, ge=0)
    """Requests one bot has sent and not seen answered; more wait in a line and each person
    is told their position (0: unbounded)."""
    max_waiting: int = Field(default=1000, ge=0)
    """Requests one bot holds waiting (the line and every conversation's queue); more are
    refused with "too busy, try again" (each waiting request holds its message, a few KiB)."""
    attachment_max_bytes: int = Field(default=8 * 1024 * 1024, ge=0)
    """Largest attachment stored into a workspace (8 MiB)."""
    user_rate: int = Field(default=10, ge=0)
    """Requests one person may make per ``rate_window_s`` (0: unlimited)."""
    guild_rate: int = Field(default=60, ge=0)
    """Requests one guild may make per ``rate_window_s`` (0: unlimited)."""
    rate_window_s: float = Field(default=60.0, gt=0)
    daily_tokens: int = Field(default=200_000, ge=0)
    """Model tokens one person may use per UTC day (0: unlimited)."""
    shutdown_timeout_s: float = Field(default=10.0, gt=0)
    """How long each bot gets to close when it stops."""
    ready_timeout_s: float = Field(default=60.0, gt=0)
    """How long a bot may take to log in and receive READY."""
    guild_ready_timeout_s: float = Field(default=2.0, ge=0)
    """discord.py's wait for GUILD_CREATE after READY."""
    public_key: str | None = Field(default=None, validation_alias="DISCORD_PUBLIC_KEY")
    """The application's Ed25519 public key, hex, for the Interactions endpoint."""
    interactions_bot: str | None = None
    """The bot of the bots bucket whose profile, model overrides and answer limits the
    Interactions endpoint applies (``SB_GATEWAY_INTERACTIONS_BOT``; unset: none)."""


def load_bots_file(path: Path) -> list[BotConfig]:
    """Read bot configurations from YAML: a list of bots, or ``{bots: [...]}``, or
    ``{bots: {name: {...}}}``.

    Raises:
        BotConfigError: the file cannot be read, is not YAML, or a bot does not validate.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}"
        raise BotConfigError(msg) from exc
    except yaml.YAMLError as exc:
        msg = f"{path} is not valid YAML: {exc}"
        raise BotConfigError(msg) from exc
    if isinstance(raw, dict):
        raw = raw.get("bots", [])
    if isinstance(raw, dict):
        raw = [{"name": name, **(spec or {})} for name, spec in raw.items()]
    if not isinstance(raw, list):
        msg = f"{path}: expected a list of bots or a 'bots:' key"
        raise BotConfigError(msg)
    return [parse_bot(item, where=str(path)) for item in raw]


def parse_bot(data: Any, *, where: str = "bot") -> BotConfig:
    """Validate one bot configuration.

    Raises:
        BotConfigError: it does not validate (the message names the field, never the token).
    """
    try:
        return BotConfig.model_validate(data)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        msg = f"{where}: invalid bot configuration: {fields}"
        raise BotConfigError(msg) from None
