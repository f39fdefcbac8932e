"""Who a Discord message is for (``should_answer``, ``is_addressed``), the per-bot answer limits
and listening channels of ``BotConfig``, ``switchboard bots`` and the Interactions endpoint, and
the terminal chat's stable memory owner and user. Pure logic, except what reads the bots KV
bucket (a real nats-server)."""

from __future__ import annotations

import json
import time
from typing import Any
from unittest.mock import Mock

import discord
import nacl.signing
import nats
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from core.config import load_topology
from gateway.chat import EXIT_TIMEOUT, MEMORY_OWNER, TerminalChat, terminal_user
from gateway.config import BotConfig, parse_bot
from gateway.discord import is_addressed, should_answer
from gateway.discord._inbound import session_of_message
from gateway.discord._intake import Pending
from gateway.errors import BotConfigError
from gateway.interactions import InteractionsEndpoint
from gateway.interactions._run import bot_config_source as interactions_bot_config
from gateway.interactions._server import PATH
from gateway.pool import BotStore
from gateway.services import BotServices
from protocol import ChatMessage
from switchboard.cli import main

ME, ALICE, OTHER_BOT = 1, 2, 3
LISTEN, PLAIN = 100, 200


def _user(user_id: int, *, bot: bool = False) -> Mock:
    return Mock(spec=discord.User, id=user_id, bot=bot)


ME_USER = Mock(spec=discord.ClientUser, id=ME, bot=True)


def _text_channel(channel_id: int) -> Mock:
    return Mock(spec=discord.TextChannel, id=channel_id)


def _thread(thread_id: int, owner: int, parent: int) -> Mock:
    return Mock(spec=discord.Thread, id=thread_id, owner_id=owner, parent_id=parent)


def _message(channel: Any, *, author: int = ALICE, author_bot: bool = False,
             mentions: tuple[int, ...] = (), reply_to: int | None = None,
             guild: bool = True, message_id: int = 999) -> Mock:
    reference = None
    if reply_to is not None:
        replied = Mock(spec=discord.Message, author=_user(reply_to, bot=reply_to == ME))
        reference = Mock(spec=discord.MessageReference, resolved=replied, cached_message=None)
    return Mock(spec=discord.Message, id=message_id, channel=channel,
                guild=Mock(spec=discord.Guild, id=7) if guild else None,
                author=_user(author, bot=author_bot), mentions=[_user(m) for m in mentions],
                reference=reference)


def _verdict(message: Mock, *, dms: bool = True,
             listen: tuple[str, ...] = (str(LISTEN),)) -> tuple[bool, bool]:
    return (should_answer(message, ME_USER, dms=dms, listen_channels=listen),
            is_addressed(message, ME_USER))


BOTS_THREAD = _thread(300, owner=ME, parent=PLAIN)
THEIR_THREAD = _thread(400, owner=ALICE, parent=LISTEN)
DM = Mock(spec=discord.DMChannel, id=500)


@pytest.mark.parametrize(("message", "expected"), [
    # (goes out, addressed)
    (_message(_text_channel(PLAIN), mentions=(ME,)), (True, True)),
    (_message(_text_channel(PLAIN), reply_to=ME), (True, True)),
    (_message(DM, guild=False), (True, True)),
    (_message(BOTS_THREAD, mentions=(ME,)), (True, True)),
    (_message(BOTS_THREAD, reply_to=ME), (True, True)),
    (_message(_text_channel(LISTEN), mentions=(ME,)), (True, True)),
    # heard, but maybe meant for other people: the router decides
    (_message(BOTS_THREAD), (True, False)),
    (_message(_text_channel(LISTEN)), (True, False)),
    (_message(_text_channel(LISTEN), mentions=(ALICE,)), (True, False)),
    (_message(_text_channel(LISTEN), reply_to=ALICE), (True, False)),
    # not for the bot
    (_message(_text_channel(PLAIN)), (False, False)),
    (_message(_text_channel(PLAIN), reply_to=ALICE), (False, False)),
    (_message(THEIR_THREAD), (False, False)),  # a person's thread in a listening channel
    (_message(_text_channel(LISTEN), author=OTHER_BOT, author_bot=True), (False, False)),
    (_message(_text_channel(LISTEN), author=ME, author_bot=True), (False, False)),
], ids=[
    "mention", "reply-to-bot", "dm", "mention-in-bots-thread", "reply-in-bots-thread",
    "mention-in-listening-channel", "plain-in-bots-thread", "plain-in-listening-channel",
    "mentions-someone-else-in-listening-channel", "replies-to-someone-else-in-listening",
    "plain-elsewhere", "reply-to-someone-else", "their-thread-in-listening-channel",
    "other-bot-in-listening-channel", "own-message",
])
def test_addressed_and_heard(message: Mock, expected: tuple[bool, bool]) -> None:
    assert _verdict(message) == expected


def test_without_listening_channels_a_plain_message_is_not_heard() -> None:
    assert _verdict(_message(_text_channel(LISTEN)), listen=()) == (False, False)
    assert _verdict(_message(DM, guild=False), dms=False)[0] is False


def test_a_guild_channel_message_keeps_its_own_session() -> None:
    message = _message(_text_channel(LISTEN), message_id=4242)
    assert session_of_message(message) == "discord-4242"  # the thread it would open


# ---------------------------------------------------------------------------- BotConfig


def test_bot_config_limits_and_listening_channels() -> None:
    plain = BotConfig(name="b", token="t")
    assert (plain.max_answer_chars, plain.max_tokens, plain.listen_channels) == (0, 0, ())
    config = BotConfig(name="b", token="t", channels=("5",), listen_channels=("9",),
                       max_answer_chars=1500, max_tokens=400, profile="architect",
                       models={"1": "openai/gpt-4o-mini"})
    assert config.listens_in(9) and not config.listens_in(5) and not config.listens_in(None)
    assert config.allows(1, (9, None)), "a listening channel is allowed by the allowlist"
    assert config.allows(1, (5, None)) and not config.allows(1, (6, None))

    request = config.stamp(ChatMessage(message_id="m", session="s", origin="o", user_id="u",
                                       text="hi", addressed=False))
    assert (request.max_answer_chars, request.max_tokens) == (1500, 400)
    assert (request.profile, request.models) == ("architect", {"1": "openai/gpt-4o-mini"})
    assert request.addressed is False and request.bot == ""  # untouched


@pytest.mark.parametrize(("field", "value", "ours"), [
    ("max_answer_chars", -1, None),  # pydantic's bounds: its words are its own, not asserted
    ("max_tokens", -5, None),
    ("max_tokens", "many", None),
    ("listen_channels", ["general"], "channel ids"),  # our validator's words
    ("listen_channels", ["١٢"], "channel ids"),  # Arabic-Indic digits are not an id
])
def test_bot_config_rejects_bad_limits_and_channels(field: str, value: object,
                                                    ours: str | None) -> None:
    with pytest.raises(ValidationError) as caught:
        BotConfig.model_validate({"name": "b", "token": "t", field: value})
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]
    with pytest.raises(BotConfigError, match=field) as refused:
        parse_bot({"name": "b", "token": "secret-token-value", field: value})
    assert ours is None or ours in str(refused.value)


# ---------------------------------------------------------------------------- bots CLI


def test_bots_cli_round_trips_limits_and_listening_channels(
        nats_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    def run(*args: str) -> tuple[int, str]:
        code = main(["--nats-url", nats_url, "bots", *args])
        return code, capsys.readouterr().out

    def stored() -> dict[str, Any]:
        code, out = run("list", "--json")
        assert code == 0, out
        [row] = json.loads(out)
        return dict(row)

    assert run("add", "helper", "--token", "token-abcdefghijklmnop", "--listen-channel", "11",
               "--listen-channel", "12,13", "--max-answer-chars", "1500",
               "--max-tokens", "400")[0] == 0
    row = stored()
    assert row["listen_channels"] == ["11", "12", "13"]
    assert (row["max_answer_chars"], row["max_tokens"]) == (1500, 400)
    code, out = run("list")
    assert "listens in 11,12,13" in out and "≤ 1500 chars" in out and "≤ 400 tokens" in out

    code, out = run("set", "helper", "--max-tokens", "0", "--listen-channel", "")
    assert code == 0 and "without restart" in out
    row = stored()
    assert (row["listen_channels"], row["max_answer_chars"], row["max_tokens"]) == (
        [], 1500, 0)  # untouched options keep their values

    code, out = run("set", "helper", "--listen-channel", "general")
    assert code == 2 and "channel ids" in out
    for bad in (["--max-tokens", "-1"], ["--max-answer-chars", "lots"]):
        with pytest.raises(SystemExit) as exited:
            main(["--nats-url", nats_url, "bots", "set", "helper", *bad])
        assert exited.value.code == 2
        assert "whole number" in capsys.readouterr().err
    assert stored()["max_answer_chars"] == 1500


# ---------------------------------------------------------------------------- terminal


def test_the_terminal_user_is_stable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "Ada Lovelace")
    assert terminal_user() == terminal_user() == "Ada-Lovelace"
    assert terminal_user("bob") == "bob"

    def no_login() -> str:
        raise OSError("no login name")

    monkeypatch.setattr("getpass.getuser", no_login)
    assert terminal_user() == "user"


class _Bridge:
    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.sent: list[ChatMessage] = []

    async def send(self, message: ChatMessage) -> None:
        self.sent.append(message)


@pytest.mark.timeout(10)
async def test_every_terminal_run_uses_one_memory_owner_and_user() -> None:
    sent = []
    for origin, session in (("term-aaaa", "terminal-a"), ("term-bbbb", "terminal-b")):
        bridge = _Bridge(origin)
        chat = TerminalChat(bridge, session, "ada", out=_Sink())  # type: ignore[arg-type]
        assert await chat.ask("hello", timeout_s=0.01) == EXIT_TIMEOUT
        sent += bridge.sent
    assert {(m.bot, m.user_id, m.addressed) for m in sent} == {
        (MEMORY_OWNER, "terminal:ada", True)}
    assert {m.origin for m in sent} == {"term-aaaa", "term-bbbb"}


class _Sink:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def test_a_burst_is_addressed_when_any_of_its_messages_is() -> None:
    def pending(text: str, *, addressed: bool) -> Pending:
        return Pending(ChatMessage(message_id=text, session="s", origin="o", user_id="u",
                                   text=text, addressed=addressed), Mock(spec=discord.Message))

    burst = pending("so anyway", addressed=False)
    burst.merge(pending("@bot what do you think?", addressed=True))
    burst.merge(pending("thanks", addressed=False))
    assert burst.request.addressed is True
    assert burst.request.text == "so anyway\n@bot what do you think?\nthanks"
    quiet = pending("a", addressed=False)
    quiet.merge(pending("b", addressed=False))
    assert quiet.request.addressed is False


# ---------------------------------------------------------------------------- Interactions


class _SentBridge:
    """What the endpoint needs of a bridge: an origin and ``send``."""

    origin = "discord-interactions"

    def __init__(self) -> None:
        self.sent: list[ChatMessage] = []

    async def send(self, message: ChatMessage) -> None:
        self.sent.append(message)


def _signed_ask(key: nacl.signing.SigningKey, interaction_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({
        "id": interaction_id, "application_id": "77", "type": 2, "token": "tok",
        "channel_id": "5", "guild_id": "7", "member": {"user": {"id": "2", "username": "a"}},
        "data": {"name": "ask", "options": [{"name": "question", "value": "2+2?"}]},
    }).encode()
    stamp = str(int(time.time()))
    signature = key.sign(stamp.encode() + body).signature.hex()
    return body, {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": stamp,
                  "Content-Type": "application/json"}


@pytest.mark.timeout(20)
async def test_the_interactions_endpoint_sends_the_bots_limits() -> None:
    key = nacl.signing.SigningKey.generate()
    bridge = _SentBridge()
    configs = [BotConfig(name="app", token="t", max_answer_chars=900, max_tokens=300,
                         profile="architect")]

    async def bot_config() -> BotConfig:
        if not configs:
            raise BotConfigError("no bot named 'app'")
        return configs[0]

    endpoint = InteractionsEndpoint(key.verify_key.encode().hex(), bridge,  # type: ignore[arg-type]
                                    Mock(), BotServices(), bot_config=bot_config)
    async with TestClient(TestServer(endpoint.app())) as client:
        for interaction_id in ("101", "102"):
            body, headers = _signed_ask(key, interaction_id)
            response = await client.post(PATH, data=body, headers=headers)
            assert (response.status, await response.json()) == (200, {"type": 5})
            configs.clear()  # the second request: the bot's configuration cannot be read
    with_limits, without = bridge.sent
    assert with_limits.addressed and _limits_of(with_limits) == (900, 300, "architect")
    assert without.addressed and _limits_of(without) == (0, 0, "")  # still sent


def _limits_of(request: ChatMessage) -> tuple[int, int, str]:
    return request.max_answer_chars, request.max_tokens, request.profile


async def test_the_interactions_bot_is_read_from_the_bots_bucket(nats_url: str) -> None:
    topology = load_topology()
    nc = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    try:
        js = nc.jetstream()
        assert await interactions_bot_config(js, topology, None) is None
        with pytest.raises(BotConfigError, match="no bot named 'app'"):
            await interactions_bot_config(js, topology, "app")
        store = await BotStore.open(js, topology.subjects)
        await store.put(BotConfig(name="app", token="t", max_tokens=300))
        read = await interactions_bot_config(js, topology, "app")
        assert read is not None and (await read()).max_tokens == 300
        await store.put(BotConfig(name="app", token="t", max_tokens=50))  # `bots set`
        assert (await read()).max_tokens == 50
    finally:
        await nc.close()
