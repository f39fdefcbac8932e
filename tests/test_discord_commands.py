"""Slash commands per bot through discord.py's CommandTree and the stand-in's
application commands, INTERACTION_CREATE, callbacks and webhooks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import nats
import pytest_asyncio
from discord_standin import DiscordStandIn
from discord_standin.fake_actors import FakeActors, actors  # noqa: F401 - fixture
from discord_standin.fixtures import discord_standin, running_bot  # noqa: F401 - fixture
from nats.js import JetStreamContext

from gateway.config import BotConfig
from gateway.kv import open_bucket
from gateway.services import BotServices
from protocol import ControlAction, RunState, Subjects, encoder
from runtime import SessionStore
from runtime.bus import sessions_bucket

TIMEOUT_S = 20.0
SUBJECTS = Subjects("sb")
COMMANDS = {"ask", "status", "stop", "model", "breakglass"}


@pytest_asyncio.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def _services(js: JetStreamContext, **more: object) -> BotServices:
    sessions = SessionStore(await sessions_bucket(js, SUBJECTS))
    return BotServices(js=js, subjects=SUBJECTS, sessions=sessions, **more)  # type: ignore[arg-type]


def _ephemeral_texts(s: DiscordStandIn) -> list[str]:
    return [m["content"] for m in s.ephemeral]


async def test_commands_are_registered_per_bot(
        nats_url: str, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    app = s.bot.application["id"]
    async with running_bot(nats_url, s):
        assert {c["name"] for c in s.interactions.commands[(app, None)]} == COMMANDS
    config = BotConfig(name="g", token=s.token, command_guilds=(s.guild_id,))
    async with running_bot(nats_url, s, config=config):
        assert {c["name"] for c in s.interactions.commands[(app, s.guild_id)]} == COMMANDS


async def test_ask_status_stop_model_and_breakglass(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors,  # noqa: F811
        js: JetStreamContext) -> None:
    s = discord_standin
    services = await _services(js, breakglass_users=frozenset({s.alice["id"]}))
    bob = s.add_user("bob")
    session = f"discord-{s.channel_id}-{s.alice['id']}"  # alice's own in the channel
    async with running_bot(nats_url, s, all_roles=True, services=services):
        # /ask goes through the same path as a mention; the answer replies to the question.
        ask = await s.run_command(s.channel_id, s.alice["id"], "ask", {"question": "2+2?"})
        request = await actors.next()
        assert (request.text, request.session, request.breakglass) == ("2+2?", session, False)
        [question] = s.interactions.responses(ask["token"])
        assert question["id"] == request.message_id and "2+2?" in question["content"]
        await actors.reply(request, "4")
        answer = await s.wait_for(lambda: [m for m in s.bot_messages(s.channel_id)
                                           if m["content"] == "4"], timeout=TIMEOUT_S)
        assert answer[0]["message_reference"]["message_id"] == question["id"]

        # /status: nothing, then the run the agent actor wrote in the runs bucket.
        await s.run_command(s.channel_id, s.alice["id"], "status")
        await s.wait_for(lambda: "💤 Nothing is running in this conversation." in
                         _ephemeral_texts(s), timeout=TIMEOUT_S)
        runs = await open_bucket(js, SUBJECTS.runs_bucket)  # the agent actors' bucket
        assert runs is not None
        await runs.put(session, encoder.encode(RunState(
            session=session, role="python_coder", holder="python_coder/0", request_id="1",
            turn=3, max_turns=20, model="offline/tier-2", confidence=65,
            started_at=time.time() - 5)))
        await s.run_command(s.channel_id, s.alice["id"], "status")
        shown = await s.wait_for(lambda: [t for t in _ephemeral_texts(s) if "turn 3/20" in t],
                                 timeout=TIMEOUT_S)
        assert "python_coder" in shown[0] and "offline/tier-2" in shown[0] and "65%" in shown[0]

        # /stop publishes an abort for the session.
        await s.run_command(s.channel_id, s.alice["id"], "stop")
        subject, control = await actors.next_control()
        assert (subject, control.action) == (SUBJECTS.control(session), ControlAction.ABORT)
        await s.wait_for(lambda: any("Stop requested" in m["content"]
                                     for m in s.bot_messages(s.channel_id)), timeout=TIMEOUT_S)

        # /model shows, sets, and refuses a bad tier ephemerally.
        await s.run_command(s.channel_id, s.alice["id"], "model")
        await s.wait_for(lambda: any("picks its own tier" in t for t in _ephemeral_texts(s)),
                         timeout=TIMEOUT_S)
        await s.run_command(s.channel_id, s.alice["id"], "model", {"tier": 3})
        await s.wait_for(lambda: any("now uses tier 3" in t for t in _ephemeral_texts(s)),
                         timeout=TIMEOUT_S)
        assert (await services.sessions.get(session)).tier == 3  # type: ignore[union-attr]
        await s.run_command(s.channel_id, s.alice["id"], "model", {"tier": 9})
        await s.wait_for(lambda: any("Pick a tier from 1 to 4" in t
                                     for t in _ephemeral_texts(s)), timeout=TIMEOUT_S)

        # /breakglass: refused for bob, sent with breakglass=True for alice.
        await s.run_command(s.channel_id, bob["id"], "breakglass", {"question": "prod down"})
        await s.wait_for(lambda: any("only for the users" in t for t in _ephemeral_texts(s)),
                         timeout=TIMEOUT_S)
        await s.run_command(s.channel_id, s.alice["id"], "breakglass", {"question": "prod down"})
        urgent = await actors.next()
        assert (urgent.text, urgent.breakglass, urgent.user_id) == (
            "prod down", True, s.alice["id"])
        assert actors.inbox.empty()


async def test_ask_is_each_persons_own_outside_a_thread_and_the_threads_inside(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors,  # noqa: F811
        js: JetStreamContext) -> None:
    """Two people using /ask in one channel get a session each (so a
    workspace, run lock, history, confidence and /model tier each); in a thread, /ask is
    the thread's conversation, whoever asks."""
    s = discord_standin
    services = await _services(js)
    bob = s.add_user("bob")
    async with running_bot(nats_url, s, all_roles=True, services=services):
        await s.run_command(s.channel_id, s.alice["id"], "ask", {"question": "alice's task"})
        alices = await actors.next()
        # bob's request goes out while alice's still runs: it does not wait for her session.
        await s.run_command(s.channel_id, bob["id"], "ask", {"question": "bob's task"})
        bobs = await actors.next()
        assert (alices.text, bobs.text) == ("alice's task", "bob's task")
        assert alices.session != bobs.session
        assert {alices.session, bobs.session}.isdisjoint({f"discord-{s.channel_id}"})
        await actors.reply(alices, "done for alice")
        await actors.reply(bobs, "done for bob")

        # /model outside a thread is about the person's own /ask conversation.
        await s.run_command(s.channel_id, s.alice["id"], "model", {"tier": 3})
        await s.wait_for(lambda: any("now uses tier 3" in t for t in _ephemeral_texts(s)),
                         timeout=TIMEOUT_S)
        assert services.sessions is not None
        assert (await services.sessions.get(alices.session)).tier == 3
        assert not (await services.sessions.get(bobs.session)).tier
        await s.run_command(s.channel_id, bob["id"], "ask", {"question": "bob again"})
        again = await actors.next()
        assert again.session == bobs.session  # the same person keeps one session
        await actors.reply(again, "done again")

        thread = await s.start_thread(s.channel_id, s.alice["id"], "pairing")
        await s.run_command(thread["id"], s.alice["id"], "ask", {"question": "in the thread"})
        in_thread = await actors.next()
        await actors.reply(in_thread, "answered in the thread")
        await s.run_command(thread["id"], bob["id"], "ask", {"question": "me too"})
        also = await actors.next()
        assert in_thread.session == also.session == f"discord-{thread['id']}"
