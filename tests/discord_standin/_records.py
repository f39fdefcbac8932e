"""What the stand-in records: bot accounts, edits, reactions and everything it received."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._payloads import Payload


@dataclass
class Bot:
    """One bot account: its token, user and application."""

    token: str
    user: Payload
    application: Payload


@dataclass(frozen=True)
class Edit:
    """One ``PATCH`` of a message: its channel, id and the content after the edit."""

    channel_id: str
    message_id: str
    content: str


@dataclass(frozen=True)
class ReactionRecord:
    """A reaction added (``added``) or removed on a message by ``user_id``."""

    channel_id: str
    message_id: str
    emoji: str
    user_id: str
    added: bool


@dataclass
class Recorded:
    """Everything the stand-in saw, in arrival order."""

    messages: dict[str, list[Payload]] = field(default_factory=dict)
    """Channel (or thread, or DM) id → every message in it, people's and bots'."""
    ephemeral: list[Payload] = field(default_factory=list)
    """Ephemeral interaction messages (only the person who ran the command sees them)."""
    edits: list[Edit] = field(default_factory=list)
    reactions: list[ReactionRecord] = field(default_factory=list)
    typing: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    """Attachment id → bytes, for files sent by bots and by people."""
    requests: list[str] = field(default_factory=list)
    """``"METHOD /path"`` of every REST request."""
    unknown_routes: list[str] = field(default_factory=list)
    rate_limited: list[str] = field(default_factory=list)
    """``"METHOD /path"`` of requests answered 429 (``planned_429s``)."""
    planned_429s: list[tuple[str, str, float]] = field(default_factory=list)
    """(method, path fragment, retry_after seconds): the next matching request answers 429."""
    not_found: list[str] = field(default_factory=list)
    """Known routes naming an object that does not exist (answered 404, not a test failure)."""
