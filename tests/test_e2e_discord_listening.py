"""A listening channel end to end: a bot added with ``switchboard bots add --listen-channel``,
the whole system behind it (`switchboard up`, every actor its own process, a real
nats-server), the genuine discord.py client on the local stand-in of Discord.

Every message of the channel goes to the router as not addressed to the bot; the router's model
decides whether to answer (the offline model leaves a message that starts by mentioning
someone else to that person), and a "no answer" posts nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats
import pytest
from discord_standin import DiscordStandIn
from discord_standin.fixtures import discord_standin  # noqa: F401 - fixture
from nats.aio.msg import Msg
from system import REPO, running_system
from waiting import eventually

from protocol import ExecutionEvent, Subjects, event_decoder

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


async def test_a_listening_channel_is_heard_and_only_what_needs_an_answer_is_answered(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    listening = s.second_channel_id
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SB_", "DISCORD_"))}
    env.update(NATS_URL=nats_url, SB_DATA_DIR=str(tmp_path / "data"),
               LISTENER_TOKEN=s.token)
    added = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "switchboard.cli", "bots", "add", "listener",
         "--token-env", "LISTENER_TOKEN", "--listen-channel", listening],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert added.returncode == 0, added.stdout + added.stderr

    decided: dict[str, ExecutionEvent] = {}

    async def classified(msg: Msg) -> None:
        event = event_decoder.decode(msg.data)
        decided[event.session] = event

    nc = await nats.connect(nats_url)
    await nc.subscribe(Subjects().event("*", "classified"), cb=classified)
    await nc.flush(timeout=5)
    context = running_system(nats_url, tmp_path, extra_env={
        "DISCORD_API_BASE": s.api_base, "DISCORD_GATEWAY_URL": s.gateway_url,
        "SB_GATEWAY_DEBOUNCE_S": "0"})
    system = await asyncio.to_thread(context.__enter__)
    try:
        await s.wait_for(lambda: s._gateway_server.identified.is_set(), timeout=60,
                         what="the stored bot identified on the gateway")
        bob = s.add_user("bob")
        alice = s.alice["id"]
        aside = await s.post_user_message(listening, alice, f"<@{bob['id']}> lunch at noon?",
                                          mention_bot=False)
        question = await s.post_user_message(listening, alice, "what is a monad?",
                                             mention_bot=False)

        def answer_to(message: dict[str, Any]) -> list[dict[str, Any]]:
            return [m for m in s.bot_messages(listening)
                    if (m.get("message_reference") or {}).get("message_id") == message["id"]
                    and "SB_MODEL" in m["content"]]

        [answer] = await s.wait_for(lambda: answer_to(question), timeout=90,
                                    what="the answer to the question nobody else was asked")
        assert "offline model" in answer["content"]
        sessions = {f"discord-{m['id']}" for m in (aside, question)}
        await eventually(lambda: sessions <= decided.keys(), within_s=60,
                         what="the router's decisions on both messages")
        assert decided[f"discord-{aside['id']}"].detail.startswith("no answer")
        assert not decided[f"discord-{question['id']}"].detail.startswith("no answer")
        assert [m["id"] for m in s.bot_messages(listening)] == [answer["id"]]
        assert system.proc.poll() is None
    finally:
        await nc.close()
        await asyncio.to_thread(context.__exit__, None, None, None)
