"""The stand-in's application commands and interactions.

Routes from https://discord.com/developers/docs/interactions/application-commands ("Bulk
Overwrite Global / Guild Application Commands": ``PUT /applications/{app}/commands``,
``PUT /applications/{app}/guilds/{guild}/commands``) and .../interactions/receiving-and-responding
("Create Interaction Response" ``POST /interactions/{id}/{token}/callback``; "Get / Edit
Original Interaction Response" ``GET|PATCH /webhooks/{app}/{token}/messages/@original``;
"Create Followup Message" ``POST /webhooks/{app}/{token}``). Interaction payload fields from
.../interactions/receiving-and-responding#interaction-object (discord.py 2.7 also needs
``attachment_size_limit``, ``version`` and ``token``, docs/measurements.md).

Interactions are slash commands (APPLICATION_COMMAND) and button clicks (MESSAGE_COMPONENT,
"Message Component Data Structure"). They reach the bot's gateway sessions as
INTERACTION_CREATE, or an Interactions Endpoint URL as a signed POST (``HttpEndpoint``;
.../interactions/overview, "Setting Up an Endpoint").
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import nacl.signing
from aiohttp import web

from . import _payloads as p
from ._components import BUTTON, FormError, checked, find_button
from ._payloads import Payload

if TYPE_CHECKING:
    from ._records import Bot
    from ._standin import DiscordStandIn

PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE = 1, 4, 5
DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE = 6, 7
"""Interaction callback types (.../receiving-and-responding#interaction-response-object);
6 and 7 are only valid for component interactions."""
EPHEMERAL = 1 << 6
LOADING = 1 << 7
APPLICATION_COMMAND, MESSAGE_COMPONENT = 2, 3
"""Interaction types (.../receiving-and-responding#interaction-object-interaction-type)."""
OPTION_TYPES = {str: 3, int: 4, bool: 5}
"""Application command option types: STRING 3, INTEGER 4, BOOLEAN 5."""
ENDPOINT_TIMEOUT_S = 10.0
"""How long ``deliver_http`` waits for an endpoint (Discord allows 3 s; a loaded test machine
needs more)."""


@dataclass(frozen=True)
class HttpEndpoint:
    """An application's Interactions Endpoint URL and the key Discord signs its POSTs with.

    Give the app ``public_key`` (its ``DISCORD_PUBLIC_KEY``); pass this to
    ``DiscordStandIn.click_button`` / ``run_command`` to deliver there instead of the gateway.
    """

    url: str
    signing_key: nacl.signing.SigningKey

    @property
    def public_key(self) -> str:
        """The application's public key as Discord shows it: 64 hex characters."""
        return self.signing_key.verify_key.encode().hex()


def signed_headers(key: nacl.signing.SigningKey, body: bytes,
                   timestamp: str | None = None) -> dict[str, str]:
    """The headers of Discord's POST of ``body`` to an Interactions endpoint: ed25519 over
    timestamp + body (.../interactions/overview, "Validating Security Request Headers")."""
    stamp = timestamp or str(int(time.time()))
    return {"X-Signature-Ed25519": key.sign(stamp.encode() + body).signature.hex(),
            "X-Signature-Timestamp": stamp, "Content-Type": "application/json"}


class Interactions:
    """Commands registered per application, interactions created and their responses.

    Attributes:
        commands: ``(application id, guild id or None)`` → the last bulk-overwritten commands.
        by_token: interaction token → ``{"payload", "bot", "original", "callbacks",
            "followups", "message_id", "endpoint_answer"}``: ``message_id`` is the clicked
            message (components only), ``original`` the response message's id (for a
            component answered with type 6 or 7, the clicked message), ``endpoint_answer``
            the ``(status, body)`` of an HTTP endpoint's answer (``deliver_http``).
    """

    def __init__(self, standin: DiscordStandIn) -> None:
        self.s = standin
        self.commands: dict[tuple[str, str | None], list[Payload]] = {}
        self.by_token: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ creating

    def create(self, bot: Bot, channel_id: str, user: Payload, name: str,
               options: dict[str, Any] | None = None) -> Payload:
        """A person's slash command as an interaction payload (registered by its token)."""
        data: Payload = {
            "id": self.s.ids.next(), "name": name, "type": 1,
            "options": [{"name": k, "type": OPTION_TYPES[type(v)], "value": v}
                        for k, v in (options or {}).items()],
        }
        return self._new(bot, channel_id, user, APPLICATION_COMMAND, data)

    def create_click(self, message: Payload, user: Payload, custom_id: str) -> Payload:
        """A person's click on button ``custom_id`` of ``message``, as the MESSAGE_COMPONENT
        interaction Discord sends the app that posted the message (registered by its token).

        ``data`` is the "Message Component Data Structure" (with the button's ``id``, as
        .../components/reference#button shows it); ``message`` the message as it is now.

        Raises:
            ValueError: the message has no enabled button ``custom_id`` (a link button has
                none and a disabled one cannot be clicked), or no bot posted it.
        """
        button = find_button(message.get("components") or [], custom_id)
        if button is None:
            raise ValueError(f"message {message['id']} has no button {custom_id!r}")
        if button.get("disabled"):
            raise ValueError(f"button {custom_id!r} of message {message['id']} is disabled")
        bot = next((b for b in self.s.bots.values()
                    if b.user["id"] == message["author"]["id"]), None)
        if bot is None:
            raise ValueError(f"message {message['id']} was not posted by a bot")
        data = {"custom_id": custom_id, "component_type": BUTTON, "id": button["id"]}
        return self._new(bot, message["channel_id"], user, MESSAGE_COMPONENT, data,
                         message=message)

    def _new(self, bot: Bot, channel_id: str, user: Payload, kind: int, data: Payload,
             message: Payload | None = None) -> Payload:
        """An interaction payload of ``kind`` in ``channel_id`` by ``user``, registered."""
        channel = self.s.channel(channel_id)
        if channel is None:
            raise KeyError(channel_id)
        token = "standin-interaction-" + secrets.token_hex(8)
        payload: Payload = {
            "id": self.s.ids.next(), "application_id": bot.application["id"],
            "type": kind, "data": data, "token": token, "version": 1,
            "channel_id": channel_id, "channel": {k: v for k, v in channel.items()
                                                  if not k.startswith("_")},
            "app_permissions": p.ALL_PERMISSIONS, "locale": "en-US",
            "attachment_size_limit": 8 * 1024 * 1024, "entitlements": [],
            "authorizing_integration_owners": {}, "context": 0,
        }
        if message is not None:
            payload["message"] = copy.deepcopy(message)
        if "guild_id" in channel:
            payload["guild_id"] = channel["guild_id"]
            payload["member"] = (self.s.member(user["id"])
                                 | {"permissions": str(self.s.permissions_of(user["id"]))})
        else:
            payload["user"] = user
            payload["context"] = 1
        self.by_token[token] = {"payload": payload, "bot": bot, "original": None,
                                "callbacks": [], "followups": [],
                                "message_id": message["id"] if message else None,
                                "endpoint_answer": None}
        return payload

    def responses(self, token: str) -> list[Payload]:
        """Every message made for the interaction: original first, then follow-ups."""
        record = self.by_token[token]
        original = [self.s.by_id[record["original"]]] if record["original"] else []
        return original + [self.s.by_id[m] for m in record["followups"]]

    # ------------------------------------------------------------------ delivering

    async def deliver_http(self, endpoint: HttpEndpoint, payload: Payload) -> tuple[int, Any]:
        """POST ``payload`` to ``endpoint`` signed as Discord signs it, and treat a 200 JSON
        answer as Discord does: as the interaction response (``acknowledge``).

        Returns:
            The endpoint's HTTP status and its body (parsed JSON, else text), also kept as
            ``by_token[token]["endpoint_answer"]``.
        """
        body = json.dumps(payload).encode()
        headers = signed_headers(endpoint.signing_key, body)
        timeout = aiohttp.ClientTimeout(total=ENDPOINT_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http, \
                http.post(endpoint.url, data=body, headers=headers) as response:
            status, text = response.status, await response.text()
        try:
            answer: Any = json.loads(text)
        except ValueError:
            answer = text
        record = self.by_token[payload["token"]]
        record["endpoint_answer"] = (status, answer)
        self.s.changed()
        if status == 200 and isinstance(answer, dict) and answer.get("type") != PONG:
            await self.acknowledge(payload["token"], answer)
        return status, answer

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
        """Create Interaction Response: 200 with the interaction callback response when
        ``with_response`` is true (discord.py always asks), else 204."""
        from ._rest import _read_body, no_content

        record = self._record(request)
        if record is None or record["payload"]["id"] != request.match_info["iid"]:
            return self.s.rest.not_found(request, 10062, "interaction")
        body, files = await _read_body(request)
        response = await self.respond(record, body, files)
        wanted = request.query.get("with_response", "").lower() in ("1", "true")
        return response if response.status != 200 or wanted else no_content()

    async def acknowledge(self, token: str, body: Payload) -> web.Response:
        """What Discord does with the HTTP answer of an Interactions endpoint (PONG aside):
        ``body`` is the endpoint's interaction response, as it would be for the callback."""
        return await self.respond(self.by_token[token], body, [])

    async def respond(self, record: dict[str, Any], body: Payload,
                      files: list[tuple[str, bytes, str | None]]) -> web.Response:
        """One interaction response ("Interaction Callback Type"): 4 / 5 make a message, 6 / 7
        (components only) acknowledge / edit the clicked message. A second response is
        refused with 40060; a refused one does not count as a response."""
        from ._rest import error, json_response

        if record["callbacks"]:
            return error(400, 40060, "Interaction has already been acknowledged.")
        kind = body.get("type")
        component = record["payload"]["type"] == MESSAGE_COMPONENT
        if kind in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE):
            return await self._reply(record, body, files)
        if component and kind in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            return await self._update(record, body, files)
        allowed = (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE) + (
            (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE) if component else ())
        refused = FormError(("type",), "BASE_TYPE_CHOICES", f"Value must be one of {allowed}.")
        return json_response(refused.body, 400)

    async def _reply(self, record: dict[str, Any], body: Payload,
                     files: list[tuple[str, bytes, str | None]]) -> web.Response:
        """CHANNEL_MESSAGE_WITH_SOURCE (4) or DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE (5): a new
        message, the interaction's original response."""
        from ._rest import json_response

        kind, data = body["type"], body.get("data") or {}
        try:
            components = checked(data.get("components"), ("data", "components"))
        except FormError as exc:
            return json_response(exc.body, 400)
        record["callbacks"].append(body)
        self.s.changed()
        flags = int(data.get("flags") or 0) | (LOADING if kind == DEFERRED_CHANNEL_MESSAGE else 0)
        message = await self._message(record, str(data.get("content") or ""), flags, files,
                                      components)
        record["original"] = message["id"]
        return self._callback_response(record, kind, message, created=True)

    async def _update(self, record: dict[str, Any], body: Payload,
                      files: list[tuple[str, bytes, str | None]]) -> web.Response:
        """DEFERRED_UPDATE_MESSAGE (6): acknowledged, the clicked message is edited later
        through @original. UPDATE_MESSAGE (7): the clicked message is edited now (its fields
        as in Edit Message), MESSAGE_UPDATE dispatched."""
        from ._rest import apply_fields

        kind = body["type"]
        message = self.s.by_id[record["message_id"]]
        if kind == UPDATE_MESSAGE and (refused := apply_fields(
                self.s, message, body.get("data") or {}, files, path=("data",))) is not None:
            return refused
        record["callbacks"].append(body)
        record["original"] = message["id"]
        self.s.changed()
        if kind == UPDATE_MESSAGE:
            await self._dispatch_update(message)
        return self._callback_response(record, kind, message, created=kind == UPDATE_MESSAGE)

    def _callback_response(self, record: dict[str, Any], kind: int, message: Payload,
                           *, created: bool) -> web.Response:
        """The Interaction Callback Response Object: the resource's ``message`` only for
        types 4 and 7 (.../receiving-and-responding, "Interaction Callback Resource")."""
        from ._rest import json_response

        interaction = record["payload"]
        flags = int(message["flags"])
        callback: Payload = {"id": interaction["id"], "type": interaction["type"]}
        resource: Payload = {"type": kind}
        if created:
            callback |= {"response_message_id": message["id"],
                         "response_message_loading": bool(flags & LOADING),
                         "response_message_ephemeral": bool(flags & EPHEMERAL)}
        if kind in (CHANNEL_MESSAGE, UPDATE_MESSAGE):
            resource["message"] = message
        return json_response({"interaction": callback, "resource": resource})

    async def _dispatch_update(self, message: Payload) -> None:
        """MESSAGE_UPDATE for an edited message (not for ephemeral ones: nobody else sees
        them, and Discord sends no gateway event for them)."""
        if not int(message["flags"]) & EPHEMERAL:
            await self.s.dispatch("MESSAGE_UPDATE", message, message["channel_id"])

    async def _message(self, record: dict[str, Any], content: str, flags: int,
                       files: list[tuple[str, bytes, str | None]],
                       components: list[Payload]) -> Payload:
        interaction = record["payload"]
        channel = self.s.channel(interaction["channel_id"])
        assert channel is not None
        attachments = [self.s.store_file(channel["id"], n, d, t) for n, d, t in files]
        message = p.message(self.s.ids.next(), channel, record["bot"].user, content,
                            attachments=attachments)
        message["flags"] = flags
        message["components"] = components
        message["application_id"] = interaction["application_id"]
        message["webhook_id"] = interaction["application_id"]
        message["interaction_metadata"] = {
            "id": interaction["id"], "type": interaction["type"],
            "user": interaction.get("member", {}).get("user") or interaction.get("user"),
            "authorizing_integration_owners": {}}
        if record["message_id"] is not None:
            message["interaction_metadata"]["interacted_message_id"] = record["message_id"]
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
        """Edit Original Interaction Response (for a component answered with 6 or 7, the
        clicked message); MESSAGE_UPDATE is dispatched as for any edit."""
        from ._rest import apply_edit, json_response

        record = self._record(request)
        if record is None or record["original"] is None:
            return self.s.rest.not_found(request, 10015, "Webhook")
        message = self.s.by_id[record["original"]]
        if (refused := await apply_edit(self.s, message, request)) is not None:
            return refused
        message["flags"] = int(message["flags"]) & ~LOADING
        await self._dispatch_update(message)
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
        try:
            components = checked(body.get("components"))
        except FormError as exc:
            return json_response(exc.body, 400)
        message = await self._message(record, content, int(body.get("flags") or 0), files,
                                      components)
        record["followups"].append(message["id"])
        return json_response(message)
