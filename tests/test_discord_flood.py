"""A flood against the bounded gateway: 5,000 requests reach the genuine
discord.py bot on the stand-in while the actors answer none; the bot sends ``max_in_flight`` of
them, tells the next ``max_waiting`` people their position in line and refuses the rest with a
message, holding memory for no more than that; then the answers come and the line goes out in
order. Nobody is left without a word."""

from __future__ import annotations

import asyncio
import collections
import gc
import re

import pytest
from discord_standin import DiscordStandIn
from discord_standin.fake_actors import FakeActors, actors  # noqa: F401 - fixture
from discord_standin.fixtures import discord_standin, running_bot  # noqa: F401 - fixture
from waiting import eventually

from gateway.config import GatewaySettings
from gateway.discord._intake import Pending
from protocol import ChatMessage

FLOOD, IN_FLIGHT, WAITING = 5000, 50, 1000
TIMEOUT_S = 240.0
BUSY = re.compile(r"You are number (\d+) in line")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def _live(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


async def test_a_flood_is_bounded_and_everyone_is_told(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    settings = GatewaySettings(debounce_s=0, max_in_flight=IN_FLIGHT, max_waiting=WAITING,
                               user_rate=0, guild_rate=0)
    async with running_bot(nats_url, s, gateway=settings) as bot:
        peak = collections.Counter[str]()

        async def watch() -> None:
            while True:
                peak["in_flight"] = max(peak["in_flight"], bot.intake.in_flight)
                peak["waiting"] = max(peak["waiting"], bot.intake.waiting)
                peak["requests"] = max(peak["requests"], len(bot.requests))
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        # 5,000 people, each in their own DM (one channel would be one conversation, and
        # Discord limits what a bot posts in one channel).
        people = [s.add_user(f"person{n}") for n in range(FLOOD)]
        posted = [await s.post_user_message(s.dm_channel(person)["id"], person["id"],
                                            f"question {n}", mention_bot=False)
                  for n, person in enumerate(people)]
        told = lambda: {m["message_reference"]["message_id"]: m["content"]  # noqa: E731
                        for m in s.bot_messages()}
        await s.wait_for(lambda: len(told()) >= FLOOD - IN_FLIGHT and
                         actors.inbox.qsize() >= IN_FLIGHT, timeout=TIMEOUT_S,
                         what="every person over the bound told")
        first = {p["id"] for p in posted[:IN_FLIGHT]}
        notices = told()
        assert len(s.bot_messages()) == len(notices), "nobody is told twice"
        assert actors.inbox.qsize() == IN_FLIGHT and not first & notices.keys()
        positions = {m: int(match[1]) for m, text in notices.items()
                     if (match := BUSY.search(text))}
        refused = [m for m, text in notices.items() if text.startswith("🚦 Too busy")]
        assert sorted(positions.values()) == list(range(1, WAITING + 1))
        assert len(refused) == FLOOD - IN_FLIGHT - WAITING
        assert f"{WAITING} requests are already waiting" in notices[refused[0]]
        # What the gateway holds is bounded by the settings, not by the flood.
        assert (bot.intake.in_flight, bot.intake.waiting) == (IN_FLIGHT, WAITING)
        assert _live(Pending) <= WAITING + IN_FLIGHT and len(bot.requests) == IN_FLIGHT

        sent: list[ChatMessage] = []
        while len(sent) < IN_FLIGHT + WAITING:
            request = await actors.next(timeout_s=30)
            sent.append(request)
            await actors.reply(request, f"answer to {request.text}")
        in_line = sorted(positions, key=positions.__getitem__)
        assert [r.message_id for r in sent[IN_FLIGHT:]] == in_line, "the line went out in order"
        await eventually(lambda: bot.intake.in_flight == 0 and not bot.requests,
                         within_s=TIMEOUT_S, what="every answer posted")
        watcher.cancel()
        answers = collections.Counter(m["message_reference"]["message_id"]
                                      for m in s.bot_messages()
                                      if m["content"].startswith("answer to"))
        assert set(answers) == {r.message_id for r in sent} and set(answers.values()) == {1}
        assert actors.inbox.empty() and bot.intake.waiting == 0
        assert peak["in_flight"] <= IN_FLIGHT and peak["waiting"] <= WAITING
        assert peak["requests"] <= IN_FLIGHT


async def test_a_rate_limited_channel_does_not_hold_up_everyone_elses_notices(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors) -> None:  # noqa: F811
    """Ten people in one channel over the bound, whose first notice Discord answers with a
    429 (retry after 3 s): the notice to someone in another channel goes out meanwhile, not
    after that channel's wait."""
    s = discord_standin
    settings = GatewaySettings(debounce_s=0, max_in_flight=1, user_rate=0, guild_rate=0)
    async with running_bot(nats_url, s, gateway=settings):
        await s.post_user_message(s.channel_id, s.alice["id"], "the one in flight")
        await actors.next()
        s.rate_limit_next("POST", f"/channels/{s.channel_id}/messages", 3.0)
        for n in range(10):
            await s.post_user_message(s.channel_id, s.alice["id"], f"over the bound {n}")
        await s.wait_for(lambda: s.rate_limited, timeout=TIMEOUT_S, what="the 429")
        bob = s.add_user("bob")
        dm = s.dm_channel(bob)["id"]
        await s.post_user_message(dm, bob["id"], "me too", mention_bot=False)
        notice = await s.wait_for(lambda: s.bot_messages(dm), timeout=TIMEOUT_S,
                                  what="bob's notice")
        assert "You are number 11 in line" in notice[0]["content"]
        assert not s.bot_messages(s.channel_id), "bob was told while the channel waited"
        told = await s.wait_for(lambda: len(s.bot_messages(s.channel_id)) == 10 or None,
                                timeout=TIMEOUT_S, what="the channel's notices after its wait")
        assert told
        positions = [int(BUSY.search(m["content"])[1])  # type: ignore[index]
                     for m in s.bot_messages(s.channel_id)]
        assert positions == list(range(1, 11)), "in order within the channel"
