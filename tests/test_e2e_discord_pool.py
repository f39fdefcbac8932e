"""The whole system with two Discord bots at once: `switchboard up` with
DISCORD_TOKEN runs the default bot, a second bot is added to the bots KV bucket, both answer
through the offline model, then the second is reconfigured by a KV change mid-test (a channel
allowlist, applied without a restart). Every actor is its own process on a real nats-server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from discord_standin import DiscordStandIn
from discord_standin.fixtures import discord_standin  # noqa: F401 - fixture
from system import running_system
from waiting import eventually

from gateway.config import BotConfig
from gateway.pool import BotStore
from protocol import Subjects
from runtime.bus import connect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


async def test_two_bots_answer_and_one_is_reconfigured_from_kv(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    second = s.add_bot("Second")
    context = running_system(nats_url, tmp_path, extra_env={
        "DISCORD_TOKEN": s.token, "DISCORD_API_BASE": s.api_base,
        "DISCORD_GATEWAY_URL": s.gateway_url, "SB_GATEWAY_DEBOUNCE_S": "0.2",
        "SB_GATEWAY_GUILD_READY_TIMEOUT_S": "0.2",
    })
    system = await asyncio.to_thread(context.__enter__)
    nc = await connect(nats_url, name="test/bots", reconnect=False)
    try:
        assert system.wait_for_output("started gateway", 5)
        store = await BotStore.open(nc.jetstream(), Subjects("sb"))
        await store.put(BotConfig(name="second", token=second.token))

        async def applied(config: BotConfig) -> bool:
            status = await store.status(config.name)
            return status is not None and status.applied == config.fingerprint()

        await eventually(lambda: applied(BotConfig(name="second", token=second.token)),
                         within_s=60, what="the second bot running")
        await s.wait_for(lambda: len(s._gateway_server.sessions) >= 2, timeout=60,
                         what="both bots identified")

        first_q = await s.post_user_message(s.channel_id, s.alice["id"], "hello first")
        second_q = await s.post_user_message(s.channel_id, s.alice["id"], "hello second",
                                             bot=second)

        def answer_to(message_id: str, bot: object) -> list[dict[str, object]]:
            return [m for m in s.bot_messages(bot=bot)  # type: ignore[arg-type]
                    if m.get("message_reference", {}).get("message_id") == message_id
                    and "offline model" in str(m["content"])]

        await s.wait_for(lambda: answer_to(first_q["id"], s.bot), timeout=90,
                         what="the first bot's answer")
        await s.wait_for(lambda: answer_to(second_q["id"], second), timeout=90,
                         what="the second bot's answer")

        # Reconfigure the second bot: only the second channel, applied without a restart.
        limited = BotConfig(name="second", token=second.token, channels=(s.second_channel_id,))
        sessions_before = len(s._gateway_server.sessions)
        await store.put(limited)
        await eventually(lambda: applied(limited), within_s=30, what="the allowlist applied")
        ignored = await s.post_user_message(s.channel_id, s.alice["id"], "in general",
                                            bot=second)
        allowed = await s.post_user_message(s.second_channel_id, s.alice["id"], "in random",
                                            bot=second)
        await s.wait_for(lambda: answer_to(allowed["id"], second), timeout=90,
                         what="the answer in the allowed channel")
        assert not answer_to(ignored["id"], second)
        assert len(s._gateway_server.sessions) == sessions_before, "no reconnect"
    finally:
        await nc.close()
        await asyncio.to_thread(context.__exit__, None, None, None)
