"""The genuine discord.py client (SwitchboardBot) against the local Discord stand-in.

The test plays the actors: it reads the ChatMessages the bridge publishes to the classifier's
subject on a real nats-server and publishes Progress / Reply to the bot's outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import nats
import nats.aio.msg
import pytest
import pytest_asyncio
from discord_standin import DiscordStandIn
from discord_standin.fixtures import discord_standin, running_bot  # noqa: F401
from nats.aio.client import Client

from gateway.discord import SwitchboardBot
from gateway.render import render_progress
from protocol import (
    Approach,
    ChatMessage,
    ConsolidatedOptions,
    FileBlob,
    Flow,
    Outbound,
    Progress,
    Reply,
    ReplyTo,
    Subjects,
    encoder,
    task_decoder,
)

TIMEOUT_S = 20.0
SUBJECTS = Subjects("sb")


class Actors:
    """Stands in for the actors: collects ChatMessages, publishes outbound messages."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.inbox: asyncio.Queue[ChatMessage] = asyncio.Queue()

    async def start(self) -> None:
        async def received(msg: nats.aio.msg.Msg) -> None:
            message = task_decoder.decode(msg.data)
            assert isinstance(message, ChatMessage)
            await self.inbox.put(message)

        await self.nc.subscribe(SUBJECTS.task("classifier"), cb=received)
        await self.nc.flush(timeout=5)

    async def next(self) -> ChatMessage:
        async with asyncio.timeout(TIMEOUT_S):
            return await self.inbox.get()

    async def publish(self, message: Outbound) -> None:
        await self.nc.publish(SUBJECTS.outbox(message.origin), encoder.encode(message))
        await self.nc.flush(timeout=5)


@pytest_asyncio.fixture
async def actors(nats_url: str) -> AsyncIterator[Actors]:
    nc = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    fake = Actors(nc)
    await fake.start()
    try:
        yield fake
    finally:
        await nc.close()


@pytest_asyncio.fixture
async def bot(nats_url: str, discord_standin: DiscordStandIn,  # noqa: F811
              actors: Actors) -> AsyncIterator[SwitchboardBot]:
    async with running_bot(nats_url, discord_standin) as running:
        yield running


def _reply(request: ChatMessage, text: str, **fields: object) -> Reply:
    return ReplyTo.of(request).build(Reply, text=text, **fields)


def _progress(request: ChatMessage, stage: str, **fields: object) -> Progress:
    return ReplyTo.of(request).build(Progress, stage=stage, **fields)


async def test_mention_is_answered_in_the_channel(
    bot: SwitchboardBot, discord_standin: DiscordStandIn, actors: Actors  # noqa: F811
) -> None:
    s = discord_standin
    posted = await s.post_user_message(s.channel_id, s.alice["id"], "what is 6 x 7?")
    request = await actors.next()
    assert request.message_id == posted["id"]
    assert request.text == "what is 6 x 7?"
    assert request.session == f"discord-{posted['id']}"  # the id its thread would have
    assert request.origin == f"discord-{s.bot.user['id']}"
    assert (request.user_id, request.user_name) == (s.alice["id"], "alice")
    assert (request.channel_id, request.guild_id) == (s.channel_id, s.guild_id)

    await actors.publish(_reply(request, "42"))
    [answer] = await s.wait_for(lambda: s.bot_messages(s.channel_id), timeout=TIMEOUT_S)
    assert answer["content"] == "42"
    assert answer["message_reference"]["message_id"] == posted["id"]
    assert not s.threads


async def test_long_reply_is_split_and_files_attached(
    bot: SwitchboardBot, discord_standin: DiscordStandIn, actors: Actors  # noqa: F811
) -> None:
    s = discord_standin
    await s.post_user_message(s.channel_id, s.alice["id"], "write a lot")
    request = await actors.next()
    code = "\n".join(f"print({i})  # line {i}" for i in range(200))
    text = "Intro paragraph.\n\n" + ("Some prose. " * 150) + f"\n\n```python\n{code}\n```\nEnd."
    files = (FileBlob(name="out.txt", data=b"hello\x00bytes"),)
    await actors.publish(_reply(request, text, files=files))

    def done() -> list[dict[str, Any]]:
        messages = s.bot_messages(s.channel_id)
        return messages if messages and messages[-1]["content"].endswith("End.") else []

    messages = await s.wait_for(done, timeout=TIMEOUT_S, what="all chunks")
    assert len(messages) >= 3
    assert all(len(m["content"]) <= 2000 for m in messages)
    assert all(m["content"].count("```") % 2 == 0 for m in messages)
    assert s.attachment_bytes(messages[-1]) == {"out.txt": b"hello\x00bytes"}


async def test_sequential_progress_opens_a_thread_and_edits_one_status_message(
    bot: SwitchboardBot, discord_standin: DiscordStandIn, actors: Actors  # noqa: F811
) -> None:
    s = discord_standin
    posted = await s.post_user_message(s.channel_id, s.alice["id"], "build a CSV parser\nplease")
    request = await actors.next()
    await actors.publish(_progress(request, "classified", flow=Flow.SEQUENTIAL))
    thread = await s.wait_for(lambda: s.threads_from(posted["id"]), timeout=TIMEOUT_S)
    assert thread["name"] == "build a CSV parser"
    assert thread["owner_id"] == s.bot.user["id"]
    [status] = await s.wait_for(lambda: s.bot_messages(thread["id"]), timeout=TIMEOUT_S)
    assert status["content"].startswith("🚀 Starting work")

    last = None
    for turn in range(1, 6):
        last = _progress(request, "turn", flow=Flow.SEQUENTIAL, turn=turn, max_turns=20,
                         confidence=50 + turn * 5, model="offline/tier-2",
                         files_written=(f"f{turn}.py",))
        await actors.publish(last)
    assert last is not None
    final = render_progress(last)
    await s.wait_for(lambda: any(e.content == final for e in s.edits), timeout=TIMEOUT_S,
                     what="the last progress shown")
    assert {e.message_id for e in s.edits} == {status["id"]}

    await actors.publish(_reply(request, "Done: parser.py", flow=Flow.SEQUENTIAL))
    await s.wait_for(lambda: len(s.bot_messages(thread["id"])) == 2, timeout=TIMEOUT_S)
    assert s.bot_messages(thread["id"])[1]["content"] == "Done: parser.py"
    assert s.bot_messages(s.channel_id) == []
    assert request.message_id not in bot.requests

    # A follow-up in the bot's thread needs no mention.
    await s.post_user_message(thread["id"], s.alice["id"], "add tests", mention_bot=False)
    follow_up = await actors.next()
    assert follow_up.session == f"discord-{thread['id']}" == request.session  # one session
    assert follow_up.text == "add tests"


async def test_throttled_edits_end_on_the_latest_text(
    nats_url: str, discord_standin: DiscordStandIn, actors: Actors  # noqa: F811
) -> None:
    s = discord_standin
    async with running_bot(nats_url, s, edit_interval_s=0.5):
        await s.post_user_message(s.channel_id, s.alice["id"], "stream please")
        request = await actors.next()
        texts = ["H" * n for n in range(1, 31)]
        for text in texts:
            await actors.publish(_progress(request, "stream", text=text))
        await s.wait_for(lambda: s.edits and s.edits[-1].content == texts[-1],
                         timeout=TIMEOUT_S, what="the latest streamed text")
        assert len(s.edits) < len(texts) // 2
        await actors.publish(_reply(request, "HHH final"))
        await s.wait_for(lambda: s.edits[-1].content == "HHH final", timeout=TIMEOUT_S)
        assert len(s.bot_messages(s.channel_id)) == 1


async def test_branch_options_are_posted_in_the_thread(
    bot: SwitchboardBot, discord_standin: DiscordStandIn, actors: Actors  # noqa: F811
) -> None:
    s = discord_standin
    posted = await s.post_user_message(s.channel_id, s.alice["id"], "compare approaches")
    request = await actors.next()
    await actors.publish(_progress(request, "classified", flow=Flow.BRANCH))
    thread = await s.wait_for(lambda: s.threads_from(posted["id"]), timeout=TIMEOUT_S)
    await actors.publish(ReplyTo.of(request).build(
        ConsolidatedOptions, question="compare approaches",
        options=(Approach(title="A", summary="a", pros=("p",)), Approach(title="B", summary="b")),
    ))
    messages = await s.wait_for(lambda: s.bot_messages(thread["id"])[1:], timeout=TIMEOUT_S)
    assert "Option 1: A" in messages[0]["content"]


async def test_own_and_other_bots_messages_are_ignored(
    bot: SwitchboardBot, discord_standin: DiscordStandIn, actors: Actors  # noqa: F811
) -> None:
    s = discord_standin
    await s.post_user_message(s.channel_id, s.other_bot["id"], "hey bot")
    await s.post_user_message(s.channel_id, s.bot.user["id"], "talking to myself")
    await s.post_user_message(s.channel_id, s.alice["id"], "no mention", mention_bot=False)
    await s.post_user_message(s.channel_id, s.alice["id"], "real one")
    request = await actors.next()
    assert request.text == "real one"
    assert actors.inbox.empty()


async def test_reply_to_the_bot_needs_no_mention(
    bot: SwitchboardBot, discord_standin: DiscordStandIn, actors: Actors  # noqa: F811
) -> None:
    s = discord_standin
    await s.post_user_message(s.channel_id, s.alice["id"], "hi")
    await actors.publish(_reply(await actors.next(), "hello!"))
    [answer] = await s.wait_for(lambda: s.bot_messages(s.channel_id), timeout=TIMEOUT_S)
    await s.post_user_message(s.channel_id, s.alice["id"], "and more", mention_bot=False,
                              reply_to=answer["id"])
    assert (await actors.next()).text == "and more"


async def test_dm_is_answered(
    bot: SwitchboardBot, discord_standin: DiscordStandIn, actors: Actors  # noqa: F811
) -> None:
    s = discord_standin
    dm = s.dm_channel(s.alice)
    await s.post_user_message(dm["id"], s.alice["id"], "secret question", mention_bot=False)
    request = await actors.next()
    assert request.guild_id == ""
    assert request.session == f"discord-{dm['id']}"
    await actors.publish(_reply(request, "secret answer"))
    [answer] = await s.wait_for(lambda: s.bot_messages(dm["id"]), timeout=TIMEOUT_S)
    assert answer["content"] == "secret answer"


async def test_dms_can_be_switched_off(
    nats_url: str, discord_standin: DiscordStandIn, actors: Actors  # noqa: F811
) -> None:
    s = discord_standin
    async with running_bot(nats_url, s, dms=False):
        dm = s.dm_channel(s.alice)
        await s.post_user_message(dm["id"], s.alice["id"], "ignored", mention_bot=False)
        await s.post_user_message(s.channel_id, s.alice["id"], "seen")
        assert (await actors.next()).text == "seen"


async def test_not_running_is_told_to_the_user(
    bot: SwitchboardBot, discord_standin: DiscordStandIn, actors: Actors  # noqa: F811
) -> None:
    s = discord_standin
    js = actors.nc.jetstream()
    await js.delete_stream(SUBJECTS.task_stream("classifier"))
    await s.post_user_message(s.channel_id, s.alice["id"], "anyone there?")
    [answer] = await s.wait_for(lambda: s.bot_messages(s.channel_id), timeout=TIMEOUT_S)
    assert "not running" in answer["content"]


@pytest.mark.parametrize("durable", [True])
async def test_gateway_resume_and_durable_outbox(
    nats_url: str, discord_standin: DiscordStandIn, actors: Actors,  # noqa: F811
    durable: bool,
) -> None:
    s = discord_standin
    async with running_bot(nats_url, s, durable=durable):
        await s.reconnect_gateway()
        await s.post_user_message(s.channel_id, s.alice["id"], "after resume")
        request = await actors.next()
        await actors.publish(_reply(request, "still here"))
        [answer] = await s.wait_for(lambda: s.bot_messages(s.channel_id), timeout=TIMEOUT_S)
        assert answer["content"] == "still here"
