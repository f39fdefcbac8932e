"""The whole system with the genuine discord.py bot on the local stand-in of Discord, shared by
the end-to-end tests: ``switchboard up`` (every actor its own process, a real nats-server) with
``DISCORD_TOKEN`` and the endpoints pointed at the stand-in; what the bot posted; the stored
per-user memory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
from discord_standin import DiscordStandIn
from system import RunningSystem, running_system

from protocol import Subjects

TASK = "write a python function that reverses a string and test it"
"""A SEQUENTIAL task the offline model has a recipe for (a file, its test, a commit)."""
SLOW_TIER_2: dict[int, list[Any]] = {
    1: ["offline/tier-1"],
    2: [{"name": "offline/tier-2", "params": {"delay_s": 0.6}}],
    3: ["offline/tier-3"],
    4: ["offline/tier-4"],
}
"""Tiers whose tier-2 model takes 0.6 s per call, so a run is still going when a test acts."""


@contextlib.asynccontextmanager
async def discord_system(nats_url: str, workdir: Path, standin: DiscordStandIn,
                         env: dict[str, str] | None = None, **topology: Any
                         ) -> AsyncIterator[RunningSystem]:
    """``switchboard up`` whose default bot logs in to ``standin`` (no debounce, quick status
    edits); yields once the bot identified on the stand-in's gateway.

    Args:
        env: more environment variables for ``switchboard up``.
        **topology: changes to the default topology (``write_topology``).
    """
    context = running_system(nats_url, workdir, extra_env={
        "DISCORD_TOKEN": standin.token, "DISCORD_API_BASE": standin.api_base,
        "DISCORD_GATEWAY_URL": standin.gateway_url, "SB_GATEWAY_DEBOUNCE_S": "0",
        "SB_GATEWAY_EDIT_INTERVAL_S": "0.2", **(env or {})}, **topology)
    system = await asyncio.to_thread(context.__enter__)
    try:
        await standin.wait_for(lambda: standin._gateway_server.identified.is_set(), timeout=60,
                               what="the bot identified on the gateway")
        yield system
    finally:
        await asyncio.to_thread(context.__exit__, None, None, None)


async def wait_until_tracked(standin: DiscordStandIn, message: dict[str, Any]) -> None:
    """Wait until the bot put its own 👍 👎 on its commit ``message``: from then on the gateway
    knows what the message is, so people's reactions on it are controls."""
    me = standin.bot.user["id"]
    await standin.wait_for(lambda: [r for r in standin.reactions
                                    if r.message_id == message["id"] and r.user_id == me
                                    and r.emoji == "👎"], timeout=30,
                           what="the bot's own 👍 👎 on its commit message")


def containing(standin: DiscordStandIn, channel: str, text: str) -> list[dict[str, Any]]:
    """The bot's messages in ``channel`` whose content contains ``text``."""
    return [m for m in standin.bot_messages(channel) if text in m["content"]]


async def user_memory(nats_url: str, key: str, subjects: Subjects | None = None) -> str:
    """The stored per-user memory under ``key`` (``actors.memory.user_key``) as JSON text;
    "" when there is none yet."""
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().key_value((subjects or Subjects()).users_bucket)
        return ((await kv.get(key)).value or b"").decode()
    except nats.js.errors.KeyNotFoundError:
        return ""
    finally:
        await nc.close()
