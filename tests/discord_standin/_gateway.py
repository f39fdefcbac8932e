"""The stand-in's gateway: Discord gateway v10 over a websocket, plain-text JSON frames.

Opcodes and events from https://discord.com/developers/docs/topics/gateway and
.../topics/opcodes-and-status-codes: HELLO (10) → IDENTIFY (2) → READY + GUILD_CREATE;
HEARTBEAT (1) → HEARTBEAT_ACK (11); RESUME (6) replays missed events then RESUMED; RECONNECT (7)
asks the client to resume; INVALID_SESSION (9) when a session is unknown. The ``compress``
query parameter is ignored: discord.py always accepts uncompressed text frames.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from ._payloads import Payload

if TYPE_CHECKING:
    from ._records import Bot

_log = logging.getLogger(__name__)

DISPATCH, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, INVALID_SESSION, HELLO, HEARTBEAT_ACK = (
    0, 1, 2, 6, 7, 9, 10, 11
)
QUIET_OPS = frozenset({3, 4, 8})
"""Presence update, voice state update, request guild members: accepted and ignored."""
REPLAY_BUFFER = 1000
SEND_TIMEOUT_S = 5.0


@dataclass
class Session:
    """One gateway session of one bot; it outlives a websocket so a client can resume."""

    bot: Bot
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    seq: int = 0
    ws: web.WebSocketResponse | None = None
    sent: deque[Payload] = field(default_factory=lambda: deque(maxlen=REPLAY_BUFFER))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def dispatch(self, event: str, data: Payload) -> None:
        """Send (or buffer, while disconnected) one DISPATCH event."""
        async with self.lock:
            self.seq += 1
            payload = {"op": DISPATCH, "t": event, "s": self.seq, "d": data}
            self.sent.append(payload)
            await self._send(payload)

    async def _send(self, payload: Payload) -> None:
        if self.ws is None or self.ws.closed:
            return
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await self.ws.send_str(json.dumps(payload))
        except (ConnectionError, TimeoutError) as exc:
            _log.debug("stand-in: send to %s failed: %s", self.bot.user["username"], exc)

    async def replay_after(self, seq: int) -> None:
        async with self.lock:
            for payload in list(self.sent):
                if payload["s"] > seq:
                    await self._send(payload)


class Gateway:
    """Serves the websocket; ``on_identify`` builds READY's guilds for a bot.

    Args:
        url: the gateway URL clients connect to (sent back as ``resume_gateway_url``).
        bots_by_token: known bots.
        guild_payloads: returns the GUILD_CREATE payloads a bot sees.
        record_op: records opcodes the stand-in does not handle.
    """

    def __init__(self, url: str, bots_by_token: dict[str, Bot],
                 guild_payloads: Callable[[Bot], list[Payload]],
                 record_op: Callable[[str], None]) -> None:
        self.url = url
        self.heartbeat_interval_ms = 41_250
        self._bots = bots_by_token
        self._guilds = guild_payloads
        self._record_op = record_op
        self.sessions: dict[str, Session] = {}
        self.sockets: set[web.WebSocketResponse] = set()
        self.identified = asyncio.Event()

    def sessions_of(self, bot: Bot) -> list[Session]:
        return [s for s in self.sessions.values() if s.bot is bot]

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=1 << 22)
        await ws.prepare(request)
        self.sockets.add(ws)
        session: Session | None = None
        try:
            await ws.send_str(json.dumps(
                {"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}))
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    break
                session = await self._on_frame(ws, json.loads(frame.data), session)
        finally:
            self.sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
        return ws

    async def _on_frame(self, ws: web.WebSocketResponse, payload: Payload,
                        session: Session | None) -> Session | None:
        op, data = payload.get("op"), payload.get("d")
        if op == HEARTBEAT:
            await ws.send_str(json.dumps({"op": HEARTBEAT_ACK}))
        elif op == IDENTIFY:
            return await self._identify(ws, data or {})
        elif op == RESUME:
            return await self._resume(ws, data or {})
        elif op not in QUIET_OPS:
            self._record_op(f"gateway op {op}")
        return session

    async def _identify(self, ws: web.WebSocketResponse, data: Payload) -> Session | None:
        bot = self._bots.get(str(data.get("token", "")).removeprefix("Bot "))
        if bot is None:
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        session = Session(bot=bot, ws=ws)
        self.sessions[session.session_id] = session
        guilds = self._guilds(bot)
        await session.dispatch("READY", {
            "v": 10, "user": bot.user, "session_id": session.session_id,
            "resume_gateway_url": self.url, "private_channels": [], "relationships": [],
            "guilds": [{"id": g["id"], "unavailable": True} for g in guilds],
            "application": {"id": bot.application["id"], "flags": 0},
        })
        for guild in guilds:
            await session.dispatch("GUILD_CREATE", guild)
        self.identified.set()
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: Payload) -> Session | None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or session.bot.token != str(data.get("token", "")):
            await ws.send_str(json.dumps({"op": INVALID_SESSION, "d": False}))
            return None
        session.ws = ws
        await session.replay_after(int(data.get("seq") or 0))
        await session.dispatch("RESUMED", {})
        return session

    async def reconnect_all(self) -> None:
        """Ask every connected client to reconnect and resume (op 7)."""
        for session in list(self.sessions.values()):
            if session.ws is not None and not session.ws.closed:
                await session.ws.send_str(json.dumps({"op": RECONNECT, "d": None}))

    async def close(self) -> None:
        for ws in list(self.sockets):
            await ws.close(code=1001, message=b"stand-in stopping")
