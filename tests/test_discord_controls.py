"""When the bot answers and reactions as controls, through discord.py and the stand-in."""

from __future__ import annotations

import pytest
from discord_standin import DiscordStandIn
from discord_standin._payloads import MANAGE_MESSAGES, MEMBER_PERMISSIONS
from discord_standin.fake_actors import FakeActors, actors  # noqa: F401 - fixture
from discord_standin.fixtures import discord_standin, running_bot  # noqa: F401 - fixture
from waiting import eventually

from gateway.config import BotConfig, GatewaySettings
from gateway.discord import SwitchboardBot
from gateway.discord._bot import QUEUED_TEXT
from gateway.discord._reactions import Reaction, control_for
from gateway.discord._tracker import Kind, Tracked
from protocol import ControlAction, Flow

TIMEOUT_S = 20.0


async def _tracked(bot: SwitchboardBot, message_id: str) -> None:
    """Wait until the bot has taken note of its own message (the stand-in shows a message
    before the bot's POST returns)."""
    await eventually(lambda: bot.tracker.get(int(message_id)) is not None, within_s=TIMEOUT_S,
                     what=f"the bot tracks message {message_id}")


async def test_a_burst_from_one_person_is_one_request(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    async with running_bot(nats_url, s, gateway=GatewaySettings(debounce_s=0.4)):
        first = await s.post_user_message(s.channel_id, s.alice["id"], "build a parser")
        await s.post_user_message(s.channel_id, s.alice["id"], "for CSV files",
                                  mention_bot=False, reply_to=None)
        await s.post_user_message(s.channel_id, s.alice["id"], "with tests")
        request = await actors.next()
        assert request.text == "build a parser\nwith tests"  # the unmentioned one is not for us
        assert request.message_id == first["id"]
        assert actors.inbox.empty()


async def test_a_second_message_waits_for_the_running_one(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    async with running_bot(nats_url, s):
        dm = s.dm_channel(s.alice)  # one conversation (a thread or a DM): one run at a time
        await s.post_user_message(dm["id"], s.alice["id"], "first", mention_bot=False)
        first = await actors.next()
        second = await s.post_user_message(dm["id"], s.alice["id"], "second", mention_bot=False)
        queued = await s.wait_for(lambda: [m for m in s.bot_messages(dm["id"])
                                           if m["content"] == QUEUED_TEXT], timeout=TIMEOUT_S)
        assert queued[0]["message_reference"]["message_id"] == second["id"]
        assert actors.inbox.empty()
        await actors.reply(first, "first answer")
        following = await actors.next()
        assert (following.text, following.message_id) == ("second", second["id"])


async def test_requests_carry_the_bots_profile_and_model_overrides(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    config = BotConfig(name="arch", token=s.token, profile="architect",
                       models={"2": "openai/gpt-4o-mini"})
    async with running_bot(nats_url, s, config=config):
        await s.post_user_message(s.channel_id, s.alice["id"], "hi there")
        request = await actors.next()
        assert (request.profile, request.models) == ("architect", {"2": "openai/gpt-4o-mini"})


async def test_guild_and_channel_allowlists(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    config = BotConfig(name="limited", token=s.token, channels=(s.second_channel_id,))
    async with running_bot(nats_url, s, config=config) as bot:
        await s.post_user_message(s.channel_id, s.alice["id"], "in general")
        await s.post_user_message(s.second_channel_id, s.alice["id"], "in random")
        assert (await actors.next()).text == "in random"
        bot.apply_config(config.model_copy(update={"guilds": ("1",), "channels": ()}))
        await s.post_user_message(s.second_channel_id, s.alice["id"], "other guild only")
        dm = s.dm_channel(s.alice)
        await s.post_user_message(dm["id"], s.alice["id"], "a DM", mention_bot=False)
        assert (await actors.next()).text == "a DM"
        assert actors.inbox.empty()


async def test_reactions_abort_give_feedback_merge_and_discard(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    subjects = actors.subjects
    async with running_bot(nats_url, s, all_roles=True) as bot:
        me = s.bot.user["id"]
        posted = await s.post_user_message(s.channel_id, s.alice["id"], "refactor the parser")
        request = await actors.next()
        await actors.progress(request, "classified", flow=Flow.SEQUENTIAL)
        thread = await s.wait_for(lambda: s.threads_from(posted["id"]), timeout=TIMEOUT_S)
        [status] = await s.wait_for(lambda: s.bot_messages(thread["id"]), timeout=TIMEOUT_S)
        await s.wait_for(lambda: any(r.message_id == status["id"] and r.emoji == "🛑"
                                     and r.user_id == me for r in s.reactions),
                         timeout=TIMEOUT_S, what="the bot's 🛑 on the status message")

        await _tracked(bot, status["id"])
        await s.add_user_reaction(thread["id"], status["id"], s.alice["id"], "🛑")
        subject, control = await actors.next_control()
        assert subject == subjects.control(request.session)
        assert (control.action, control.session, control.user_id) == (
            ControlAction.ABORT, request.session, s.alice["id"])
        await s.wait_for(lambda: any("Stop requested" in m["content"]
                                     for m in s.bot_messages(thread["id"])), timeout=TIMEOUT_S)

        await actors.reply(request, "Refactored.", flow=Flow.SEQUENTIAL, role="python_coder")
        answer = await s.wait_for(lambda: [m for m in s.bot_messages(thread["id"])
                                           if m["content"] == "Refactored."], timeout=TIMEOUT_S)
        await _tracked(bot, answer[0]["id"])
        await s.add_user_reaction(thread["id"], answer[0]["id"], s.alice["id"], "👍")
        subject, up = await actors.next_control()
        assert subject == subjects.task("reflector")
        assert (up.action, up.value) == (ControlAction.FEEDBACK, 15)
        await s.add_user_reaction(thread["id"], answer[0]["id"], s.alice["id"], "👎🏽")
        _, down = await actors.next_control()
        assert (down.action, down.value, down.session) == (
            ControlAction.FEEDBACK, -20, request.session)

        follow = await s.post_user_message(thread["id"], s.alice["id"], "commit it",
                                           mention_bot=False)
        commit_request = await actors.next()
        assert commit_request.message_id == follow["id"]
        await actors.reply(commit_request, "Committed `sb/parser`: refactor parser",
                           role="python_coder", branch="sb/parser", commit="refactor parser")
        commit = await s.wait_for(lambda: [m for m in s.bot_messages(thread["id"])
                                           if "Committed" in m["content"]], timeout=TIMEOUT_S)
        await s.wait_for(lambda: {r.emoji for r in s.reactions if r.user_id == me and
                                  r.message_id == commit[0]["id"]} == {"👍", "👎"},
                         timeout=TIMEOUT_S, what="👍 and 👎 offered on the commit")
        await _tracked(bot, commit[0]["id"])
        await s.add_user_reaction(thread["id"], commit[0]["id"], s.alice["id"], "👍")
        subject, merge = await actors.next_control()
        assert subject == subjects.task("python_coder")
        assert (merge.action, merge.role, merge.branch) == (
            ControlAction.MERGE, "python_coder", "sb/parser")
        await s.add_user_reaction(thread["id"], commit[0]["id"], s.alice["id"], "👎")
        _, discard = await actors.next_control()
        assert (discard.action, discard.branch) == (ControlAction.DISCARD, "sb/parser")


@pytest.mark.parametrize(("kind", "emoji", "action"), [
    (Kind.STATUS, "🛑", ControlAction.ABORT),
    (Kind.ANSWER, "👍", ControlAction.FEEDBACK),
    (Kind.COMMIT, "👎", ControlAction.DISCARD),
])
def test_control_for(kind: Kind, emoji: str, action: ControlAction) -> None:
    tracked = Tracked(kind, "discord-1", "2", role="architect", branch="b")
    found = control_for(Reaction(emoji, 3, 4), tracked, "discord-9")
    assert found is not None and found[0].action == action and found[0].origin == "discord-9"
    assert control_for(Reaction("🎉", 3, 4), tracked, "discord-9") is None
    assert control_for(Reaction("🛑", 3, 4), Tracked(Kind.ANSWER, "s", "r"), "o") is None


async def test_only_the_asker_and_admins_control_a_run_and_a_vote_counts_once(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    s.set_permissions(s.everyone, MEMBER_PERMISSIONS)  # alice asks (and owns the guild)
    bob, carol = s.add_user("bob"), s.add_user("carol")
    dave = s.add_user("dave", roles=[s.add_role("moderators",
                                                 MEMBER_PERMISSIONS | MANAGE_MESSAGES)])
    config = BotConfig(name="default", token=s.token, admins=(carol["id"],))
    async with running_bot(nats_url, s, all_roles=True, config=config) as bot:
        posted = await s.post_user_message(s.channel_id, s.alice["id"], "refactor the parser")
        request = await actors.next()
        await actors.progress(request, "classified", flow=Flow.SEQUENTIAL)
        thread = await s.wait_for(lambda: s.threads_from(posted["id"]), timeout=TIMEOUT_S)
        [status] = await s.wait_for(lambda: s.bot_messages(thread["id"]), timeout=TIMEOUT_S)
        await actors.reply(request, "Committed `sb/parser`: refactor parser",
                           flow=Flow.SEQUENTIAL, role="python_coder", branch="sb/parser",
                           commit="refactor parser")
        [commit] = await s.wait_for(lambda: [m for m in s.bot_messages(thread["id"])
                                             if "Committed" in m["content"]], timeout=TIMEOUT_S)
        await _tracked(bot, status["id"])
        await _tracked(bot, commit["id"])

        def told(text: str) -> list[str]:
            return [m["content"] for m in s.bot_messages(thread["id"]) if text in m["content"]]

        # Someone else's run: bob may neither stop it, rate it, merge nor delete its branch.
        for message, emoji in ((status, "🛑"), (status, "👎"), (commit, "👍"), (commit, "👎")):
            await s.add_user_reaction(thread["id"], message["id"], bob["id"], emoji)
        refusals = await s.wait_for(lambda: told("🔒") if len(told("🔒")) == 4 else None,
                                    timeout=TIMEOUT_S, what="four refusals told to bob")
        assert all(f"<@{bob['id']}>" in text for text in refusals)
        assert actors.controls.empty(), "a refused reaction changes nothing"

        # An admin of the bot and a member with Manage Messages may.
        await s.add_user_reaction(thread["id"], status["id"], carol["id"], "🛑")
        _, stop = await actors.next_control()
        assert (stop.action, stop.user_id) == (ControlAction.ABORT, carol["id"])
        await s.add_user_reaction(thread["id"], commit["id"], dave["id"], "👍")
        _, merge = await actors.next_control()
        assert (merge.action, merge.user_id) == (ControlAction.MERGE, dave["id"])

        # /stop in the thread is a control too: bob is refused and told so, nothing is sent;
        # a member with Manage Messages (from a role, in the interaction's permissions) may.
        await s.run_command(thread["id"], bob["id"], "stop")
        await s.wait_for(lambda: [m for m in s.ephemeral if "🔒" in m["content"]],
                         timeout=TIMEOUT_S, what="bob told he may not stop alice's run")
        assert actors.controls.empty(), "a refused /stop changes nothing"
        await s.run_command(thread["id"], dave["id"], "stop")
        _, slash_stop = await actors.next_control()
        assert (slash_stop.action, slash_stop.user_id) == (ControlAction.ABORT, dave["id"])

        # The person who asked rates the answer of their request, once per vote.
        await s.add_user_reaction(thread["id"], status["id"], s.alice["id"], "👎")
        _, down = await actors.next_control()
        assert (down.action, down.value, down.request_id) == (
            ControlAction.FEEDBACK, -20, request.message_id)
        await s.add_user_reaction(thread["id"], status["id"], s.alice["id"], "👎🏽")
        await s.wait_for(lambda: told("already counted"), timeout=TIMEOUT_S,
                         what="alice told her vote counts once")
        await s.add_user_reaction(thread["id"], status["id"], s.alice["id"], "👍")
        _, up = await actors.next_control()  # a changed vote replaces the earlier one
        assert (up.value, up.user_id, up.request_id) == (15, s.alice["id"], request.message_id)
        assert actors.controls.empty()
