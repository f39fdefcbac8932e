"""The Discord Interactions HTTP endpoint (docs/design.md#gateways), for deployments without a
websocket:
Discord POSTs each interaction; the endpoint verifies its signature, answers PING with PONG,
answers quick commands at once (ephemerally) and defers ``/ask`` and ``/breakglass`` (type 5),
delivering the answer later through the interaction's webhook. A run's approval request
becomes a follow-up with Approve and Deny buttons, whose clicks (type 3) come back here
(docs/design.md#approvals).

Interaction and response types:
https://discord.com/developers/docs/interactions/receiving-and-responding.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.approvals import (
    custom_id,
    decided_text,
    decision_control,
    parse_custom_id,
    render_approval,
)
from gateway.bridge import Bridge
from gateway.commands import CommandError, command_session, model_text, status_text
from gateway.config import BotConfig
from gateway.errors import GatewayError, NotRunningError, SignatureError
from gateway.interactions._approvals import ShownApproval, ShownApprovals
from gateway.interactions._verify import MAX_AGE_S, load_public_key, verify
from gateway.interactions._webhook import InteractionWebhooks
from gateway.render import render_options, render_progress, render_reply, split_message
from gateway.services import BotServices
from protocol import (
    ApprovalRequest,
    ChatMessage,
    ConsolidatedOptions,
    Control,
    ControlAction,
    FileBlob,
    Outbound,
    Progress,
)

_log = logging.getLogger(__name__)

PING, APPLICATION_COMMAND, MESSAGE_COMPONENT = 1, 2, 3
PONG, CHANNEL_MESSAGE, DEFERRED, UPDATE_MESSAGE = 1, 4, 5, 7
ACTION_ROW, BUTTON, SUCCESS, DANGER = 1, 2, 3, 4
"""Component types and button styles (https://discord.com/developers/docs/interactions/
message-components)."""
EPHEMERAL = 1 << 6
PATH = "/interactions"

MANAGE_MESSAGES = 1 << 13
"""Discord's Manage Messages permission bit (https://discord.com/developers/docs/topics/
permissions)."""
MAX_ASKERS = 10_000
"""Sessions whose latest ``/ask`` asker the endpoint remembers (oldest forgotten first)."""
BotConfigSource = Callable[[], Awaitable[BotConfig]]
"""Reads the configuration of the bot the endpoint answers for (its profile, model overrides
and answer limits), once per request so that ``switchboard bots set`` applies at once.

Raises:
    GatewayError: it cannot be read (the request then goes out without it).
"""


@dataclass(eq=False)
class _Deferred:
    app_id: str
    token: str
    user_id: str
    pending: str | None = None
    flusher: asyncio.Task[None] | None = field(default=None, repr=False)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json"})


def _message(text: str, *, ephemeral: bool = True) -> web.Response:
    data: dict[str, Any] = {"content": text[:2000]}
    if ephemeral:
        data["flags"] = EPHEMERAL
    return _json({"type": CHANNEL_MESSAGE, "data": data})


class InteractionsEndpoint:
    """The aiohttp application answering ``POST /interactions``.

    Args:
        public_key: the application's public key, hex (``DISCORD_PUBLIC_KEY``).
        bridge: sends requests and controls to the actors (its outbox answers come to
            ``on_outbound``).
        webhooks: edits and follow-ups of deferred interactions.
        services: what ``/status``, ``/model`` and ``/breakglass`` use.
        edit_interval_s: at most one progress edit per interaction per this many seconds.
        max_age_s: oldest signature timestamp accepted.
        clock: Unix seconds now.
        bot_config: the answering bot's configuration (None: no profile, overrides or
            limits).

    Raises:
        SignatureError: ``public_key`` is not a valid key.
    """

    def __init__(self, public_key: str, bridge: Bridge, webhooks: InteractionWebhooks,
                 services: BotServices, *, edit_interval_s: float = 1.0,
                 max_age_s: float = MAX_AGE_S, clock: Any = time.time,
                 bot_config: BotConfigSource | None = None) -> None:
        self.key = load_public_key(public_key)
        self.bot_config = bot_config
        self.bridge = bridge
        self.webhooks = webhooks
        self.services = services
        self.edit_interval_s = edit_interval_s
        self.max_age_s = max_age_s
        self.clock = clock
        self.deferred: dict[str, _Deferred] = {}
        self.askers: collections.OrderedDict[str, str] = collections.OrderedDict()
        """session → who sent its latest ``/ask`` here (the run ``/stop`` is about)."""
        self.approvals = ShownApprovals(services.messages)
        """The approval requests shown here (in the gateway's messages bucket too)."""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post(PATH, self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(self.key, request.headers.get("X-Signature-Ed25519"),
                   request.headers.get("X-Signature-Timestamp"), body, now=self.clock(),
                   max_age_s=self.max_age_s)
        except SignatureError as exc:
            _log.warning("interaction refused (401): %s", exc)
            return web.Response(status=401, text="invalid request signature")
        try:
            interaction = json.loads(body)
            kind = interaction["type"]
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400, text="malformed interaction")
        if kind == PING:
            return _json({"type": PONG})
        handlers = {APPLICATION_COMMAND: (self._command, "command"),
                    MESSAGE_COMPONENT: (self._component, "component")}
        if kind not in handlers:
            return _message("⚠️ This kind of interaction is not supported.")
        answer, what = handlers[kind]
        try:
            return await answer(interaction)
        except CommandError as exc:
            return _message(str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            _log.warning("malformed %s interaction: %r", what, exc)
            return web.Response(status=400, text="malformed interaction")

    async def _command(self, interaction: dict[str, Any]) -> web.Response:
        data = interaction["data"]
        name = data["name"]
        options = {o["name"]: o.get("value") for o in data.get("options") or []}
        user = (interaction.get("member") or {}).get("user") or interaction.get("user") or {}
        user_id = str(user.get("id", ""))
        channel = interaction.get("channel") or {}
        channel_id = str(interaction.get("channel_id") or channel.get("id", ""))
        session = command_session(channel_id, user_id, channel.get("type"))
        match name:
            case "status":
                return _message(await status_text(self.services, session))
            case "model":
                tier = options.get("tier")
                return _message(await model_text(self.services, session,
                                                 int(tier) if tier is not None else None))
            case "stop":
                if not await self._may_stop(interaction, session, user_id):
                    raise CommandError("🔒 Only the person who asked, the bot's admins or "
                                       "members who manage messages here can stop this run; "
                                       "nothing was changed.")
                await self._control(Control(session=session, action=ControlAction.ABORT,
                                            user_id=user_id, message_id=str(interaction["id"]),
                                            origin=self.bridge.origin))
                return _message(f"⏹️ Stop requested by <@{user_id}>, halting at the next turn.",
                                ephemeral=False)
            case "ask" | "breakglass":
                breakglass = name == "breakglass"
                if breakglass and user_id not in self.services.breakglass_users:
                    raise CommandError("🔒 /breakglass is only for the users the operator "
                                       "allowed.")
                return await self._defer(interaction, str(options.get("question") or ""),
                                         user, channel_id, session, breakglass=breakglass)
        raise CommandError(f"⚠️ Unknown command /{name}.")

    async def _component(self, interaction: dict[str, Any]) -> web.Response:
        """A click on an approval's Approve or Deny: decide it for the person, when they may
        (the asker, the bot's admins, a member with Manage Messages)."""
        parsed = parse_custom_id(str(interaction["data"]["custom_id"]))
        if parsed is None:
            raise CommandError("⚠️ This button is not one of mine.")
        decision, role, approval_id = parsed
        approval = await self.approvals.get(approval_id)
        if approval is None or approval.role != role:
            raise CommandError("⌛ I no longer know this approval; nothing was changed.")
        user = (interaction.get("member") or {}).get("user") or interaction.get("user") or {}
        user_id = str(user.get("id", ""))
        if not await self._may_decide(interaction, approval.user_id, user_id):
            raise CommandError("🔒 Only the person who asked, the bot's admins or members who "
                               "manage messages here can decide this approval; nothing was "
                               "changed.")
        await self._control(decision_control(
            decision, session=approval.session, role=role, approval_id=approval_id,
            user_id=user_id, request_id=approval.request_id))
        await self.approvals.forget(approval_id)
        content = str((interaction.get("message") or {}).get("content") or "")
        _log.info("session %s: approval %s %s by user %s", approval.session, approval_id,
                  decision, user_id)
        return _json({"type": UPDATE_MESSAGE, "data": {
            "content": f"{content}\n{decided_text(decision, user_id)}"[:2000],
            "components": []}})

    async def _may_decide(self, interaction: dict[str, Any], asker: str, user_id: str
                          ) -> bool:
        """Whether ``user_id`` may control what ``asker`` asked for: they asked, they have
        Manage Messages in the channel (the interaction's resolved ``member.permissions``), or
        they are one of the bot's admins."""
        if asker and asker == user_id:
            return True
        permissions = str((interaction.get("member") or {}).get("permissions") or "0")
        if permissions.isdigit() and int(permissions) & MANAGE_MESSAGES:
            return True
        config = await self.bot_config() if self.bot_config is not None else None
        return config is not None and user_id in config.admins

    async def _may_stop(self, interaction: dict[str, Any], session: str, user_id: str) -> bool:
        """Whether ``user_id`` may stop ``session``'s run: the person whose ``/ask`` started
        it, one of the bot's admins, or a member with Manage Messages in the channel (the
        interaction's resolved ``member.permissions``, https://discord.com/developers/docs/
        interactions/receiving-and-responding, "Interaction Object"); any run no one here
        asked for (a person's own conversation, one started elsewhere) as before."""
        owner = self.askers.get(session, "")
        return not owner or await self._may_decide(interaction, owner, user_id)

    def _asked(self, session: str, user_id: str) -> None:
        self.askers[session] = user_id
        self.askers.move_to_end(session)
        while len(self.askers) > MAX_ASKERS:
            self.askers.popitem(last=False)

    async def _control(self, control: Control) -> None:
        try:
            await self.bridge.control(control)
        except NotRunningError as exc:
            raise CommandError(f"⚠️ {exc}") from exc

    async def _defer(self, interaction: dict[str, Any], question: str, user: dict[str, Any],
                     channel_id: str, session: str, *, breakglass: bool) -> web.Response:
        if not question.strip():
            raise CommandError("👋 Ask a question: `/ask question:...`")
        interaction_id = str(interaction["id"])
        request = await self._stamped(ChatMessage(
            message_id=interaction_id, session=session,
            origin=self.bridge.origin, user_id=str(user.get("id", "")),
            user_name=str(user.get("global_name") or user.get("username") or ""),
            text=question, channel_id=channel_id, guild_id=str(interaction.get("guild_id", "")),
            parent_channel_id=str((interaction.get("channel") or {}).get("parent_id") or ""),
            breakglass=breakglass, sent_at=self.clock(), addressed=True))
        limiter = self.services.limiter
        if limiter is not None:
            refusal = await limiter.admit(request.user_id, request.guild_id)
            if refusal is not None:
                return _message(refusal.text)
        try:
            await self.bridge.send(request)
        except NotRunningError as exc:
            raise CommandError("⚠️ Switchboard is not running right now, so I cannot "
                               "answer. Try again later.") from exc
        self._asked(session, request.user_id)
        self.deferred[interaction_id] = _Deferred(str(interaction["application_id"]),
                                                  str(interaction["token"]), request.user_id)
        _log.info("interaction %s deferred (session %s)", interaction_id, request.session)
        return _json({"type": DEFERRED})

    async def _ask_approval(self, deferred: _Deferred, request: ApprovalRequest) -> None:
        """Post the approval request as a follow-up with Approve and Deny; the interaction
        stays deferred until the run's answer."""
        await self.approvals.keep(request.approval_id, ShownApproval(
            request.session, request.role, request.user_id or deferred.user_id,
            request.in_reply_to))
        buttons = [{"type": BUTTON, "style": style, "label": label,
                    "custom_id": custom_id(action, request.role, request.approval_id)}
                   for action, style, label in ((ControlAction.APPROVE, SUCCESS, "Approve"),
                                                (ControlAction.DENY, DANGER, "Deny"))]
        try:
            await self.webhooks.follow_up(
                deferred.app_id, deferred.token, render_approval(request)[:2000],
                components=[{"type": ACTION_ROW, "components": buttons}])
        except GatewayError as exc:
            _log.warning("session %s: approval %s not shown: %s", request.session,
                         request.approval_id, exc)

    async def _stamped(self, request: ChatMessage) -> ChatMessage:
        """``request`` with the answering bot's profile, overrides and limits, when known.

        ``bot`` stays empty: per-user memory is keyed by the endpoint's origin, one per
        deployment and the same across restarts."""
        if self.bot_config is None:
            return request
        try:
            config = await self.bot_config()
        except GatewayError as exc:
            _log.warning("interaction %s: bot configuration not applied: %s",
                         request.message_id, exc)
            return request
        return config.stamp(request)

    async def _flush(self, deferred: _Deferred) -> None:
        """Show the latest progress, then at most one edit per ``edit_interval_s``."""
        while deferred.pending is not None:
            text, deferred.pending = deferred.pending, None
            try:
                await self.webhooks.edit_original(deferred.app_id, deferred.token, text)
            except GatewayError as exc:
                _log.warning("interaction progress not shown: %s", exc)
            await asyncio.sleep(self.edit_interval_s)  # pacing edits, not a wait-for

    async def on_outbound(self, outbound: Outbound) -> None:
        """Deliver what the actors sent for a deferred interaction through its webhook."""
        deferred = self.deferred.get(outbound.in_reply_to)
        if deferred is None:
            _log.warning("outbound for unknown interaction %s dropped", outbound.in_reply_to)
            return
        if isinstance(outbound, ApprovalRequest):
            await self._ask_approval(deferred, outbound)
            return
        if isinstance(outbound, Progress):
            deferred.pending = render_progress(outbound)[:2000]
            if deferred.flusher is None or deferred.flusher.done():
                deferred.flusher = asyncio.create_task(self._flush(deferred),
                                                       name=f"interaction:{outbound.in_reply_to}")
            return
        del self.deferred[outbound.in_reply_to]
        if deferred.flusher is not None:
            deferred.flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deferred.flusher
        files: tuple[FileBlob, ...] = ()
        if isinstance(outbound, ConsolidatedOptions):
            text, usage = render_options(outbound), outbound.usage
        else:
            text, files, usage = render_reply(outbound), outbound.files, outbound.usage
        if self.services.limiter is not None:
            await self.services.limiter.add_tokens(
                deferred.user_id, usage.prompt_tokens + usage.completion_tokens)
        chunks = split_message(text) or ["(empty answer)"]
        await self.webhooks.edit_original(deferred.app_id, deferred.token, chunks[0])
        for index, chunk in enumerate(chunks[1:], start=1):
            last = index == len(chunks) - 1
            await self.webhooks.follow_up(deferred.app_id, deferred.token, chunk,
                                          files[:10] if last else ())
        if files and len(chunks) == 1:
            await self.webhooks.follow_up(deferred.app_id, deferred.token, None, files[:10])
