"""The whole system behind Discord: `switchboard up` with DISCORD_TOKEN starts the genuine
discord.py bot in its own process, pointed at the local stand-in of Discord's gateway and REST
API; every actor runs as its own process on a real nats-server."""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from discord_standin import DiscordStandIn
from discord_standin.fixtures import discord_standin  # noqa: F401 - fixture
from system import RunningSystem, running_system

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


async def _start(nats_url: str, workdir: Path, standin: DiscordStandIn
                 ) -> tuple[RunningSystem, AbstractContextManager[RunningSystem]]:
    context = running_system(nats_url, workdir, extra_env={
        "DISCORD_TOKEN": standin.token,
        "DISCORD_API_BASE": standin.api_base,
        "DISCORD_GATEWAY_URL": standin.gateway_url,
    })
    system = await asyncio.to_thread(context.__enter__)
    return system, context


async def test_mention_and_sequential_work_are_answered_through_rest(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    system, context = await _start(nats_url, tmp_path, s)
    try:
        assert system.wait_for_output("started gateway", 5)
        await s.wait_for(lambda: s._gateway_server.identified.is_set(), timeout=60,
                         what="the bot identified on the gateway")
        hello = await s.post_user_message(s.channel_id, s.alice["id"], "hello")
        answers = await s.wait_for(
            lambda: [m for m in s.bot_messages(s.channel_id) if "SB_MODEL" in m["content"]],
            timeout=60, what="the whole answer to the mention")
        assert "offline model" in answers[-1]["content"]
        assert answers[-1].get("message_reference", {}).get("message_id") == hello["id"]

        task = await s.post_user_message(
            s.channel_id, s.alice["id"],
            "write a python function that reverses a string and test it")
        thread = await s.wait_for(lambda: s.threads_from(task["id"]), timeout=60,
                                  what="a thread for the SEQUENTIAL work")
        final = await s.wait_for(
            lambda: [m for m in s.bot_messages(thread["id"]) if "passed" in m["content"]],
            timeout=120, what="the final answer in the thread")
        files = s.attachment_bytes(final[-1])
        assert "reverse_string.py" in files and b"def reverse_string" in files[
            "reverse_string.py"]
        assert any(e.channel_id == thread["id"] for e in s.edits), "status was edited"
    finally:
        await asyncio.to_thread(context.__exit__, None, None, None)
