"""Reusable helpers: the stand-in as a pytest fixture, and a running ``SwitchboardBot`` on it.

In a test module (tests/ is on ``sys.path`` under pytest)::

    from discord_standin.fixtures import discord_standin, running_bot  # noqa: F401

    async def test_x(nats_url, discord_standin):
        async with running_bot(nats_url, discord_standin) as bot:
            await discord_standin.post_user_message(discord_standin.channel_id,
                                                    discord_standin.alice["id"], "hi")
            await discord_standin.wait_for(lambda: discord_standin.bot_messages(), timeout=30)

The fixture fails the test when the bot called a route the stand-in does not know.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from actors.bus import connect, provision
from actors.config import Settings, load_topology
from gateway.discord import SwitchboardBot, configure_discord_endpoints, current_endpoints
from gateway.discord import discord_gateway as _discord_gateway
from protocol import Subjects

from ._standin import DiscordStandIn


@pytest_asyncio.fixture
async def discord_standin() -> AsyncIterator[DiscordStandIn]:
    """A started stand-in; asserts on teardown that no unknown route was called."""
    async with DiscordStandIn() as standin:
        yield standin
        standin.assert_no_unknown_routes()


async def provision_streams(nats_url: str, prefix: str = "sb") -> None:
    """Create Switchboard's shared streams and the classifier's stream (what the bridge checks)."""
    topology = load_topology().model_copy(update={"prefix": prefix})
    nc = await connect(nats_url, name="test/provision", reconnect=False)
    try:
        await provision(nc.jetstream(), topology, ["classifier"])
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def running_bot(
    nats_url: str,
    standin: DiscordStandIn,
    *,
    prefix: str = "sb",
    provision_first: bool = True,
    durable: bool = False,
    edit_interval_s: float = 0.05,
    ready_timeout_s: float = 20.0,
    **bot_options: Any,
) -> AsyncIterator[SwitchboardBot]:
    """A ``SwitchboardBot`` logged in to ``standin``, bridged to NATS at ``nats_url``, ready.

    discord.py's endpoints are pointed at the stand-in for the duration and restored after.

    Args:
        prefix: subject prefix of the deployment under test.
        provision_first: create the streams first (set False when actors provision them).
        durable: read the outbox through a durable consumer, as production does.
        edit_interval_s: status edit throttle (small, so tests are quick).
        **bot_options: more ``SwitchboardBot`` options (``dms``, ...).
    """
    if provision_first:
        await provision_streams(nats_url, prefix)
    settings = Settings(NATS_URL=nats_url, DISCORD_TOKEN=standin.token,
                        DISCORD_API_BASE=standin.api_base,
                        DISCORD_GATEWAY_URL=standin.gateway_url)
    saved = current_endpoints()
    bot_options.setdefault("guild_ready_timeout", 0.1)
    try:
        async with _discord_gateway(settings, Subjects(prefix), durable=durable,
                                    ready_timeout_s=ready_timeout_s,
                                    edit_interval_s=edit_interval_s, **bot_options) as bot:
            yield bot
    finally:
        configure_discord_endpoints(*saved)
