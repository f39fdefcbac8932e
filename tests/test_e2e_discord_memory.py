"""Per-user memory end to end (docs/design.md#reflexion-memory: "each user has their own
conversation context,
across channels and DMs, with no cross-talk between users"): the genuine discord.py bot on the
local stand-in of Discord, with the whole system (`switchboard up`, every actor its own
process, a real nats-server) behind it.

The offline model cannot use what it is shown of a person's other conversations, but says what
it was shown: its chat answers end with ``(From another conversation I remember you said:
"...")`` when the person's memory was given to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from discord_standin import DiscordStandIn
from discord_standin.fixtures import discord_standin  # noqa: F401 - fixture
from discord_system import containing, discord_system, user_memory
from waiting import until

from actors.memory import user_key

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
RECALL = "From another conversation I remember you said"
TEAL = "hello, my favourite colour is teal"
RED = "hello, my favourite colour is red"


def _answer_to(s: DiscordStandIn, channel: str, message: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's finished answer (the offline model's label is its last line but one)."""
    return [m for m in containing(s, channel, "SB_MODEL")
            if (m.get("message_reference") or {}).get("message_id") == message["id"]]


async def _tell(s: DiscordStandIn, nats_url: str, key: str, person: str, text: str) -> None:
    """``person`` mentions the bot with ``text`` in #general; returns once it is remembered."""
    told = await s.post_user_message(s.channel_id, person, text)
    [first] = await s.wait_for(lambda: _answer_to(s, s.channel_id, told), timeout=90,
                               what=f"the answer to {text!r}")
    assert RECALL not in first["content"], "nothing to recall yet"

    async def remembered() -> str:
        return await user_memory(nats_url, key)

    # The memory is written right after the answer is sent.
    await until(remembered, lambda stored: text in stored, within_s=30,
                what=f"{text!r} remembered")


async def test_what_a_person_said_in_one_place_is_recalled_elsewhere_for_them_only(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    alice, bob = s.alice["id"], s.add_user("bob")["id"]
    async with discord_system(nats_url, tmp_path, s) as system:
        origin = f"discord-{s.bot.user['id']}"  # one memory per bot and person
        for person, text in ((alice, TEAL), (bob, RED)):
            await _tell(s, system.nats_url, user_key(origin, person), person, text)

        # Alice in a DM (another conversation: its own session) is recalled her own words.
        dm = s.dm_channel(s.alice)
        await s.post_user_message(dm["id"], alice, "hello again", mention_bot=False)
        [in_dm] = await s.wait_for(lambda: containing(s, dm["id"], RECALL), timeout=90,
                                   what="alice's answer in her DM")
        assert f'{RECALL}: "{TEAL}"' in in_dm["content"]
        assert "colour is red" not in in_dm["content"]

        # ... and in another channel, where her latest words elsewhere are the DM's.
        elsewhere = await s.post_user_message(s.second_channel_id, alice, "what's new?")
        [there] = await s.wait_for(lambda: _answer_to(s, s.second_channel_id, elsewhere),
                                   timeout=90, what="alice's answer in #random")
        assert f'{RECALL}: "hello again"' in there["content"]
        assert "colour is red" not in there["content"]

        # Bob is shown his own words, never alice's.
        bob_dm = s.dm_channel(s.users[bob])
        await s.post_user_message(bob_dm["id"], bob, "hello again", mention_bot=False)
        [his] = await s.wait_for(lambda: containing(s, bob_dm["id"], RECALL), timeout=90,
                                 what="bob's answer in his DM")
        assert f'{RECALL}: "{RED}"' in his["content"]
        assert "colour is teal" not in his["content"]
