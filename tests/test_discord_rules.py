"""What a Discord message carries for the rules: the genuine discord.py
client (and the signed Interactions endpoint) against the local stand-in of Discord sends its
requests over a real nats-server (the test plays the actors, FakeActors) and the router
decides on what arrived: a ``bot:`` rule names the bot as ``switchboard bots`` does, a
``channel:`` rule still holds in the bot's thread opened from that channel."""

from __future__ import annotations

import json
import socket
import time

import aiohttp
import nacl.signing
from aiohttp import web
from discord_standin import DiscordStandIn
from discord_standin.fake_actors import FakeActors, actors  # noqa: F401 - fixture
from discord_standin.fixtures import (  # noqa: F401 - fixtures
    discord_standin,
    provision_streams,
    running_bot,
)
from waiting import eventually

from actors.router import route_message
from core.config import Settings, Topology, load_topology
from gateway.bridge import connect_bridge
from gateway.config import BotConfig
from gateway.interactions import InteractionsEndpoint, InteractionWebhooks
from gateway.interactions._run import ORIGIN
from gateway.services import BotServices
from protocol import Flow, Subjects

TIMEOUT_S = 20.0


def _topology(channel_id: str) -> Topology:
    base = load_topology()
    return base.model_validate({**base.model_dump(mode="json", exclude_unset=True), "rules": [
        {"name": "docs-bot", "when": {"bot": ["docs"]}, "then": {"role": "documentation_writer"}},
        {"name": "coder-bot", "when": {"bot": ["coder"]}, "then": {"refuse": "Not me."}},
        {"name": "ops-channel", "when": {"channel": [channel_id]}, "then": {"tier_max": 1}},
    ]})


async def test_bot_and_channel_rules_hold_for_discord_messages_and_threads(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    topology = _topology(s.channel_id)
    config = BotConfig(name="docs", token=s.token)
    async with running_bot(nats_url, s, config=config) as bot:
        task = await s.post_user_message(s.channel_id, s.alice["id"], "what is a queue?")
        request = await actors.next()
        route = await route_message(request, topology, ask=None)
        await actors.progress(request, "classified", flow=Flow.SEQUENTIAL)
        thread = await s.wait_for(lambda: s.threads_from(task["id"]), timeout=TIMEOUT_S)
        await actors.reply(request, "A first-in, first-out line.", flow=Flow.SEQUENTIAL)
        await eventually(lambda: not bot.intake.busy(request.session), within_s=TIMEOUT_S,
                         what="the answer frees the thread")

        await s.post_user_message(thread["id"], s.alice["id"], "and a stack?")
        follow = await actors.next()
        assert follow.channel_id == thread["id"] and follow.session == request.session
        in_thread = await route_message(follow, topology, ask=None)
        await actors.reply(follow, "Last in, first out.")
        await eventually(lambda: not bot.intake.busy(request.session), within_s=TIMEOUT_S,
                         what="the answer frees the thread")

        await s.run_command(thread["id"], s.alice["id"], "ask", {"question": "and a heap?"})
        command = await actors.next()
        assert command.channel_id == thread["id"]
        by_command = await route_message(command, topology, ask=None)
        await actors.reply(command, "A tree.")
    decided = [(r.role, r.decided_by, r.tier_max, r.refusal)
               for r in (route, in_thread, by_command)]
    assert decided == [("documentation_writer", "rule:docs-bot", 1, "")] * 3


async def test_a_channel_rule_holds_for_ask_in_a_thread_through_the_interactions_endpoint(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    topology = _topology(s.channel_id)
    thread = await s.start_thread(s.channel_id, s.alice["id"], "pairing")
    await provision_streams(nats_url, all_roles=True)
    key = nacl.signing.SigningKey.generate()
    bridge = await connect_bridge(Settings(), Subjects("sb"), ORIGIN, nats_url=nats_url)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    async with aiohttp.ClientSession() as http:
        server = InteractionsEndpoint(key.verify_key.encode().hex(), bridge,
                                      InteractionWebhooks(http, s.api_base),
                                      BotServices(breakglass_users=frozenset()))
        await bridge.start(server.on_outbound)
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        try:
            interaction = s.interactions.create(s.bot, thread["id"], s.alice, "ask",
                                                {"question": "what is a heap?"})
            body = json.dumps(interaction).encode()
            stamp = str(int(time.time()))
            signature = key.sign(stamp.encode() + body).signature.hex()
            async with http.post(f"http://127.0.0.1:{sock.getsockname()[1]}/interactions",
                                 data=body, headers={
                                     "X-Signature-Ed25519": signature,
                                     "X-Signature-Timestamp": stamp,
                                     "Content-Type": "application/json"}) as response:
                assert response.status == 200
            request = await actors.next()
        finally:
            await runner.cleanup()
            await bridge.stop()
    assert request.channel_id == thread["id"]
    route = await route_message(request, topology, ask=None)
    assert (route.tier_max, route.decided_by) == (1, "")  # the channel's rule; no bot's name
