"""Feedback that matters, through Discord: the genuine discord.py bot on the
local stand-in of Discord, the whole system behind it. After 👎 on the work of a run (deleting
its branch), the next run in that thread starts one tier higher."""

from __future__ import annotations

from pathlib import Path

import pytest
from discord_standin import DiscordStandIn
from discord_standin.fixtures import discord_standin  # noqa: F401 - fixture
from discord_system import containing, discord_system, wait_until_tracked

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
TASK = "write a python function that reverses a string and test it"
NEXT = "write a python function that checks whether a string is a palindrome and test it"


async def test_after_a_thumbs_down_the_next_run_in_the_thread_starts_a_tier_higher(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    # Learning from cases off: only the feedback moves the tier in this test.
    async with discord_system(nats_url, tmp_path, s, cases={"learn_tier": False}):
        alice = s.alice["id"]
        task = await s.post_user_message(s.channel_id, alice, TASK)
        thread = await s.wait_for(lambda: s.threads_from(task["id"]), timeout=60,
                                  what="a thread for the work")
        [commit] = await s.wait_for(lambda: containing(s, thread["id"], "👍 to merge"),
                                    timeout=120, what="the commit message")
        assert containing(s, thread["id"], "offline/tier-2"), "python_coder works at tier 2"
        assert not containing(s, thread["id"], "offline/tier-3")
        await wait_until_tracked(s, commit)

        await s.add_user_reaction(thread["id"], commit["id"], alice, "👎")
        await s.wait_for(lambda: containing(s, thread["id"], "Deleted branch"), timeout=60,
                         what="the branch deleted")

        await s.post_user_message(thread["id"], alice, NEXT, mention_bot=False)
        await s.wait_for(lambda: containing(s, thread["id"], "offline/tier-3"), timeout=120,
                         what="the next run at tier 3")
        await s.wait_for(lambda: len(containing(s, thread["id"], "👍 to merge")) == 2,
                         timeout=120, what="the second run's answer")
