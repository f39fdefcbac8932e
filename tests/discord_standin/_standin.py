"""A local stand-in of Discord (gateway v10 + REST v10) on aiohttp, for the genuine discord.py.

It binds 127.0.0.1 on a free port, holds one guild (text channels ``general`` and ``random``,
an ``@everyone`` role, members), a human ``alice``, another bot ``otherbot`` and one bot
account per token. Tests inject people's messages, reactions, slash commands and button
clicks, then await what the bot did through REST, all recorded here. Routes it does not know
answer 404 and land in ``unknown_routes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

from aiohttp import web

from . import _payloads as p
from ._gateway import Gateway
from ._interactions import HttpEndpoint, Interactions
from ._payloads import Payload
from ._records import Bot, ReactionRecord, Recorded

_log = logging.getLogger(__name__)

T = TypeVar("T")
SHUTDOWN_TIMEOUT_S = 5.0


class DiscordStandIn(Recorded):
    """The stand-in server; use as ``async with DiscordStandIn() as standin:``.

    Attributes:
        api_base: REST base for ``discord.http.Route.BASE`` (``http://127.0.0.1:PORT/api/v10``).
        gateway_url: for ``DiscordWebSocket.DEFAULT_GATEWAY`` (``ws://127.0.0.1:PORT/gateway``).
        bot: the first bot account (``token``, ``user``); ``add_bot`` adds more.
        guild_id, channel_id: the guild and its ``general`` text channel.
        alice, other_bot: a person and another bot, as user payloads.
    """

    def __init__(self, *, bot_name: str = "Switchboard") -> None:
        super().__init__()
        self.ids = p.Snowflakes()
        self.bots: dict[str, Bot] = {}
        self.channels: dict[str, Payload] = {}
        self.threads: dict[str, Payload] = {}
        self.by_id: dict[str, Payload] = {}
        self._message_reactions: dict[str, set[tuple[str, str]]] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.guild_id = self.ids.next()
        self.everyone = p.role(self.guild_id, "@everyone")
        self.roles: list[Payload] = [self.everyone]
        self.member_roles: dict[str, list[str]] = {}
        self.users: dict[str, Payload] = {}
        self.alice = self.add_user("alice")
        self.other_bot = self.add_user("otherbot", bot=True)
        self.channel_id = self._add_text_channel("general")["id"]
        self.second_channel_id = self._add_text_channel("random")["id"]
        self.bot = self.add_bot(bot_name)
        self.interactions = Interactions(self)

    # ---------------------------------------------------------------- world

    def add_user(self, name: str, *, bot: bool = False, roles: list[Payload] | None = None
                 ) -> Payload:
        """Add a guild member (with ``roles`` besides ``@everyone``); returns the user
        payload. Add people before the bot connects for them to be in its member cache."""
        user = p.user(self.ids.next(), name, bot=bot)
        self.users[user["id"]] = user
        self.member_roles[user["id"]] = [r["id"] for r in roles or []]
        return user

    def add_role(self, name: str, permissions: int) -> Payload:
        """Add a guild role with the ``permissions`` bit set (before the bot connects)."""
        role = p.role(self.ids.next(), name, position=len(self.roles))
        role["permissions"] = str(permissions)
        self.roles.append(role)
        return role

    def set_permissions(self, role: Payload, permissions: int) -> None:
        """Give ``role`` (``everyone`` included) exactly ``permissions`` (before the bot
        connects). ``@everyone`` has every permission unless a test says otherwise; the
        guild's owner (``alice``) has them all regardless."""
        role["permissions"] = str(permissions)

    def permissions_of(self, user_id: str) -> int:
        """The guild permissions of ``user_id``: every bit for the owner (``alice``), else
        ``@everyone``'s and its roles' together (https://discord.com/developers/docs/topics/
        permissions, "Permission Hierarchy"; channel overwrites are not modelled)."""
        if user_id == self.alice["id"]:
            return int(p.ALL_PERMISSIONS)
        mine = set(self.member_roles.get(user_id, []))
        bits = 0
        for role in self.roles:
            if role is self.everyone or role["id"] in mine:
                bits |= int(role["permissions"])
        return bits

    def member(self, user_id: str) -> Payload:
        """The guild member payload of ``user_id``, with its roles."""
        return p.member(self.users[user_id], self.member_roles.get(user_id, []))

    def add_bot(self, name: str) -> Bot:
        """Add a bot account (a guild member with its own token and application)."""
        user = self.add_user(name, bot=True)
        bot = Bot(f"standin-token-{user['id']}", user, p.application(self.ids.next(), name,
                                                                      self.alice))
        self.bots[bot.token] = bot
        return bot

    def rotate_token(self, bot: Bot) -> str:
        """Give ``bot``'s account a new token (as "Reset Token" does); the old one stops
        working. Returns the new token."""
        del self.bots[bot.token]
        bot.token = f"standin-token-{bot.user['id']}-{self.ids.next()}"
        self.bots[bot.token] = bot
        return bot.token

    def _add_text_channel(self, name: str) -> Payload:
        channel = p.text_channel(self.ids.next(), self.guild_id, name, len(self.channels))
        self.channels[channel["id"]] = channel
        return channel

    def dm_channel(self, user: Payload, bot: Bot | None = None) -> Payload:
        """The DM channel between ``user`` and ``bot`` (the first bot by default), created once."""
        bot = bot or self.bot
        for channel in self.channels.values():
            if channel["type"] == p.DM_CHANNEL and channel["recipients"][0]["id"] == user["id"] \
                    and channel["_bot"] == bot.token:
                return channel
        channel = p.dm_channel(self.ids.next(), user) | {"_bot": bot.token}
        self.channels[channel["id"]] = channel
        return channel

    def channel(self, channel_id: str) -> Payload | None:
        """A text channel, DM channel or thread by id."""
        return self.channels.get(channel_id) or self.threads.get(channel_id)

    def guild_payload(self, bot: Bot) -> list[Payload]:
        """GUILD_CREATE payloads for ``bot`` (every bot is in the one guild)."""
        members = [self.member(u) for u in self.users]
        channels = [c for c in self.channels.values() if c["type"] == p.TEXT_CHANNEL]
        return [p.guild(self.guild_id, "Stand-in Guild", self.alice["id"], channels=channels,
                        threads=list(self.threads.values()), members=members,
                        roles=list(self.roles))]

    # ---------------------------------------------------------------- recording

    def changed(self) -> None:
        """Wake every ``wait_for``."""
        for future in self._waiters:
            if not future.done():
                future.set_result(None)

    async def wait_for(self, predicate: Callable[[], T | None], *,
                       timeout: float = 10.0,  # noqa: ASYNC109
                       what: str = "condition") -> T:
        """Wait until ``predicate()`` is truthy; return its value (so never None).

        Raises:
            AssertionError: a route the stand-in does not know was called (at once).
            TimeoutError: ``predicate`` stayed falsy for ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self.assert_no_unknown_routes()
                    if result := predicate():
                        return result
                    future: asyncio.Future[None] = loop.create_future()
                    self._waiters.add(future)
                    try:
                        await future
                    finally:
                        self._waiters.discard(future)
        except TimeoutError as exc:
            msg = f"stand-in: {what} not met within {timeout} s; requests: {self.requests[-20:]}"
            raise TimeoutError(msg) from exc

    def assert_no_unknown_routes(self) -> None:
        if self.unknown_routes:
            msg = f"the bot called routes the stand-in does not know: {self.unknown_routes}"
            raise AssertionError(msg)

    def messages_in(self, channel_id: str) -> list[Payload]:
        return self.messages.get(channel_id, [])

    def bot_messages(self, channel_id: str | None = None, bot: Bot | None = None) -> list[Payload]:
        """Messages a bot posted (through REST), in one channel or everywhere."""
        author = (bot or self.bot).user["id"]
        channels = [channel_id] if channel_id else list(self.messages)
        return [m for c in channels for m in self.messages_in(c) if m["author"]["id"] == author]

    def dispatched(self, event: str, bot: Bot | None = None) -> list[Payload]:
        """The data of every ``event`` (``"MESSAGE_UPDATE"``) sent to ``bot``'s gateway
        sessions (the first bot by default; the last 1,000 events of each), oldest first."""
        return [sent["d"] for session in self._gateway().sessions_of(bot or self.bot)
                for sent in session.sent if sent["t"] == event]

    def threads_from(self, message_id: str) -> Payload | None:
        """The thread started from message ``message_id`` (a thread shares its starter's id)."""
        return self.threads.get(message_id)

    def attachment_bytes(self, message: Payload) -> dict[str, bytes]:
        """File name → bytes of a message's attachments."""
        return {a["filename"]: self.files[a["id"]] for a in message["attachments"]}

    # ---------------------------------------------------------------- injecting

    async def post_user_message(self, channel_id: str, author_id: str, content: str, *,
                                mention_bot: bool = True, reply_to: str | None = None,
                                files: dict[str, bytes] | None = None,
                                bot: Bot | None = None) -> Payload:
        """A person (or another bot) posts a message: stored, then MESSAGE_CREATE dispatched.

        Args:
            channel_id: a text channel, thread or DM channel id.
            author_id: a user id from ``users``.
            content: the text; with ``mention_bot`` it is prefixed by ``<@bot id> ``.
            reply_to: the id of a message this one replies to.
            files: attachments, name → bytes (served at their ``url``).
            bot: the bot mentioned (the first bot by default).

        Returns:
            The message payload as dispatched.

        Raises:
            KeyError: the channel, author or replied-to message is unknown.
        """
        mentioned = (bot or self.bot).user
        channel = self.channel(channel_id)
        if channel is None:
            raise KeyError(channel_id)
        author = self.users[author_id]
        if mention_bot:
            content = f"<@{mentioned['id']}> {content}"
        reference = self.by_id[reply_to] if reply_to else None
        mentions = [mentioned] if mention_bot else []
        if reference is not None and reference["author"]["id"] not in {u["id"] for u in mentions}:
            mentions.append(reference["author"])
        attachments = [self.store_file(channel_id, name, data)
                       for name, data in (files or {}).items()]
        message = p.message(self.ids.next(), channel, author, content, mentions=mentions,
                            attachments=attachments, reference=reference)
        if "guild_id" in channel:
            message["member"] = {k: v for k, v in self.member(author_id).items()
                                 if k != "user"}
        await self.store_and_dispatch(message)
        return message

    async def add_user_reaction(self, channel_id: str, message_id: str, user_id: str,
                                emoji: str) -> None:
        """A person reacts to a message: recorded, then MESSAGE_REACTION_ADD dispatched."""
        await self.record_reaction(channel_id, message_id, user_id, emoji, added=True)

    async def run_command(self, channel_id: str, user_id: str, name: str,
                          options: dict[str, Any] | None = None, *, bot: Bot | None = None,
                          endpoint: HttpEndpoint | None = None) -> Payload:
        """A person runs ``/name`` in ``channel_id``: INTERACTION_CREATE is dispatched to the
        bot (or, with ``endpoint``, POSTed there signed); returns the interaction payload (its
        ``token`` finds the responses: ``interactions.responses(token)``)."""
        bot = bot or self.bot
        payload = self.interactions.create(bot, channel_id, self.users[user_id], name, options)
        await self._deliver(bot, payload, endpoint)
        return payload

    async def click_button(self, channel_id: str, message_id: str, user_id: str,
                           custom_id: str, *, endpoint: HttpEndpoint | None = None) -> Payload:
        """A person clicks button ``custom_id`` of message ``message_id``: a MESSAGE_COMPONENT
        interaction goes to the bot that posted the message, as INTERACTION_CREATE on its
        gateway sessions or, with ``endpoint`` (an app with an Interactions Endpoint URL),
        as a signed POST there whose answer is taken as the response.

        Returns:
            The interaction payload; ``interactions.by_token[payload["token"]]`` holds its
            ``callbacks``, ``responses(token)`` its messages (the clicked one first once it
            was answered with type 6 or 7).

        Raises:
            KeyError: the channel, message or user is unknown.
            ValueError: the message has no such enabled button (Discord would send nothing).
            aiohttp.ClientError, TimeoutError: ``endpoint`` could not be reached or did not
                answer within ``ENDPOINT_TIMEOUT_S``.
        """
        message = self.by_id.get(message_id)
        if message is None or message["channel_id"] != channel_id:
            raise KeyError(message_id)
        payload = self.interactions.create_click(message, self.users[user_id], custom_id)
        await self._deliver(self.interactions.by_token[payload["token"]]["bot"], payload,
                            endpoint)
        return payload

    async def _deliver(self, bot: Bot, payload: Payload, endpoint: HttpEndpoint | None) -> None:
        """An interaction to ``endpoint`` when the app has one (Discord then sends no
        INTERACTION_CREATE), else to every gateway session of ``bot``."""
        if endpoint is not None:
            await self.interactions.deliver_http(endpoint, payload)
            return
        for session in list(self._gateway().sessions.values()):
            if session.bot is bot:
                await session.dispatch("INTERACTION_CREATE", payload)

    def rate_limit_next(self, method: str, path_fragment: str, retry_after: float) -> None:
        """Answer the next ``method`` request whose path contains ``path_fragment`` with 429
        and ``retry_after`` seconds (recorded in ``rate_limited``)."""
        self.planned_429s.append((method, path_fragment, retry_after))

    async def reconnect_gateway(self) -> None:
        """Send RECONNECT (op 7) to every client; they come back with RESUME."""
        await self._gateway().reconnect_all()

    # ---------------------------------------------------------------- shared with REST

    def store_file(self, channel_id: str, name: str, data: bytes,
                   content_type: str | None = None) -> Payload:
        attachment_id = self.ids.next()
        self.files[attachment_id] = data
        url = f"{self.http_base}/attachments/{channel_id}/{attachment_id}/{quote(name, safe='')}"
        return p.attachment(attachment_id, name, data, url, content_type)

    async def store_and_dispatch(self, message: Payload) -> None:
        channel_id = message["channel_id"]
        self.messages.setdefault(channel_id, []).append(message)
        self.by_id[message["id"]] = message
        if (thread := self.threads.get(channel_id)) is not None:
            thread["message_count"] += 1
            thread["total_message_sent"] += 1
            thread["last_message_id"] = message["id"]
        self.changed()
        await self.dispatch("MESSAGE_CREATE", message, channel_id)

    async def record_reaction(self, channel_id: str, message_id: str, user_id: str, emoji: str,
                              *, added: bool) -> None:
        key = (emoji, user_id)
        current = self._message_reactions.setdefault(message_id, set())
        if added:
            current.add(key)
        else:
            current.discard(key)
        self.reactions.append(ReactionRecord(channel_id, message_id, emoji, user_id, added))
        self.changed()
        name, _, emoji_id = emoji.partition(":")
        data: Payload = {
            "user_id": user_id, "channel_id": channel_id, "message_id": message_id,
            "emoji": {"id": emoji_id or None, "name": name}, "type": 0, "burst": False,
        }
        channel = self.channel(channel_id)
        if channel is not None and "guild_id" in channel:
            data["guild_id"] = channel["guild_id"]
            if added:  # who reacted, in a guild (gateway-events#message-reaction-add)
                data["member"] = self.member(user_id)
        if (message := self.by_id.get(message_id)) is not None:
            data["message_author_id"] = message["author"]["id"]
        await self.dispatch("MESSAGE_REACTION_ADD" if added else "MESSAGE_REACTION_REMOVE",
                            data, channel_id)

    async def start_thread(self, channel_id: str, owner_id: str, name: str) -> Payload:
        """A person starts a public thread (without a message) in text channel
        ``channel_id``: THREAD_CREATE to every bot; returns the thread."""
        thread = p.thread(self.ids.next(), self.channels[channel_id], owner_id, name)
        self.threads[thread["id"]] = thread
        self.changed()
        await self.dispatch("THREAD_CREATE", thread | {"newly_created": True}, channel_id)
        return thread

    async def delete_thread(self, thread_id: str) -> None:
        """Delete a thread as a moderator would: THREAD_DELETE to every bot
        (https://discord.com/developers/docs/topics/gateway-events#thread-delete: id,
        guild_id, parent_id, type)."""
        thread = self.threads.pop(thread_id)
        await self.dispatch("THREAD_DELETE", {
            "id": thread["id"], "guild_id": thread.get("guild_id"),
            "parent_id": thread.get("parent_id"), "type": thread.get("type", 11),
        })

    async def dispatch(self, event: str, data: Payload, channel_id: str | None = None) -> None:
        """Send an event to every bot that can see ``channel_id`` (all bots for guild events)."""
        channel = self.channel(channel_id) if channel_id else None
        only = channel.get("_bot") if channel else None
        public = {k: v for k, v in data.items() if not k.startswith("_")}
        for session in list(self._gateway().sessions.values()):
            if only is None or session.bot.token == only:
                await session.dispatch(event, public)

    # ---------------------------------------------------------------- lifecycle

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.http_base}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def token(self) -> str:
        return self.bot.token

    def _gateway(self) -> Gateway:
        return self._gateway_server

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and serve."""
        from ._rest import RestApi

        self.rest = RestApi(self)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._gateway_server = Gateway(self.gateway_url, self.bots, self.guild_payload,
                                       self.unknown_routes.append)
        app = web.Application(client_max_size=1 << 26)
        app.router.add_get("/gateway", self._gateway_server.handle)
        app.router.add_routes(self.rest.routes())
        self._runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                                     handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        _log.info("Discord stand-in on %s", self.http_base)

    async def stop(self) -> None:
        if self._runner is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                await self._gateway_server.close()
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

