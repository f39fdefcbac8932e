"""What the slash commands answer (docs/design.md#gateways), shared by the websocket bots
(``gateway.discord``) and the Interactions HTTP endpoint (``gateway.interactions``). No Discord
I/O here: each function returns the text to send."""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
import nats.errors
import nats.js.errors

from core.errors import BrokerError, StoreConflictError
from gateway.errors import CommandError, StoreError
from gateway.kv import KV_TIMEOUT_S
from gateway.services import BotServices
from protocol import RunState, SessionId, run_decoder

_log = logging.getLogger(__name__)

TIERS = {1: "cheap chat", 2: "tool-capable", 3: "strong code", 4: "critical decisions"}
"""Model tiers (docs/design.md#the-agentic-loop)."""

OWN_SESSION_CHANNEL_TYPES = frozenset({1, 10, 11, 12})
"""Channel types that are one conversation: DM 1, announcement thread 10, public thread 11,
private thread 12 (https://discord.com/developers/docs/resources/channel#channel-object-channel-types)."""


def command_session(channel_id: int | str, user_id: int | str, channel_type: int | None) -> str:
    """The session a slash command is about: a thread's or a DM's own (``discord-<its id>``,
    as for a message there), else the person's own in that channel
    (``discord-<channel id>-<user id>``), so that people using ``/ask`` side by side in a
    channel do not share a workspace, run lock, history, confidence or ``/model`` tier.

    Args:
        channel_id: where the command was used.
        user_id: who used it.
        channel_type: Discord's channel type (None when unknown: a channel).
    """
    if channel_type in OWN_SESSION_CHANNEL_TYPES:
        return str(SessionId("discord", str(channel_id)))
    return str(SessionId("discord", f"{channel_id}-{user_id}"))


async def run_state(services: BotServices, session: str) -> RunState | None:
    """The run in progress for ``session`` (None when nothing runs).

    Raises:
        CommandError: the runs bucket did not answer.
    """
    try:
        kv = await services.runs()
        if kv is None:
            return None
        async with asyncio.timeout(KV_TIMEOUT_S):
            entry = await kv.get(session)
    except nats.js.errors.KeyNotFoundError:
        return None
    except (StoreError, TimeoutError, nats.errors.Error) as exc:
        msg = f"⚠️ I could not read the run state: {exc or type(exc).__name__}"
        raise CommandError(msg) from exc
    if not entry.value:
        return None
    try:
        return run_decoder.decode(entry.value)
    except msgspec.DecodeError:
        _log.error("session %s: unreadable run state", session)
        return None


async def status_text(services: BotServices, session: str) -> str:
    """``/status``: what runs in this conversation — turn, model, confidence."""
    state = await run_state(services, session)
    if state is None or state.status == "done":
        return "💤 Nothing is running in this conversation."
    elapsed = time.time() - state.started_at if state.started_at else 0.0
    turn = f"turn {state.turn}/{state.max_turns}" if state.max_turns else f"turn {state.turn}"
    return (f"⚙️ **{state.role}** is {state.status}: {turn}, model `{state.model or '?'}`, "
            f"confidence {state.confidence}%, for {elapsed:.0f} s.")


async def model_text(services: BotServices, session: str, tier: int | None) -> str:
    """``/model``: show this conversation's model tier, or set it (1-4).

    Raises:
        CommandError: the tier is out of range or the session store failed.
    """
    if services.sessions is None:
        msg = "⚠️ Model tiers cannot be changed here (no session store)."
        raise CommandError(msg)
    if tier is not None and tier not in TIERS:
        msg = f"⚠️ Pick a tier from 1 to 4: {_tiers()}."
        raise CommandError(msg)
    try:
        if tier is None:
            current = (await services.sessions.get(session)).tier
        else:
            def choose(state: object) -> None:
                state.tier = tier  # type: ignore[attr-defined]

            current = (await services.sessions.update(session, choose)).tier
    except (BrokerError, StoreConflictError) as exc:
        msg = f"⚠️ The session store did not answer: {exc}"
        raise CommandError(msg) from exc
    if tier is not None:
        return f"✅ This conversation now uses tier {tier} ({TIERS[tier]})."
    if not current:
        return f"🧠 Each role picks its own tier here. Set one with `/model tier:N` ({_tiers()})."
    return f"🧠 This conversation uses tier {current} ({TIERS[current]})."


def _tiers() -> str:
    return ", ".join(f"{n} {name}" for n, name in TIERS.items())
