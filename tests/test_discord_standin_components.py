"""The Discord stand-in's message components and component interactions, through the genuine
discord.py client (views, a dynamic item) and raw REST / an HTTP Interactions endpoint.

Outcomes are asserted on the stand-in's records and Discord's error codes, never on discord.py's
wording.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import nacl.signing
import pytest
import pytest_asyncio
from aiohttp import web
from discord_standin import DiscordStandIn, HttpEndpoint
from discord_standin._components import FormError, checked
from discord_standin.fixtures import discord_standin  # noqa: F401 - fixture

from core.tasks import cancel_and_wait
from gateway.discord import configure_discord_endpoints, current_endpoints
from gateway.interactions import verify

TIMEOUT_S = 20.0


# ---------------------------------------------------------------------- a discord.py client


@pytest_asyncio.fixture
async def client(discord_standin: DiscordStandIn  # noqa: F811
                 ) -> AsyncIterator[discord.Client]:
    """A plain discord.py client logged in to the stand-in as its first bot, ready."""
    s = discord_standin
    saved = current_endpoints()
    configure_discord_endpoints(s.api_base, s.gateway_url)
    intents = discord.Intents.none()
    intents.guilds = intents.guild_messages = intents.dm_messages = True
    bot = discord.Client(intents=intents, guild_ready_timeout=0.1)
    connection: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await bot.login(s.token)
            connection = asyncio.create_task(bot.connect(reconnect=False), name="test-client")
            await bot.wait_until_ready()
        yield bot
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(TIMEOUT_S):
                await bot.close()
        if connection is not None:
            await cancel_and_wait(connection, timeout_s=TIMEOUT_S, what="test client")
        configure_discord_endpoints(*saved)


def _general(bot: discord.Client, s: DiscordStandIn) -> discord.TextChannel:
    channel = bot.get_channel(int(s.channel_id))
    assert isinstance(channel, discord.TextChannel)
    return channel


class Approval(discord.ui.View):
    """Approve / Deny, each answering with UPDATE_MESSAGE (7) and removing the buttons."""

    def __init__(self) -> None:
        super().__init__(timeout=None)
        self.clicks: list[tuple[str, int]] = []

    @discord.ui.button(label="Approve", style=discord.ButtonStyle.success, custom_id="approve")
    async def approve(self, interaction: discord.Interaction,
                      button: discord.ui.Button[Approval]) -> None:
        self.clicks.append(("approve", interaction.user.id))
        await interaction.response.edit_message(content="Approved", view=None)

    @discord.ui.button(label="Deny", style=discord.ButtonStyle.danger, custom_id="deny")
    async def deny(self, interaction: discord.Interaction,
                   button: discord.ui.Button[Approval]) -> None:
        self.clicks.append(("deny", interaction.user.id))
        await interaction.response.edit_message(content="Denied", view=None)


class RunApproval(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
                  template=r"run:(?P<run>[0-9]+):approve"):
    """A button that outlives the process: found again by its custom_id's template. Answers
    with DEFERRED_UPDATE_MESSAGE (6), then edits the message through @original."""

    def __init__(self, run: int) -> None:
        super().__init__(discord.ui.Button(label="Approve run", custom_id=f"run:{run}:approve",
                                           style=discord.ButtonStyle.success))
        self.run = run

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: re.Match[str]) -> RunApproval:
        return cls(int(match["run"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content=f"Run {self.run} approved", view=None)


async def test_a_view_button_click_updates_the_message(
        client: discord.Client, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    view = Approval()
    sent = await _general(client, s).send("Run `rm -rf build`?", view=view)
    mid = str(sent.id)
    stored = s.by_id[mid]
    [row] = stored["components"]
    assert [(b["custom_id"], b["style"], b["type"]) for b in row["components"]] == [
        ("approve", 3, 2), ("deny", 4, 2)]
    assert len({row["id"], *(b["id"] for b in row["components"])}) == 3  # ids given
    created = [m for m in s.dispatched("MESSAGE_CREATE") if m["id"] == mid]
    assert created[0]["components"] == stored["components"]

    click = await s.click_button(s.channel_id, mid, s.alice["id"], "approve")
    assert click["type"] == 3 and click["data"]["custom_id"] == "approve"
    assert click["message"]["components"] == stored["components"]
    record = await s.wait_for(lambda: s.interactions.by_token[click["token"]]["callbacks"],
                              timeout=TIMEOUT_S, what="the view's answer")
    assert [c["type"] for c in record] == [7]
    assert view.clicks == [("approve", int(s.alice["id"]))]
    assert (stored["content"], stored["components"]) == ("Approved", [])
    assert s.interactions.responses(click["token"]) == [stored]
    updates = [m for m in s.dispatched("MESSAGE_UPDATE") if m["id"] == mid]
    assert updates[-1]["content"] == "Approved" and updates[-1]["components"] == []

    with pytest.raises(ValueError, match="no button"):  # the buttons are gone
        await s.click_button(s.channel_id, mid, s.alice["id"], "deny")


async def test_a_dynamic_item_defers_then_edits_the_original(
        client: discord.Client, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    client.add_dynamic_items(RunApproval)
    view = discord.ui.View(timeout=None)
    view.add_item(RunApproval(42))
    sent = await _general(client, s).send("Run 42 needs approval", view=view)
    mid = str(sent.id)

    click = await s.click_button(s.channel_id, mid, s.alice["id"], "run:42:approve")
    await s.wait_for(lambda: s.by_id[mid]["content"] == "Run 42 approved", timeout=TIMEOUT_S,
                     what="the dynamic item's edit")
    record = s.interactions.by_token[click["token"]]
    assert [c["type"] for c in record["callbacks"]] == [6]
    assert record["original"] == mid and s.by_id[mid]["components"] == []
    assert any(r.startswith("PATCH /api/v10/webhooks/") and r.endswith("/messages/@original")
               for r in s.requests)
    assert [m["content"] for m in s.dispatched("MESSAGE_UPDATE") if m["id"] == mid] == [
        "Run 42 approved"]


async def test_a_custom_id_over_100_characters_is_refused(
        client: discord.Client, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    view = discord.ui.View()
    view.add_item(discord.ui.Button(label="Go", custom_id="x" * 101))
    with pytest.raises(discord.HTTPException) as refused:
        await _general(client, s).send("too long", view=view)
    assert (refused.value.status, refused.value.code) == (400, 50035)
    assert s.bot_messages(s.channel_id) == []


class AnsweredTwice(discord.ui.View):
    """Answers one click twice at once (two handlers racing): Discord takes the first."""

    def __init__(self) -> None:
        super().__init__(timeout=None)
        self.outcomes: list[BaseException | object] = []
        self.answered = asyncio.Event()

    @discord.ui.button(label="Go", custom_id="go")
    async def go(self, interaction: discord.Interaction,
                 button: discord.ui.Button[AnsweredTwice]) -> None:
        self.outcomes = [*await asyncio.gather(
            interaction.response.defer(),
            interaction.response.edit_message(content="Gone", view=None),
            return_exceptions=True)]
        self.answered.set()


async def test_a_second_response_gets_40060(
        client: discord.Client, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    view = AnsweredTwice()
    sent = await _general(client, s).send("Go?", view=view)
    click = await s.click_button(s.channel_id, str(sent.id), s.alice["id"], "go")
    async with asyncio.timeout(TIMEOUT_S):  # the view's own outcome, on the client's side
        await view.answered.wait()
    assert len([r for r in s.requests if r.endswith(f"{click['token']}/callback")]) == 2
    errors = [o for o in view.outcomes if isinstance(o, discord.HTTPException)]
    assert [(e.status, e.code) for e in errors] == [(400, 40060)]
    assert len(s.interactions.by_token[click["token"]]["callbacks"]) == 1


# ---------------------------------------------------------------------- raw REST


async def _rest(s: DiscordStandIn, method: str, path: str, body: Any) -> tuple[int, Any]:
    """A request as the bot makes it (``Bot`` token), answered ``(status, JSON or None)``."""
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.request(
            method, s.api_base + path, json=body,
            headers={"Authorization": f"Bot {s.token}"}) as response:
        text = await response.text()
        return response.status, (await response.json() if text else None)


def _buttons(*custom_ids: str, disabled: bool = False) -> list[dict[str, Any]]:
    return [{"type": 1, "components": [
        {"type": 2, "style": 1, "label": c, "custom_id": c, "disabled": disabled}
        for c in custom_ids]}]


async def test_click_payloads_in_a_guild_and_a_dm(
        discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    status, message = await _rest(s, "POST", f"/channels/{s.channel_id}/messages",
                                  {"content": "ok?", "components": _buttons("yes", "no")})
    assert status == 200 and message["components"][0]["components"][1]["id"] == 3
    click = await s.click_button(s.channel_id, message["id"], s.alice["id"], "no")
    assert click["data"] == {"custom_id": "no", "component_type": 2, "id": 3}
    assert click["member"]["user"]["id"] == s.alice["id"] and "permissions" in click["member"]
    assert "user" not in click and click["guild_id"] == s.guild_id
    with pytest.raises(ValueError, match="no button"):
        await s.click_button(s.channel_id, message["id"], s.alice["id"], "maybe")

    dm = s.dm_channel(s.alice)
    status, message = await _rest(s, "POST", f"/channels/{dm['id']}/messages",
                                  {"components": _buttons("off", disabled=True)})
    assert status == 200  # components alone are a message
    with pytest.raises(ValueError, match="disabled"):
        await s.click_button(dm["id"], message["id"], s.alice["id"], "off")
    status, edited = await _rest(s, "PATCH", f"/channels/{dm['id']}/messages/{message['id']}",
                                 {"components": _buttons("on")})
    assert status == 200 and edited["components"][0]["components"][0]["custom_id"] == "on"
    click = await s.click_button(dm["id"], message["id"], s.alice["id"], "on")
    assert click["user"]["id"] == s.alice["id"] and "member" not in click
    assert click["context"] == 1 and click["message"]["id"] == message["id"]


async def test_callback_types_and_acknowledgement(
        discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    command = s.interactions.create(s.bot, s.channel_id, s.alice, "ask")
    callback = f"/interactions/{command['id']}/{command['token']}/callback"
    status, refused = await _rest(s, "POST", callback, {"type": 7, "data": {"content": "x"}})
    assert (status, refused["code"], list(refused["errors"])) == (400, 50035, ["type"])
    assert await _rest(s, "POST", callback, {"type": 4, "data": {"content": "hi"}}) == (204, None)
    status, again = await _rest(s, "POST", callback, {"type": 4, "data": {"content": "hi"}})
    assert (status, again["code"]) == (400, 40060)
    status, bad = await _rest(s, "POST", f"/webhooks/{s.bot.application['id']}/"
                              f"{command['token']}", {"components": _buttons("a", "a")})
    assert (status, bad["code"]) == (400, 50035)
    assert "custom_id" in bad["errors"]["components"]["0"]["components"]["1"]


def _valid() -> list[dict[str, Any]]:
    return [{"type": 1, "components": [
        {"type": 2, "style": 1, "label": "Approve", "custom_id": "approve"},
        {"type": 2, "style": 5, "label": "Docs", "url": "https://example.com/run/1"}]}]


def _break(change: str) -> list[dict[str, Any]]:
    rows = copy.deepcopy(_valid())
    first, link = rows[0]["components"]
    match change:
        case "six rows":
            rows *= 6
        case "six buttons":
            rows[0]["components"] = [dict(first, custom_id=str(i)) for i in range(6)]
        case "empty row":
            rows[0]["components"] = []
        case "style 7":
            first["style"] = 7
        case "label 81":
            first["label"] = "x" * 81
        case "no custom_id":
            del first["custom_id"]
        case "custom_id 101":
            first["custom_id"] = "x" * 101
        case "url on a non-link":
            first["url"] = "https://example.com"
        case "link without url":
            del link["url"]
        case "link with custom_id":
            link["custom_id"] = "docs"
        case "duplicate custom_id":
            rows.append({"type": 1, "components": [dict(first)]})
        case "button at the top":
            rows = [first]
    return rows


def test_valid_components_get_ids() -> None:
    [row] = checked(_valid())
    assert [row["id"], *(b["id"] for b in row["components"])] == [1, 2, 3]
    given = _valid()
    given[0]["components"][0]["id"] = 2
    [row] = checked(given)
    assert [row["id"], *(b["id"] for b in row["components"])] == [1, 2, 3]


@pytest.mark.parametrize("change", [
    "six rows", "six buttons", "empty row", "style 7", "label 81", "no custom_id",
    "custom_id 101", "url on a non-link", "link without url", "link with custom_id",
    "duplicate custom_id", "button at the top"])
def test_invalid_components_are_refused(change: str) -> None:
    with pytest.raises(FormError) as refused:
        checked(_break(change))
    assert refused.value.body["code"] == 50035 and "components" in refused.value.body["errors"]


# ---------------------------------------------------------------------- HTTP endpoint


async def test_a_click_delivered_to_an_interactions_endpoint(
        discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    key = nacl.signing.SigningKey.generate()
    received: list[dict[str, Any]] = []

    async def interactions(request: web.Request) -> web.Response:
        body = await request.read()
        verify(key.verify_key, request.headers.get("X-Signature-Ed25519"),
               request.headers.get("X-Signature-Timestamp"), body, now=time.time())
        received.append(await request.json())
        return web.json_response({"type": 7, "data": {"content": "Denied", "components": []}})

    app = web.Application()
    app.router.add_post("/interactions", interactions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        endpoint = HttpEndpoint(f"http://127.0.0.1:{sock.getsockname()[1]}/interactions", key)
        _, message = await _rest(s, "POST", f"/channels/{s.channel_id}/messages",
                                 {"content": "Run?", "components": _buttons("deny")})
        click = await s.click_button(s.channel_id, message["id"], s.alice["id"], "deny",
                                     endpoint=endpoint)
    finally:
        await runner.cleanup()
    assert [r["id"] for r in received] == [click["id"]]
    assert received[0]["data"]["custom_id"] == "deny"
    record = s.interactions.by_token[click["token"]]
    assert record["endpoint_answer"][0] == 200
    assert [c["type"] for c in record["callbacks"]] == [7]
    assert (s.by_id[message["id"]]["content"], s.by_id[message["id"]]["components"]) == (
        "Denied", [])
