"""Listening channels, ``addressed`` and the per-bot answer limits through the genuine discord.py
client against the local stand-in of Discord; the test plays the actors (FakeActors) on a real
nats-server."""

from __future__ import annotations

from discord_standin import DiscordStandIn
from discord_standin.fake_actors import FakeActors, actors  # noqa: F401 - fixture
from discord_standin.fixtures import (  # noqa: F401 - fixtures
    discord_standin,
    limits_kv,
    running_bot,
)
from nats.js.kv import KeyValue
from waiting import eventually

from gateway.config import BotConfig, GatewaySettings
from gateway.discord import BotServices
from gateway.discord._bot import EMPTY_TEXT
from gateway.limits import Limiter
from protocol import ChatMessage, Flow

TIMEOUT_S = 20.0


def _config(s: DiscordStandIn) -> BotConfig:
    return BotConfig(name="listener", token=s.token, listen_channels=(s.second_channel_id,),
                     max_answer_chars=1500, max_tokens=400, profile="architect")


def _limits(request: ChatMessage) -> tuple[int, int, str, str]:
    return request.max_answer_chars, request.max_tokens, request.profile, request.bot


async def test_listening_channel_threads_and_mentions_say_whether_addressed(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    alice = s.alice["id"]
    listening = s.second_channel_id
    async with running_bot(nats_url, s, config=_config(s)) as bot:
        # A mention: addressed, with the bot's limits; its work opens the bot's thread.
        task = await s.post_user_message(s.channel_id, alice, "build a CSV parser")
        request = await actors.next()
        assert request.addressed and _limits(request) == (1500, 400, "architect", "")
        await actors.progress(request, "classified", flow=Flow.SEQUENTIAL)
        thread = await s.wait_for(lambda: s.threads_from(task["id"]), timeout=TIMEOUT_S)
        assert thread is not None
        await actors.reply(request, "Done: parser.py", flow=Flow.SEQUENTIAL)
        await eventually(lambda: not bot.intake.busy(request.session), within_s=TIMEOUT_S,
                         what="the answer frees the thread")

        # In the bot's thread without a mention: heard, not addressed. The router's "no
        # answer" (an empty Reply) posts nothing and frees the thread's queue.
        await s.post_user_message(thread["id"], alice, "looks good to me, Bob?",
                                  mention_bot=False)
        ambient = await actors.next()
        assert not ambient.addressed and ambient.session == request.session
        await actors.reply(ambient, "")
        await eventually(lambda: not bot.intake.busy(request.session), within_s=TIMEOUT_S,
                         what="the empty answer frees the thread")
        await s.post_user_message(thread["id"], alice, "add tests please")
        follow = await actors.next()
        assert follow.addressed and follow.session == request.session
        await actors.reply(follow, "Added tests.")
        await s.wait_for(lambda: len(s.bot_messages(thread["id"])) == 3, timeout=TIMEOUT_S,
                         what="the answer to the follow-up")
        assert [m["content"] for m in s.bot_messages(thread["id"])][1:] == [
            "Done: parser.py", "Added tests."]

        # A listening channel: every message is heard; each keeps its own session.
        chatter = await s.post_user_message(listening, alice, "lunch anyone?",
                                            mention_bot=False)
        heard = await actors.next()
        assert (heard.addressed, heard.session, heard.channel_id) == (
            False, f"discord-{chatter['id']}", listening)
        assert _limits(heard) == (1500, 400, "architect", "")
        await actors.reply(heard, "")
        asked = await s.post_user_message(listening, alice, "what is a monad?")
        mentioned = await actors.next()
        assert (mentioned.addressed, mentioned.message_id) == (True, asked["id"])
        await actors.reply(mentioned, "A monoid in the category of endofunctors.")
        [answer] = await s.wait_for(lambda: s.bot_messages(listening), timeout=TIMEOUT_S)
        assert answer["message_reference"]["message_id"] == asked["id"]  # nothing for chatter

        # /ask is addressed and carries the bot's limits too.
        await s.run_command(s.channel_id, alice, "ask", {"question": "2+2?"})
        command = await actors.next()
        assert command.addressed and _limits(command) == (1500, 400, "architect", "")
        await actors.reply(command, "4")

        # Elsewhere a plain message is still not for the bot.
        await s.post_user_message(s.channel_id, alice, "just chatting", mention_bot=False)
        await s.post_user_message(s.channel_id, alice, "ping")
        assert (await actors.next()).text == "ping"
        assert actors.inbox.empty()


async def test_a_message_not_addressed_to_the_bot_is_refused_silently(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors,  # noqa: F811
        limits_kv: KeyValue) -> None:  # noqa: F811
    s = discord_standin
    alice = s.alice["id"]
    listening = s.second_channel_id
    settings = GatewaySettings(debounce_s=0, user_rate=1, guild_rate=0, rate_window_s=3600,
                               daily_tokens=0)
    services = BotServices(limiter=Limiter(limits_kv, settings))
    async with running_bot(nats_url, s, config=_config(s), gateway=settings,
                           services=services):
        await s.post_user_message(listening, alice, "", mention_bot=False)  # a bare message
        await s.post_user_message(s.channel_id, alice, "")  # a bare mention
        await s.wait_for(lambda: [m for m in s.bot_messages(s.channel_id)
                                  if m["content"] == EMPTY_TEXT], timeout=TIMEOUT_S)

        await s.post_user_message(s.channel_id, alice, "first")
        await actors.reply(await actors.next(), "answered")
        # Over the rate now: the chatter in the listening channel gets no refusal ...
        await s.post_user_message(listening, alice, "anyway, as I was saying",
                                  mention_bot=False)
        # ... a request to the bot does.
        refused = await s.post_user_message(listening, alice, "and now?")
        [refusal] = await s.wait_for(lambda: s.bot_messages(listening), timeout=TIMEOUT_S,
                                     what="the rate limit's answer")
        assert "Try again" in refusal["content"]
        assert refusal["message_reference"]["message_id"] == refused["id"]
        assert actors.inbox.empty()
        assert [m["content"] for m in s.bot_messages(s.channel_id)] == [EMPTY_TEXT, "answered"]
