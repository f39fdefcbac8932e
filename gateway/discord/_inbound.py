"""Which Discord messages Switchboard answers, and their translation into ``ChatMessage``.

docs/design.md#gateways: the bot answers @mentions, replies to its own messages, DMs (configurable)
and
every message in a thread it opened; it also hears every message of its listening channels;
never its own or other bots' messages. Of these, a message in its thread or a listening channel
that neither mentions nor replies to the bot is not *addressed* to it: the router then decides
whether to answer (people also talk to each other there).
"""

from __future__ import annotations

import re
from collections.abc import Collection

import discord

from protocol import Attachment, ChatMessage, SessionId

THREAD_NAME_LIMIT = 100
"""Characters in a thread name (https://discord.com/developers/docs/resources/channel, "Start
Thread from Message": name, 1-100 characters)."""


def should_answer(message: discord.Message, me: discord.ClientUser, *, dms: bool,
                  listen_channels: Collection[str] = ()) -> bool:
    """Whether ``message`` goes to the actors for the bot ``me``.

    Args:
        message: a received message.
        me: the bot's own user.
        dms: whether direct messages are answered.
        listen_channels: ids of channels where every message is heard (not their threads).
    """
    if message.author.bot or message.author.id == me.id:
        return False
    if message.guild is None:
        return dms and isinstance(message.channel, discord.DMChannel | discord.PartialMessageable)
    channel = message.channel
    if isinstance(channel, discord.Thread) and channel.owner_id == me.id:
        return True
    if str(channel.id) in listen_channels and not isinstance(channel, discord.Thread):
        return True
    return is_addressed(message, me)


def is_addressed(message: discord.Message, me: discord.ClientUser) -> bool:
    """Whether the person spoke to the bot ``me``: a DM, an @mention of the bot or a reply to
    one of its messages. A message that ``should_answer`` lets through for another reason (in
    the bot's thread, in a listening channel) may be meant for other people."""
    if message.guild is None:
        return True
    if any(user.id == me.id for user in message.mentions):
        return True
    return _replies_to(message, me)


def _replies_to(message: discord.Message, me: discord.ClientUser) -> bool:
    reference = message.reference
    if reference is None:
        return False
    resolved = reference.resolved or reference.cached_message
    return isinstance(resolved, discord.Message) and resolved.author.id == me.id


def strip_mentions(text: str, me_id: int) -> str:
    """``text`` without ``<@me_id>`` / ``<@!me_id>`` mentions, whitespace collapsed at the ends.

    Mention syntax: https://discord.com/developers/docs/reference#message-formatting.
    """
    return re.sub(rf"<@!?{me_id}>", "", text).strip()


def session_of(channel: discord.abc.Messageable | discord.PartialMessageable) -> str:
    """The session id of a thread or DM: ``discord-<its id>``."""
    return str(SessionId("discord", str(getattr(channel, "id", 0))))


def session_of_message(message: discord.Message) -> str:
    """The session a message belongs to: its thread, its DM, or — for a message in a guild
    channel — the thread the bot would open from it.

    A thread started from a message has the message's id ("Start Thread from Message",
    https://discord.com/developers/docs/resources/channel#start-thread-from-message), so a
    request and everything said later in its thread share one session: one workspace, one
    run lock, one memory, and the answer to a clarifying question finds the paused run.
    """
    channel = message.channel
    if isinstance(channel, discord.Thread | discord.DMChannel | discord.GroupChannel):
        return session_of(channel)
    return str(SessionId("discord", str(message.id)))


def thread_name(text: str) -> str:
    """A thread name from a request's text: its first line, at most 100 characters."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    name = first or "Switchboard"
    if len(name) > THREAD_NAME_LIMIT:
        name = name[: THREAD_NAME_LIMIT - 1].rstrip() + "…"
    return name


def to_chat_message(message: discord.Message, me_id: int, origin: str, *,
                    addressed: bool = True) -> ChatMessage:
    """The protocol message for a Discord message (mention of the bot stripped; in a thread,
    ``parent_channel_id`` is the channel it hangs off); the bot adds its name, profile, models
    and limits (``BotConfig.stamp``).

    ``bot`` stays empty: per-user memory is keyed by ``origin``, ``discord-<bot user id>``,
    which is one per bot and the same across restarts (``gateway.discord.origin_for``).
    """
    return ChatMessage(
        addressed=addressed,
        message_id=str(message.id),
        session=session_of_message(message),
        origin=origin,
        user_id=str(message.author.id),
        user_name=message.author.display_name,
        text=strip_mentions(message.content, me_id),
        channel_id=str(message.channel.id),
        parent_channel_id=str(getattr(message.channel, "parent_id", None) or ""),
        guild_id=str(message.guild.id) if message.guild else "",
        attachments=tuple(
            Attachment(name=a.filename, url=a.url, size=a.size, content_type=a.content_type or "")
            for a in message.attachments
        ),
        sent_at=message.created_at.timestamp(),
    )
