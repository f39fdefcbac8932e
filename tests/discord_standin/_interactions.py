"""The stand-in's application commands and interactions.

Routes from https://discord.com/developers/docs/interactions/application-commands ("Bulk
Overwrite Global / Guild Application Commands": ``PUT /applications/{app}/commands``,
``PUT /applications/{app}/guilds/{guild}/commands``) and .../interactions/receiving-and-responding
("Create Interaction Response" ``POST /interactions/{id}/{token}/callback``; "Get / Edit
Original Interaction Response" ``GET|PATCH /webhooks/{app}/{token}/messages/@original``;
"Create Followup Message" ``POST /webhooks/{app}/{token}``). Interaction payload fields from
.../interactions/receiving-and-responding#interaction-object (discord.py 2.7 also needs
``attachment_size_limit``, ``version`` and ``token``, docs/measurements.md).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import _payloads as p
from ._payloads import Payload

if TYPE_CHECKING:
    from ._records import Bot
    from ._standin import DiscordStandIn

PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE = 1, 4, 5
"""Interaction callback types (.../receiving-and-responding#interaction-response-object)."""
EPHEMERAL = 1 << 6
LOADING = 1 << 7
APPLICATION_COMMAND = 2
OPTION_TYPES = {str: 3, int: 4, bool: 5}
"""Application command option types: STRING 3, INTEGER 4, BOOLEAN 5."""


class Interactions:
    """Commands registered per application, interactions created and their responses.

    Attributes:
        commands: ``(application id, guild id or None)`` → the last bulk-overwritten commands.
        by_token: interaction token → ``{"payload", "bot", "original", "callbacks",
            "followups"}``.
    """

    def __init__(self, standin: DiscordStandIn) -> None:
        self.s = standin
        self.commands: dict[tuple[str, str | None], list[Payload]] = {}
        self.by_token: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ creating

    def create(self, bot: Bot, channel_id: str, user: Payload, name: str,
               options: dict[str, Any] | None = None) -> Payload:
        """A person's slash command as an interaction payload (registered by its token)."""
        channel = self.s.channel(channel_id)
        if channel is None:
            raise KeyError(channel_id)
        token = "standin-interaction-" + secrets.token_hex(8)
        data: Payload = {
            "id": self.s.ids.next(), "name": name, "type": 1,
            "options": [{"name": k, "type": OPTION_TYPES[type(v)], "value": v}
                        for k, v in (options or {}).items()],
        }
        payload: Payload = {
            "id": self.s.ids.next(), "application_id": bot.application["id"],
            "type": APPLICATION_COMMAND, "data": data, "token": token, "version": 1,
            "channel_id": channel_id, "channel": {k: v for k, v in channel.items()
                                                  if not k.startswith("_")},
            "app_permissions": p.ALL_PERMISSIONS, "locale": "en-US",
            "attachment_size_limit": 8 * 1024 * 1024, "entitlements": [],
            "authorizing_integration_owners": {}, "context": 0,
        }
        if "guild_id" in channel:
            payload["guild_id"] = channel["guild_id"]
            payload["member"] = (self.s.member(user["id"])
                                 | {"permissions": str(self.s.permissions_of(user["id"]))})
        else:
            payload["user"] = user
            payload["context"] = 1
        self.by_token[token] = {"payload": payload, "bot": bot, "original": None,
                                "callbacks": [], "followups": []}
        return payload

    def responses(self, token: str) -> list[Payload]:
        """Every message made for the interaction: original first, then follow-ups."""
        record = self.by_token[token]
        original = [self.s.by_id[record["original"]]] if record["original"] else []
        return original + [self.s.by_id[m] for m in record["followups"]]

    # ------------------------------------------------------------------ routes

    def routes(self, v10: str, authed: Any, recorded: Any) -> list[web.RouteDef]:
        return [
            web.put(v10 + "/applications/{app}/commands", authed(self.put_commands)),
            web.put(v10 + "/applications/{app}/guilds/{gid}/commands",
                    authed(self.put_commands)),
            web.post(v10 + "/interactions/{iid}/{token}/callback", recorded(self.callback)),
            web.get(v10 + "/webhooks/{app}/{token}/messages/@original",
                    recorded(self.get_original)),
            web.patch(v10 + "/webhooks/{app}/{token}/messages/@original",
                      recorded(self.edit_original)),
            web.post(v10 + "/webhooks/{app}/{token}", recorded(self.followup)),
        ]

    async def put_commands(self, request: web.Request, bot: Bot) -> web.Response:
        from ._rest import error, json_response

        app = request.match_info["app"]
        if app != bot.application["id"]:
            return error(403, 50001, "Missing Access")
        body = await request.json()
        commands = [c | {"id": self.s.ids.next(), "application_id": app, "version": "1",
                         "type": c.get("type", 1), "default_member_permissions": None}
                    for c in body]
        self.commands[(app, request.match_info.get("gid"))] = commands
        self.s.changed()
        return json_response(commands)

    def _record(self, request: web.Request) -> dict[str, Any] | None:
        record = self.by_token.get(request.match_info["token"])
        if record is None:
            return None
        app = request.match_info.get("app")
        if app is not None and app != record["payload"]["application_id"]:
            return None
        return record

    async def callback(self, request: web.Request) -> web.Response:
        from ._rest import _read_body, error

        record = self._record(request)
        if record is None or record["payload"]["id"] != request.match_info["iid"]:
            return self.s.rest.not_found(request, 10062, "interaction")
        if record["callbacks"]:
            return error(400, 40060, "Interaction has already been acknowledged.")
        body, files = await _read_body(request)
        return await self.respond(record, body, files)

    async def acknowledge(self, token: str, body: Payload) -> web.Response:
        """What Discord does with the HTTP answer of an Interactions endpoint (PONG aside):
        ``body`` is the endpoint's interaction response, as it would be for the callback."""
        return await self.respond(self.by_token[token], body, [])

    async def respond(self, record: dict[str, Any], body: Payload,
                      files: list[tuple[str, bytes, str | None]]) -> web.Response:
        from ._rest import error, json_response

        record["callbacks"].append(body)
        self.s.changed()
        kind, data = body.get("type"), body.get("data") or {}
        if kind not in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE):
            return error(400, 50035, f"Invalid Form Body: type {kind}")
        flags = int(data.get("flags") or 0) | (LOADING if kind == DEFERRED_CHANNEL_MESSAGE else 0)
        message = await self._message(record, str(data.get("content") or ""), flags, files)
        record["original"] = message["id"]
        interaction = record["payload"]
        return json_response({
            "interaction": {"id": interaction["id"], "type": interaction["type"],
                            "response_message_id": message["id"],
                            "response_message_loading": bool(flags & LOADING),
                            "response_message_ephemeral": bool(flags & EPHEMERAL)},
            "resource": {"type": kind, "message": message},
        })

    async def _message(self, record: dict[str, Any], content: str, flags: int,
                       files: list[tuple[str, bytes, str | None]]) -> Payload:
        interaction = record["payload"]
        channel = self.s.channel(interaction["channel_id"])
        assert channel is not None
        attachments = [self.s.store_file(channel["id"], n, d, t) for n, d, t in files]
        message = p.message(self.s.ids.next(), channel, record["bot"].user, content,
                            attachments=attachments)
        message["flags"] = flags
        message["application_id"] = interaction["application_id"]
        message["webhook_id"] = interaction["application_id"]
        message["interaction_metadata"] = {
            "id": interaction["id"], "type": APPLICATION_COMMAND,
            "user": interaction.get("member", {}).get("user") or interaction.get("user"),
            "authorizing_integration_owners": {}}
        if flags & EPHEMERAL:
            self.s.by_id[message["id"]] = message
            self.s.ephemeral.append(message)
            self.s.changed()
        else:
            await self.s.store_and_dispatch(message)
        return message

    async def get_original(self, request: web.Request) -> web.Response:
        from ._rest import json_response

        record = self._record(request)
        if record is None or record["original"] is None:
            return self.s.rest.not_found(request, 10008, "Message")
        return json_response(self.s.by_id[record["original"]])

    async def edit_original(self, request: web.Request) -> web.Response:
        from ._rest import apply_edit, json_response

        record = self._record(request)
        if record is None or record["original"] is None:
            return self.s.rest.not_found(request, 10015, "Webhook")
        message = self.s.by_id[record["original"]]
        if (refused := await apply_edit(self.s, message, request)) is not None:
            return refused
        message["flags"] = int(message["flags"]) & ~LOADING
        return json_response(message)

    async def followup(self, request: web.Request) -> web.Response:
        from ._rest import _read_body, error, json_response

        record = self._record(request)
        if record is None or record["original"] is None:
            return self.s.rest.not_found(request, 10015, "Webhook")
        body, files = await _read_body(request)
        content = str(body.get("content") or "")
        if len(content) > 2000:
            return error(400, 50035, "Invalid Form Body: content: Must be 2000 or fewer.")
        message = await self._message(record, content, int(body.get("flags") or 0), files)
        record["followups"].append(message["id"])
        return json_response(message)
