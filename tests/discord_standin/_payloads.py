"""Builders of Discord API v10 objects as the stand-in sends them (plain JSON dicts).

Shapes follow https://discord.com/developers/docs/resources/user (User),
.../resources/guild (Guild, Guild Member, Role), .../resources/channel (Channel, Thread
Metadata), .../resources/message (Message, Attachment), trimmed to what discord.py 2.7.1 reads.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000
"""Snowflake epoch (https://discord.com/developers/docs/reference#snowflakes)."""

Payload = dict[str, Any]

TEXT_CHANNEL = 0
DM_CHANNEL = 1
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12
DEFAULT_MESSAGE = 0
REPLY_MESSAGE = 19
ALL_PERMISSIONS = str((1 << 50) - 1)
MANAGE_MESSAGES = 1 << 13
MEMBER_PERMISSIONS = (1 << 6) | (1 << 10) | (1 << 11) | (1 << 16) | (1 << 38)
"""Add Reactions, View Channel, Send Messages, Read Message History, Send Messages in
Threads (https://discord.com/developers/docs/topics/permissions): an ordinary member's."""


class Snowflakes:
    """Strictly increasing snowflake ids, as strings."""

    def __init__(self) -> None:
        self._last = 0
        self._counter = itertools.count()

    def next(self) -> str:
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(self._last + 1, now + next(self._counter) % 4096)
        return str(self._last)


def timestamp() -> str:
    """ISO 8601 now, as Discord writes timestamps."""
    return datetime.now(UTC).isoformat()


def user(user_id: str, name: str, *, bot: bool = False) -> Payload:
    return {
        "id": user_id, "username": name, "global_name": name, "discriminator": "0",
        "avatar": None, "bot": bot, "public_flags": 0, "flags": 0,
    }


def member(u: Payload, roles: list[str] | None = None) -> Payload:
    return {
        "user": u, "roles": roles or [], "joined_at": timestamp(), "deaf": False, "mute": False,
        "flags": 0, "nick": None,
    }


def role(role_id: str, name: str, position: int = 0) -> Payload:
    return {
        "id": role_id, "name": name, "permissions": ALL_PERMISSIONS, "position": position,
        "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0,
    }


def text_channel(channel_id: str, guild_id: str, name: str, position: int) -> Payload:
    return {
        "id": channel_id, "type": TEXT_CHANNEL, "guild_id": guild_id, "name": name,
        "position": position, "topic": None, "nsfw": False, "permission_overwrites": [],
        "rate_limit_per_user": 0, "parent_id": None, "last_message_id": None,
        "default_auto_archive_duration": 1440,
    }


def dm_channel(channel_id: str, recipient: Payload) -> Payload:
    return {"id": channel_id, "type": DM_CHANNEL, "recipients": [recipient],
            "last_message_id": None}


def thread(thread_id: str, parent: Payload, owner_id: str, name: str, *,
           kind: int = PUBLIC_THREAD, auto_archive_duration: int = 1440) -> Payload:
    now = timestamp()
    return {
        "id": thread_id, "type": kind, "guild_id": parent["guild_id"], "parent_id": parent["id"],
        "owner_id": owner_id, "name": name, "last_message_id": None, "rate_limit_per_user": 0,
        "message_count": 0, "member_count": 1, "total_message_sent": 0, "flags": 0,
        "thread_metadata": {
            "archived": False, "auto_archive_duration": auto_archive_duration,
            "archive_timestamp": now, "locked": False, "create_timestamp": now,
        },
    }


def guild(guild_id: str, name: str, owner_id: str, *, channels: list[Payload],
          threads: list[Payload], members: list[Payload], roles: list[Payload]) -> Payload:
    return {
        "id": guild_id, "name": name, "icon": None, "owner_id": owner_id, "unavailable": False,
        "member_count": len(members), "large": False, "joined_at": timestamp(),
        "roles": roles, "emojis": [], "stickers": [], "features": [], "channels": channels,
        "threads": threads, "members": members, "voice_states": [], "presences": [],
        "stage_instances": [], "guild_scheduled_events": [], "mfa_level": 0,
        "verification_level": 0, "default_message_notifications": 0,
        "explicit_content_filter": 0, "afk_timeout": 300, "system_channel_flags": 0,
        "premium_tier": 0, "preferred_locale": "en-US", "nsfw_level": 0,
    }


def application(app_id: str, name: str, owner: Payload) -> Payload:
    return {
        "id": app_id, "name": name, "icon": None, "description": "", "rpc_origins": [],
        "bot_public": True, "bot_require_code_grant": False, "owner": owner, "summary": "",
        "verify_key": "0" * 64, "team": None, "flags": 0,
    }


def attachment(attachment_id: str, filename: str, data: bytes, url: str,
               content_type: str | None = None) -> Payload:
    out: Payload = {"id": attachment_id, "filename": filename, "size": len(data), "url": url,
                    "proxy_url": url}
    if content_type:
        out["content_type"] = content_type
    return out


def message(message_id: str, channel: Payload, author: Payload, content: str, *,
            mentions: list[Payload] | None = None, attachments: list[Payload] | None = None,
            reference: Payload | None = None) -> Payload:
    out: Payload = {
        "id": message_id, "channel_id": channel["id"], "author": author, "content": content,
        "timestamp": timestamp(), "edited_timestamp": None, "tts": False,
        "mention_everyone": False, "mentions": mentions or [], "mention_roles": [],
        "attachments": attachments or [], "embeds": [], "pinned": False,
        "type": DEFAULT_MESSAGE, "flags": 0, "components": [],
    }
    if "guild_id" in channel:
        out["guild_id"] = channel["guild_id"]
    if reference is not None:
        out["type"] = REPLY_MESSAGE
        out["message_reference"] = {
            "message_id": reference["id"], "channel_id": reference["channel_id"],
            **({"guild_id": reference["guild_id"]} if "guild_id" in reference else {}),
        }
        out["referenced_message"] = {k: v for k, v in reference.items()
                                     if k != "referenced_message"}
    return out
