"""The stand-in's REST API (v10), the routes discord.py 2.7.1 calls for Switchboard's bot.

Paths and bodies from https://discord.com/developers/docs/resources/message (create / edit /
get message, reactions; their ``components`` are checked by ``_components``),
.../resources/channel (get channel, trigger typing, start thread from message, start thread
without message), .../resources/user (get current user), .../resources/application (get
current application), .../topics/gateway (get gateway).
JSON answers carry ``Content-Type: application/json`` exactly: discord.py parses a body as JSON
only then. Unknown routes answer 404 and are recorded in ``unknown_routes``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from . import _payloads as p
from ._components import FormError, Path, checked
from ._payloads import Payload
from ._records import Edit

if TYPE_CHECKING:
    from ._records import Bot
    from ._standin import DiscordStandIn

Handler = Callable[[web.Request, "Bot"], Awaitable[web.StreamResponse]]
V10 = "/api/v10"


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer whose Content-Type is exactly ``application/json``."""
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json"})


def error(status: int, code: int, message: str) -> web.Response:
    """A Discord error body (https://discord.com/developers/docs/topics/opcodes-and-status-codes)."""
    return json_response({"message": message, "code": code}, status)


def no_content() -> web.Response:
    return web.Response(status=204)


def _public(payload: Payload) -> Payload:
    return {k: v for k, v in payload.items() if not k.startswith("_")}


class RestApi:
    """Route handlers over one stand-in's state."""

    def __init__(self, standin: DiscordStandIn) -> None:
        self.s = standin

    def routes(self) -> list[web.RouteDef]:
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/users/@me", self.get_me),
            ("GET", "/oauth2/applications/@me", self.get_application),
            ("GET", "/gateway", self.get_gateway),
            ("GET", "/gateway/bot", self.get_gateway_bot),
            ("GET", "/channels/{cid}", self.get_channel),
            ("POST", "/channels/{cid}/messages", self.create_message),
            ("GET", "/channels/{cid}/messages/{mid}", self.get_message),
            ("PATCH", "/channels/{cid}/messages/{mid}", self.edit_message),
            ("POST", "/channels/{cid}/messages/{mid}/threads", self.thread_from_message),
            ("POST", "/channels/{cid}/threads", self.thread_without_message),
            ("POST", "/channels/{cid}/typing", self.typing),
            ("PUT", "/channels/{cid}/messages/{mid}/reactions/{emoji}/@me", self.react),
            ("DELETE", "/channels/{cid}/messages/{mid}/reactions/{emoji}/@me", self.unreact),
        ]
        defs = [web.route(method, V10 + path, self._authed(handler))
                for method, path, handler in table]
        defs += self.s.interactions.routes(V10, self._authed, self._recorded)
        defs.append(web.get("/attachments/{cid}/{aid}/{name}", self.get_attachment))
        defs.append(web.route("*", "/{tail:.*}", self.unknown))
        return defs

    def _authed(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.s.requests.append(f"{request.method} {request.path}")
            self.s.changed()
            if (limited := self._rate_limited(request)) is not None:
                return limited
            token = request.headers.get("Authorization", "").removeprefix("Bot ")
            bot = self.s.bots.get(token)
            if bot is None:
                return error(401, 0, "401: Unauthorized")
            return await handler(request, bot)

        return wrapped

    def _recorded(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """For routes authorised by the interaction token in the path, not a bot token."""
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.s.requests.append(f"{request.method} {request.path}")
            self.s.changed()
            if (limited := self._rate_limited(request)) is not None:
                return limited
            return await handler(request)

        return wrapped

    def _rate_limited(self, request: web.Request) -> web.Response | None:
        """Answer 429 when a planned rate limit matches (``DiscordStandIn.rate_limit_next``).

        Body and headers from https://discord.com/developers/docs/topics/rate-limits
        ("Exceeding A Rate Limit"); ``Via`` marks it as Discord's, not Cloudflare's (discord.py
        2.7 treats a 429 without it as a ban, docs/measurements.md).
        """
        for index, (method, fragment, retry_after) in enumerate(self.s.planned_429s):
            if request.method == method and fragment in request.path:
                del self.s.planned_429s[index]
                self.s.rate_limited.append(f"{request.method} {request.path}")
                self.s.changed()
                body = {"message": "You are being rate limited.", "retry_after": retry_after,
                        "global": False}
                return web.Response(body=json.dumps(body).encode(), status=429, headers={
                    "Content-Type": "application/json", "Via": "1.1 google",
                    "Retry-After": str(max(1, round(retry_after))),
                    "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": str(retry_after),
                    "X-RateLimit-Bucket": "standin-bucket", "X-RateLimit-Scope": "user",
                })
        return None

    def not_found(self, request: web.Request, code: int, what: str) -> web.Response:
        self.s.not_found.append(f"{request.method} {request.path}")
        self.s.changed()
        return error(404, code, f"Unknown {what}")

    async def unknown(self, request: web.Request) -> web.Response:
        self.s.requests.append(f"{request.method} {request.path}")
        self.s.unknown_routes.append(f"{request.method} {request.path}")
        self.s.changed()
        return error(404, 0, "404: Not Found")

    # ------------------------------------------------------------ identity

    async def get_me(self, request: web.Request, bot: Bot) -> web.Response:
        return json_response(bot.user)

    async def get_application(self, request: web.Request, bot: Bot) -> web.Response:
        return json_response(bot.application)

    async def get_gateway(self, request: web.Request, bot: Bot) -> web.Response:
        return json_response({"url": self.s.gateway_url})

    async def get_gateway_bot(self, request: web.Request, bot: Bot) -> web.Response:
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return json_response({"url": self.s.gateway_url, "shards": 1,
                              "session_start_limit": limit})

    # ------------------------------------------------------------ channels and messages

    async def get_channel(self, request: web.Request, bot: Bot) -> web.Response:
        channel = self.s.channel(request.match_info["cid"])
        if channel is None:
            return self.not_found(request, 10003, "Channel")
        return json_response(_public(channel))

    async def get_message(self, request: web.Request, bot: Bot) -> web.Response:
        message = self.s.by_id.get(request.match_info["mid"])
        if message is None or message["channel_id"] != request.match_info["cid"]:
            return self.not_found(request, 10008, "Message")
        thread = self.s.threads.get(message["id"])
        if thread is not None:
            # "thread?: the thread that was started from this message"
            # (https://discord.com/developers/docs/resources/message#message-object)
            message = message | {"thread": _public(thread)}
        return json_response(message)

    async def create_message(self, request: web.Request, bot: Bot) -> web.Response:
        cid = request.match_info["cid"]
        channel = self.s.channel(cid)
        if channel is None:
            return self.not_found(request, 10003, "Channel")
        body, files = await _read_body(request)
        content = str(body.get("content") or "")
        if len(content) > 2000:
            return error(400, 50035, "Invalid Form Body: content: Must be 2000 or fewer in length.")
        try:
            components = checked(body.get("components"))
        except FormError as exc:
            return json_response(exc.body, 400)
        attachments = [self.s.store_file(cid, name, data, ctype) for name, data, ctype in files]
        if not content and not attachments and not body.get("embeds") and not components:
            return error(400, 50006, "Cannot send an empty message")
        ref_id = (body.get("message_reference") or {}).get("message_id")
        reference = self.s.by_id.get(str(ref_id)) if ref_id else None
        message = p.message(self.s.ids.next(), channel, bot.user, content,
                            attachments=attachments, reference=reference)
        message["embeds"] = body.get("embeds") or []
        message["components"] = components
        await self.s.store_and_dispatch(message)
        return json_response(message)

    async def edit_message(self, request: web.Request, bot: Bot) -> web.Response:
        message = self.s.by_id.get(request.match_info["mid"])
        if message is None or message["channel_id"] != request.match_info["cid"]:
            return self.not_found(request, 10008, "Message")
        if message["author"]["id"] != bot.user["id"]:
            return error(403, 50005, "Cannot edit a message authored by another user")
        if (refused := await apply_edit(self.s, message, request)) is not None:
            return refused
        await self.s.dispatch("MESSAGE_UPDATE", message, message["channel_id"])
        return json_response(message)

    async def typing(self, request: web.Request, bot: Bot) -> web.Response:
        cid = request.match_info["cid"]
        if self.s.channel(cid) is None:
            return self.not_found(request, 10003, "Channel")
        self.s.typing.append(cid)
        self.s.changed()
        return no_content()

    # ------------------------------------------------------------ threads

    async def thread_from_message(self, request: web.Request, bot: Bot) -> web.Response:
        cid, mid = request.match_info["cid"], request.match_info["mid"]
        parent, message = self.s.channels.get(cid), self.s.by_id.get(mid)
        if parent is None or parent["type"] != p.TEXT_CHANNEL:
            return self.not_found(request, 10003, "Channel")
        if message is None or message["channel_id"] != cid:
            return self.not_found(request, 10008, "Message")
        if mid in self.s.threads:
            return error(400, 160004, "A thread has already been created for this message")
        body, _ = await _read_body(request)
        return await self._open_thread(mid, parent, bot, body, p.PUBLIC_THREAD)

    async def thread_without_message(self, request: web.Request, bot: Bot) -> web.Response:
        parent = self.s.channels.get(request.match_info["cid"])
        if parent is None or parent["type"] != p.TEXT_CHANNEL:
            return self.not_found(request, 10003, "Channel")
        body, _ = await _read_body(request)
        kind = int(body.get("type") or p.PRIVATE_THREAD)
        return await self._open_thread(self.s.ids.next(), parent, bot, body, kind)

    async def _open_thread(self, thread_id: str, parent: Payload, bot: Bot, body: Payload,
                           kind: int) -> web.Response:
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            return error(400, 50035, "Invalid Form Body: name: Must be between 1 and 100 long.")
        thread = p.thread(thread_id, parent, bot.user["id"], name, kind=kind,
                          auto_archive_duration=int(body.get("auto_archive_duration") or 1440))
        thread["member"] = {"id": thread_id, "user_id": bot.user["id"],
                            "join_timestamp": p.timestamp(), "flags": 0}
        self.s.threads[thread_id] = thread
        self.s.changed()
        await self.s.dispatch("THREAD_CREATE", thread | {"newly_created": True}, parent["id"])
        return json_response(thread)

    # ------------------------------------------------------------ reactions and files

    async def react(self, request: web.Request, bot: Bot) -> web.Response:
        return await self._reaction(request, bot, added=True)

    async def unreact(self, request: web.Request, bot: Bot) -> web.Response:
        return await self._reaction(request, bot, added=False)

    async def _reaction(self, request: web.Request, bot: Bot, *, added: bool) -> web.Response:
        cid, mid = request.match_info["cid"], request.match_info["mid"]
        message = self.s.by_id.get(mid)
        if message is None or message["channel_id"] != cid:
            return self.not_found(request, 10008, "Message")
        await self.s.record_reaction(cid, mid, bot.user["id"], request.match_info["emoji"],
                                     added=added)
        return no_content()

    async def get_attachment(self, request: web.Request) -> web.Response:
        data = self.s.files.get(request.match_info["aid"])
        if data is None:
            return self.not_found(request, 0, "Attachment")
        return web.Response(body=data, content_type="application/octet-stream")


async def apply_edit(standin: Any, message: Payload, request: web.Request
                     ) -> web.Response | None:
    """Apply a message edit (PATCH body, JSON or multipart) and record it; returns the error
    response when the edit is refused, else None (see ``apply_fields``)."""
    body, files = await _read_body(request)
    return apply_fields(standin, message, body, files)


def apply_fields(standin: Any, message: Payload, body: Payload,
                 files: list[tuple[str, bytes, str | None]], *, path: Path = ()
                 ) -> web.Response | None:
    """Apply the fields of an edit to ``message`` and record it in ``standin.edits``.

    Fields of https://discord.com/developers/docs/resources/message#edit-message: a field
    present replaces the message's (``content``, ``embeds``, ``components``; null empties
    it), new files are appended to its attachments. Nothing changes when a field is refused:
    content over 2,000 characters or invalid components (``_components``) answer 400 / 50035.
    ``path`` is where the fields sit in the request body (``("data",)`` in a callback).
    """
    content = str(body.get("content") or "")
    if "content" in body and len(content) > 2000:
        return error(400, 50035, "Invalid Form Body: content: Must be 2000 or fewer.")
    try:
        components = (checked(body["components"], (*path, "components"))
                      if "components" in body else None)
    except FormError as exc:
        return json_response(exc.body, 400)
    if "content" in body:
        message["content"] = content
    if "embeds" in body:
        message["embeds"] = body["embeds"] or []
    if components is not None:
        message["components"] = components
    if files:
        message["attachments"] = message["attachments"] + [
            standin.store_file(message["channel_id"], n, d, t) for n, d, t in files]
    message["edited_timestamp"] = p.timestamp()
    standin.edits.append(_edit(message))
    standin.changed()
    return None


def _edit(message: Payload) -> Edit:
    return Edit(message["channel_id"], message["id"], message["content"])


async def _read_body(request: web.Request) -> tuple[Payload, list[tuple[str, bytes, str | None]]]:
    """The JSON body, or a multipart body's ``payload_json`` and its ``files[n]`` parts.

    Multipart layout: https://discord.com/developers/docs/reference#uploading-files.
    """
    if not request.content_type.startswith("multipart/"):
        if not request.can_read_body:
            return {}, []
        return await request.json(), []
    body: Payload = {}
    files: list[tuple[str, bytes, str | None]] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            # A nested multipart body: not in Discord's upload layout (a 500, as for bad JSON).
            raise TypeError(f"nested multipart part in {request.method} {request.path}")
        if part.name == "payload_json":
            body = json.loads(await part.text())
        elif part.name and part.name.startswith("files["):
            data = await part.read()
            ctype = part.headers.get("Content-Type")
            files.append((part.filename or part.name, bytes(data), ctype))
    return body, files
