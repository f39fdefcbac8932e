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

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest_asyncio
from nats.js.kv import KeyValue

from core.config import Settings, load_topology
from gateway.bridge import Bridge
from gateway.config import BotConfig, GatewaySettings
from gateway.discord import SwitchboardBot, configure_discord_endpoints, current_endpoints
from gateway.discord import discord_gateway as _discord_gateway
from gateway.kv import limits_bucket
from gateway.pool import BotPool, BotStore
from protocol import Subjects
from runtime.bus import connect, provision

from ._standin import DiscordStandIn


@pytest_asyncio.fixture
async def limits_kv(nats_url: str) -> AsyncIterator[KeyValue]:
    """The gateway's rate-limit bucket on the test's nats-server."""
    nc = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    try:
        yield await limits_bucket(nc.jetstream(), Subjects("sb"))
    finally:
        await nc.close()


@pytest_asyncio.fixture
async def discord_standin() -> AsyncIterator[DiscordStandIn]:
    """A started stand-in; asserts on teardown that no unknown route was called."""
    async with DiscordStandIn() as standin:
        yield standin
        standin.assert_no_unknown_routes()


async def provision_streams(nats_url: str, prefix: str = "sb", *, all_roles: bool = False
                            ) -> None:
    """Create Switchboard's shared streams and the classifier's stream (what the bridge
    checks); with ``all_roles`` every role's stream (controls go to the reflector and roles)."""
    topology = load_topology().model_copy(update={"prefix": prefix})
    nc = await connect(nats_url, name="test/provision", reconnect=False)
    try:
        await provision(nc.jetstream(), topology,
                        topology.roles if all_roles else ["classifier"])
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def running_bot(
    nats_url: str,
    standin: DiscordStandIn,
    *,
    prefix: str = "sb",
    provision_first: bool = True,
    all_roles: bool = False,
    durable: bool = False,
    edit_interval_s: float = 0.05,
    ready_timeout_s: float = 20.0,
    gateway: GatewaySettings | None = None,
    **bot_options: Any,
) -> AsyncIterator[SwitchboardBot]:
    """A ``SwitchboardBot`` logged in to ``standin``, bridged to NATS at ``nats_url``, ready.

    discord.py's endpoints are pointed at the stand-in for the duration and restored after.

    Args:
        prefix: subject prefix of the deployment under test.
        provision_first: create the streams first (set False when actors provision them).
        all_roles: provision every role's stream (for controls), not only the classifier's.
        durable: read the outbox through a durable consumer, as production does.
        edit_interval_s: status edit throttle (small, so tests are quick).
        gateway: gateway settings (default: no debounce, so tests are quick).
        **bot_options: more ``SwitchboardBot`` options (``dms``, ``config``, ``services``).
    """
    if provision_first:
        await provision_streams(nats_url, prefix, all_roles=all_roles)
    settings = Settings(NATS_URL=nats_url, DISCORD_TOKEN=standin.token,
                        DISCORD_API_BASE=standin.api_base,
                        DISCORD_GATEWAY_URL=standin.gateway_url)
    saved = current_endpoints()
    bot_options.setdefault("guild_ready_timeout", 0.1)
    try:
        async with _discord_gateway(settings, Subjects(prefix), durable=durable,
                                    ready_timeout_s=ready_timeout_s,
                                    gateway=gateway or GatewaySettings(debounce_s=0),
                                    edit_interval_s=edit_interval_s, **bot_options) as bot:
            yield bot
    finally:
        configure_discord_endpoints(*saved)


@contextlib.asynccontextmanager
async def running_pool(
    nats_url: str,
    standin: DiscordStandIn,
    *,
    prefix: str = "sb",
    all_roles: bool = False,
    default: BotConfig | None = None,
    gateway: GatewaySettings | None = None,
    **bot_options: Any,
) -> AsyncIterator[BotPool]:
    """A ``BotPool`` over the bots bucket, its bots logged in to ``standin``; stopped on exit.

    Put configurations with ``pool.store.put(...)`` and wait with ``pool.wait_for(...)``.
    """
    await provision_streams(nats_url, prefix, all_roles=all_roles)
    saved = current_endpoints()
    configure_discord_endpoints(standin.api_base, standin.gateway_url)
    nc = await connect(nats_url, name="test/pool", reconnect=False)
    subjects = Subjects(prefix)
    store = await BotStore.open(nc.jetstream(), subjects)

    async def bridge_for(origin: str) -> Bridge:
        return Bridge(nc, subjects, origin)

    settings = gateway or GatewaySettings(debounce_s=0, edit_interval_s=0.05,
                                          guild_ready_timeout_s=0.1, ready_timeout_s=20)
    pool = BotPool(store, bridge_for, settings, default=default, durable=False, **bot_options)
    task = asyncio.create_task(pool.run(), name="test-pool")
    try:
        yield pool
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(30):
                await task
        await nc.close()
        configure_discord_endpoints(*saved)
