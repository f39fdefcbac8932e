"""Limits, files in and Discord's 429 during streamed edits,
through discord.py and the stand-in on a real nats-server."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import nats
import pytest
from discord_standin import DiscordStandIn
from discord_standin.fake_actors import FakeActors, actors  # noqa: F401 - fixture
from discord_standin.fixtures import (  # noqa: F401 - fixtures
    discord_standin,
    limits_kv,
    running_bot,
)
from nats.js.kv import KeyValue

from artifacts import open_artifact_store
from core.config import Settings, load_topology
from gateway.config import GatewaySettings
from gateway.discord import BotServices
from gateway.limits import Limiter, when
from protocol import Usage

TIMEOUT_S = 20.0


def _texts(s: DiscordStandIn) -> list[str]:
    return [m["content"] for m in s.bot_messages(s.channel_id)]


async def test_user_and_guild_rate_limits_and_daily_tokens(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors,  # noqa: F811
        limits_kv: KeyValue) -> None:  # noqa: F811
    s = discord_standin
    bob = s.add_user("bob")
    settings = GatewaySettings(debounce_s=0, user_rate=2, guild_rate=3, rate_window_s=3600,
                               daily_tokens=100)
    services = BotServices(limiter=Limiter(limits_kv, settings))
    async with running_bot(nats_url, s, gateway=settings, services=services):
        for n in range(2):
            await s.post_user_message(s.channel_id, s.alice["id"], f"alice {n}")
            await actors.reply(await actors.next(), f"answer {n}", usage=Usage(
                prompt_tokens=20, completion_tokens=10))
        await s.post_user_message(s.channel_id, s.alice["id"], "alice again")
        refusal = await s.wait_for(lambda: [t for t in _texts(s) if "requests" in t],
                                   timeout=TIMEOUT_S)
        assert "You have sent 2 requests" in refusal[0] and "Try again in" in refusal[0]

        await s.post_user_message(s.channel_id, bob["id"], "bob 1")
        await actors.reply(await actors.next(), "for bob", usage=Usage(prompt_tokens=50))
        await s.post_user_message(s.channel_id, bob["id"], "bob 2")
        guild = await s.wait_for(lambda: [t for t in _texts(s) if "This server" in t],
                                 timeout=TIMEOUT_S)
        assert "3 requests" in guild[0] and "Try again in" in guild[0]
        assert actors.inbox.empty()

    limiter = Limiter(limits_kv, settings)
    assert await limiter.tokens_today(s.alice["id"]) == 60
    assert await limiter.tokens_today(bob["id"]) == 50
    await limiter.add_tokens(bob["id"], 60)
    refused = await Limiter(limits_kv, settings.model_copy(update={"user_rate": 0})).admit(
        bob["id"])
    assert refused is not None and "model tokens for today" in refused.text


async def test_limits_tell_when_to_try_again(limits_kv: KeyValue) -> None:  # noqa: F811
    now = datetime(2026, 11, 21, 22, 30, tzinfo=UTC).timestamp()
    limiter = Limiter(limits_kv, GatewaySettings(daily_tokens=10, rate_window_s=60),
                      clock=lambda: now)
    await limiter.add_tokens("u1", 10)
    refusal = await limiter.admit("u1")
    assert refusal is not None and refusal.retry_after_s == pytest.approx(5400)
    assert refusal.text.endswith("Try again in 1 h 30 min.")
    assert (when(0.2), when(42), when(600)) == ("in 1 s", "in 42 s", "in 10 min")


async def test_attachments_are_stored_before_the_request_and_oversize_refused(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors,  # noqa: F811
        tmp_path: object) -> None:
    s = discord_standin
    nc = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    try:
        store = await open_artifact_store(nc.jetstream(), Settings(),
                                          load_topology().model_copy(update={"prefix": "sb"}))
        settings = GatewaySettings(debounce_s=0, attachment_max_bytes=1000)
        async with running_bot(nats_url, s, gateway=settings,
                               services=BotServices(artifacts=store)):
            await s.post_user_message(s.channel_id, s.alice["id"], "too big",
                                      files={"huge.bin": b"x" * 2000})
            refusal = await s.wait_for(lambda: [t for t in _texts(s) if "📎" in t],
                                       timeout=TIMEOUT_S)
            assert "`huge.bin`" in refusal[0] and "Nothing was run" in refusal[0]

            data = b"name,qty\nbolt,3\n"
            await s.post_user_message(s.channel_id, s.alice["id"], "sum the qty column",
                                      files={"../../parts.csv": data})
            request = await actors.next()
            assert request.text == "sum the qty column"
            assert [a.name for a in request.attachments] == ["../../parts.csv"]
            assert [a.path for a in request.attachments] == ["parts.csv"]
            assert await store.get(request.session, "parts.csv") == data
            assert actors.inbox.empty()
    finally:
        await nc.close()


async def test_a_429_on_a_streamed_edit_is_waited_out(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    async with running_bot(nats_url, s, edit_interval_s=0.05):
        await s.post_user_message(s.channel_id, s.alice["id"], "stream please")
        request = await actors.next()
        await actors.progress(request, "stream", text="Hel")
        [status] = await s.wait_for(lambda: s.bot_messages(s.channel_id), timeout=TIMEOUT_S)
        s.rate_limit_next("PATCH", f"/messages/{status['id']}", retry_after=0.5)
        started = time.monotonic()
        await actors.progress(request, "stream", text="Hello")
        await actors.progress(request, "stream", text="Hello, world")
        await s.wait_for(lambda: s.edits and s.edits[-1].content == "Hello, world",
                         timeout=TIMEOUT_S, what="the edit after the 429")
        assert s.rate_limited == [f"PATCH /api/v10/channels/{s.channel_id}/messages/"
                                  f"{status['id']}"]
        assert time.monotonic() - started >= 0.5
        await actors.reply(request, "Hello, world!")
        await s.wait_for(lambda: s.edits[-1].content == "Hello, world!", timeout=TIMEOUT_S)
        assert len(s.bot_messages(s.channel_id)) == 1
