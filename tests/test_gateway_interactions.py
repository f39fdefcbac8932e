"""The Discord Interactions HTTP endpoint: requests signed by a test key are
answered (PING → PONG, commands deferred and delivered through the stand-in's webhooks);
forged, replayed (stale) and malformed ones get 401."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import nacl.signing
import nats
import pytest
import pytest_asyncio
from aiohttp import web
from discord_standin import DiscordStandIn, HttpEndpoint
from discord_standin._payloads import MANAGE_MESSAGES, MEMBER_PERMISSIONS
from discord_standin.fake_actors import FakeActors, actors  # noqa: F401 - fixture
from discord_standin.fixtures import discord_standin, provision_streams  # noqa: F401 - fixture

from core.config import Settings
from gateway.bridge import connect_bridge
from gateway.errors import SignatureError
from gateway.interactions import InteractionsEndpoint, InteractionWebhooks, verify
from gateway.interactions._run import ORIGIN, parse_listen
from gateway.kv import messages_bucket
from gateway.services import BotServices
from protocol import ApprovalCall, ApprovalRequest, ControlAction, Subjects

TIMEOUT_S = 20.0


@dataclass
class Endpoint:
    url: str
    key: nacl.signing.SigningKey
    http: aiohttp.ClientSession

    async def post(self, body: bytes, *, key: nacl.signing.SigningKey | None = None,
                   timestamp: str | None = None, signature: str | None = None,
                   ) -> tuple[int, Any]:
        ts = timestamp or str(int(time.time()))
        sig = signature or (key or self.key).sign(ts.encode() + body).signature.hex()
        headers = {"X-Signature-Ed25519": sig, "X-Signature-Timestamp": ts,
                   "Content-Type": "application/json"}
        async with self.http.post(self.url, data=body, headers=headers) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text


@pytest_asyncio.fixture
async def endpoint(nats_url: str, discord_standin: DiscordStandIn  # noqa: F811
                   ) -> AsyncIterator[Endpoint]:
    await provision_streams(nats_url, all_roles=True)
    async with _endpoint(nats_url, discord_standin, nacl.signing.SigningKey.generate(),
                         BotServices(breakglass_users=frozenset())) as running:
        yield running


@contextlib.asynccontextmanager
async def _endpoint(nats_url: str, standin: DiscordStandIn, key: nacl.signing.SigningKey,
                    services: BotServices) -> AsyncIterator[Endpoint]:
    """An Interactions endpoint process's worth: its bridge, server and listening socket."""
    bridge = await connect_bridge(Settings(), Subjects("sb"), ORIGIN, nats_url=nats_url)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    async with aiohttp.ClientSession() as http:
        server = InteractionsEndpoint(
            key.verify_key.encode().hex(), bridge,
            InteractionWebhooks(http, standin.api_base), services, edit_interval_s=0.05)
        await bridge.start(server.on_outbound)
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        try:
            yield Endpoint(f"http://127.0.0.1:{sock.getsockname()[1]}/interactions", key, http)
        finally:
            await runner.cleanup()
            await bridge.stop()


async def test_ping_and_a_deferred_ask_answered_through_the_webhook(
        endpoint: Endpoint, discord_standin: DiscordStandIn,  # noqa: F811
        actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    assert await endpoint.post(b'{"type": 1, "id": "1", "application_id": "2"}') == (
        200, {"type": 1})

    interaction = s.interactions.create(s.bot, s.channel_id, s.alice, "ask",
                                        {"question": "write a long story"})
    status, answer = await endpoint.post(json.dumps(interaction).encode())
    assert (status, answer) == (200, {"type": 5})
    await s.interactions.acknowledge(interaction["token"], answer)  # what Discord does with it

    request = await actors.next()
    assert (request.text, request.origin, request.user_id) == (
        "write a long story", ORIGIN, s.alice["id"])
    assert request.message_id == interaction["id"]
    await actors.progress(request, "classified")
    await actors.progress(request, "stream", text="Once upon")
    await s.wait_for(lambda: any(e.content.startswith("Once upon") for e in s.edits),
                     timeout=TIMEOUT_S, what="progress in the original response")
    story = "\n\n".join(f"Paragraph {i}. " + "words " * 60 for i in range(12))
    await actors.reply(request, story)

    def delivered() -> list[dict[str, Any]]:
        messages = s.interactions.responses(interaction["token"])
        return messages if len(messages) > 1 and messages[-1]["content"].strip().endswith(
            "words") and "Paragraph 11." in messages[-1]["content"] else []

    messages = await s.wait_for(delivered, timeout=TIMEOUT_S, what="the whole answer")
    assert messages[0]["content"].startswith("Paragraph 0.")
    assert all(len(m["content"]) <= 2000 for m in messages)
    assert any(r.startswith("PATCH /api/v10/webhooks/") and r.endswith("@original")
               for r in s.requests)


async def test_quick_commands_answer_at_once(endpoint: Endpoint,
                                             discord_standin: DiscordStandIn,  # noqa: F811
                                             actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    status = s.interactions.create(s.bot, s.channel_id, s.alice, "status")
    code, body = await endpoint.post(json.dumps(status).encode())
    assert code == 200 and body["type"] == 4 and body["data"]["flags"] == 64
    assert "Nothing is running" in body["data"]["content"]
    glass = s.interactions.create(s.bot, s.channel_id, s.alice, "breakglass",
                                  {"question": "x"})
    code, body = await endpoint.post(json.dumps(glass).encode())
    assert code == 200 and "only for the users" in body["data"]["content"]
    stop = s.interactions.create(s.bot, s.channel_id, s.alice, "stop")
    code, body = await endpoint.post(json.dumps(stop).encode())
    assert code == 200 and "Stop requested" in body["data"]["content"]
    _, control = await actors.next_control()
    assert control.session == f"discord-{s.channel_id}-{s.alice['id']}"  # alice's own


async def test_ask_is_each_persons_own_outside_a_thread_and_the_threads_inside(
        endpoint: Endpoint, discord_standin: DiscordStandIn,  # noqa: F811
        actors: FakeActors) -> None:  # noqa: F811
    """Through the signed endpoint: two people's /ask in one channel are
    two sessions; in a thread, both are the thread's; in a DM, the DM's."""
    s = discord_standin
    bob = s.add_user("bob")
    thread = await s.start_thread(s.channel_id, s.alice["id"], "pairing")

    async def ask(channel_id: str, user: dict[str, Any], question: str) -> str:
        interaction = s.interactions.create(s.bot, channel_id, user, "ask",
                                            {"question": question})
        assert await endpoint.post(json.dumps(interaction).encode()) == (200, {"type": 5})
        request = await actors.next()
        assert (request.text, request.user_id) == (question, user["id"])
        return request.session

    alices, bobs = await ask(s.channel_id, s.alice, "a"), await ask(s.channel_id, bob, "b")
    assert alices != bobs and f"discord-{s.channel_id}" not in (alices, bobs)
    assert await ask(s.channel_id, s.alice, "again") == alices
    assert {await ask(thread["id"], s.alice, "c"), await ask(thread["id"], bob, "d")} == {
        f"discord-{thread['id']}"}
    dm = s.dm_channel(s.alice)  # a DM is one person's conversation already
    assert await ask(dm["id"], s.alice, "e") == f"discord-{dm['id']}"


async def test_stop_is_the_askers_or_a_moderators_in_a_shared_thread(
        endpoint: Endpoint, discord_standin: DiscordStandIn,  # noqa: F811
        actors: FakeActors) -> None:  # noqa: F811
    """Through the signed endpoint: in a thread, the run alice's /ask
    started is stopped by her or a member with Manage Messages, not by bob."""
    s = discord_standin
    s.set_permissions(s.everyone, MEMBER_PERMISSIONS)
    bob = s.add_user("bob")
    dave = s.add_user("dave", roles=[s.add_role("moderators",
                                                 MEMBER_PERMISSIONS | MANAGE_MESSAGES)])
    thread = await s.start_thread(s.channel_id, s.alice["id"], "pairing")
    ask = s.interactions.create(s.bot, thread["id"], s.alice, "ask", {"question": "refactor"})
    assert await endpoint.post(json.dumps(ask).encode()) == (200, {"type": 5})
    await actors.next()

    async def stop(user: dict[str, Any]) -> str:
        interaction = s.interactions.create(s.bot, thread["id"], user, "stop")
        status, body = await endpoint.post(json.dumps(interaction).encode())
        assert status == 200
        return str(body["data"]["content"])

    assert "🔒" in await stop(bob)
    assert actors.controls.empty(), "a refused /stop changes nothing"
    for user in (dave, s.alice):
        assert "Stop requested" in await stop(user)
        _, control = await actors.next_control()
        assert (control.action, control.user_id) == (ControlAction.ABORT, user["id"])


async def test_an_approval_is_shown_with_buttons_and_decided_by_the_asker(
        endpoint: Endpoint, discord_standin: DiscordStandIn,  # noqa: F811
        actors: FakeActors) -> None:  # noqa: F811
    """A run's approval request becomes a follow-up with Approve / Deny; a click arrives
    signed at the endpoint: bob's is refused to him alone, alice's Deny goes to the run's role
    and the message then says who decided, without its buttons."""
    s = discord_standin
    s.set_permissions(s.everyone, MEMBER_PERMISSIONS)
    bob = s.add_user("bob")
    ask = s.interactions.create(s.bot, s.channel_id, s.alice, "ask", {"question": "clean up"})
    status, answer = await endpoint.post(json.dumps(ask).encode())
    await s.interactions.acknowledge(ask["token"], answer)
    request = await actors.next()
    await actors.publish(ApprovalRequest(
        session=request.session, origin=request.origin, in_reply_to=request.message_id,
        approval_id="0123456789abcdef", role="python_coder", user_id=s.alice["id"],
        calls=(ApprovalCall(name="run_command", arguments='{"command": "rm -r build"}'),),
        expires_at=time.time() + 600, turn=2))

    def shown() -> dict[str, Any] | None:
        found = [m for m in s.interactions.responses(ask["token"]) if m.get("components")]
        return found[-1] if found else None

    message = await s.wait_for(shown, timeout=TIMEOUT_S, what="the approval follow-up")
    assert "rm -r build" in message["content"]
    buttons = {b["label"]: b["custom_id"] for b in message["components"][0]["components"]}
    assert set(buttons) == {"Approve", "Deny"}
    signed = HttpEndpoint(endpoint.url, endpoint.key)

    refused = await s.click_button(message["channel_id"], message["id"], bob["id"],
                                   buttons["Approve"], endpoint=signed)
    code, body = s.interactions.by_token[refused["token"]]["endpoint_answer"]
    assert code == 200 and body["type"] == 4 and body["data"]["flags"] & (1 << 6), body
    assert actors.controls.empty(), "a refused click changes nothing"

    await s.click_button(message["channel_id"], message["id"], s.alice["id"], buttons["Deny"],
                         endpoint=signed)
    subject, control = await actors.next_control()
    assert subject == "sb.task.python_coder"
    assert (control.action, control.approval_id, control.user_id, control.session) == (
        ControlAction.DENY, "0123456789abcdef", s.alice["id"], request.session)
    decided = s.by_id[message["id"]]
    assert not decided["components"] and f"<@{s.alice['id']}>" in decided["content"]


async def test_an_approval_shown_before_a_restart_is_decided_after_it(
        nats_url: str, discord_standin: DiscordStandIn,  # noqa: F811
        actors: FakeActors) -> None:  # noqa: F811
    """The endpoint keeps what it showed in the gateway's messages bucket: a click that
    reaches the next endpoint process is still decided."""
    s = discord_standin
    await provision_streams(nats_url, all_roles=True)
    nc = await nats.connect(nats_url)
    try:
        bucket = await messages_bucket(nc.jetstream(), Subjects("sb"))
        key = nacl.signing.SigningKey.generate()
        services = BotServices(breakglass_users=frozenset(), messages=bucket)
        async with _endpoint(nats_url, s, key, services) as first:
            ask = s.interactions.create(s.bot, s.channel_id, s.alice, "ask",
                                        {"question": "clean up"})
            _, answer = await first.post(json.dumps(ask).encode())
            await s.interactions.acknowledge(ask["token"], answer)
            request = await actors.next()
            await actors.publish(ApprovalRequest(
                session=request.session, origin=request.origin,
                in_reply_to=request.message_id, approval_id="fedcba9876543210",
                role="dba", user_id=s.alice["id"], expires_at=time.time() + 600,
                calls=(ApprovalCall(name="run_command", arguments="{}"),)))
            message = await s.wait_for(lambda: next((
                m for m in s.interactions.responses(ask["token"]) if m.get("components")),
                None), timeout=TIMEOUT_S, what="the approval follow-up")
        async with _endpoint(nats_url, s, key, BotServices(
                breakglass_users=frozenset(), messages=bucket)) as second:
            approve = message["components"][0]["components"][0]["custom_id"]
            await s.click_button(message["channel_id"], message["id"], s.alice["id"],
                                 approve, endpoint=HttpEndpoint(second.url, second.key))
            subject, control = await actors.next_control()
        assert subject == "sb.task.dba"
        assert (control.action, control.approval_id) == (ControlAction.APPROVE,
                                                         "fedcba9876543210")
    finally:
        await nc.close()


async def test_forged_replayed_and_malformed_requests_get_401(endpoint: Endpoint) -> None:
    body = b'{"type": 1}'
    forger = nacl.signing.SigningKey.generate()
    assert (await endpoint.post(body, key=forger))[0] == 401
    stale = str(int(time.time()) - 600)
    assert (await endpoint.post(body, timestamp=stale))[0] == 401
    assert (await endpoint.post(body, signature="zz" * 64))[0] == 401
    assert (await endpoint.post(body, signature="ab" * 10))[0] == 401
    async with endpoint.http.post(endpoint.url, data=body) as response:
        assert response.status == 401
    signed_other = endpoint.key.sign(b"1700000000" + body).signature.hex()
    assert (await endpoint.post(b'{"type": 2}', signature=signed_other))[0] == 401
    status, _ = await endpoint.post(b"not json")
    assert status == 400


def test_verify_and_listen_parsing() -> None:
    key = nacl.signing.SigningKey.generate()
    ts, body = "1000", b"{}"
    signature = key.sign(ts.encode() + body).signature.hex()
    verify(key.verify_key, signature, ts, body, now=1100)
    with pytest.raises(SignatureError, match="stale"):
        verify(key.verify_key, signature, ts, body, now=1000 + 301)
    with pytest.raises(SignatureError, match="missing"):
        verify(key.verify_key, None, ts, body, now=1000)
    assert parse_listen("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_listen(":9000") == ("0.0.0.0", 9000)


def test_gateway_interactions_needs_the_public_key(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from switchboard.cli import main

    monkeypatch.delenv("DISCORD_PUBLIC_KEY", raising=False)
    assert main(["gateway", "--interactions", "127.0.0.1:0"]) == 2
    assert "DISCORD_PUBLIC_KEY is not set" in capsys.readouterr().out
