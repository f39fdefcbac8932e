"""The bot pool: bots configured in JetStream KV, started, reconfigured,
restarted and stopped live; a bad token fails only its bot; ``switchboard bots``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from discord_standin import DiscordStandIn
from discord_standin.fake_actors import FakeActors, actors  # noqa: F401 - fixture
from discord_standin.fixtures import discord_standin, running_pool  # noqa: F401 - fixture
from waiting import eventually

from gateway.config import BotConfig, load_bots_file
from gateway.errors import BotConfigError
from gateway.pool import BotPool
from switchboard.cli import main

TIMEOUT_S = 30.0


async def _running(pool: BotPool, *names: str) -> None:
    await pool.wait_for(lambda: all(n in pool.runners for n in names), timeout_s=TIMEOUT_S)


async def test_bots_start_reconfigure_restart_and_stop_from_kv(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    first, second = s.bot, s.add_bot("Second")
    async with running_pool(nats_url, s) as pool:
        await pool.store.put(BotConfig(name="one", token=first.token))
        await pool.store.put(BotConfig(name="two", token=second.token, profile="python_coder"))
        await _running(pool, "one", "two")

        # Each bot answers its own mentions, with its own origin.
        await s.post_user_message(s.channel_id, s.alice["id"], "hi one", bot=first)
        one = await actors.next()
        await s.post_user_message(s.channel_id, s.alice["id"], "hi two", bot=second)
        two = await actors.next()
        assert (one.text, one.origin) == ("hi one", f"discord-{first.user['id']}")
        assert (two.text, two.origin) == ("hi two", f"discord-{second.user['id']}")
        await actors.reply(one, "from one")
        await actors.reply(two, "from two")
        [answer] = await s.wait_for(lambda: s.bot_messages(s.channel_id, bot=second),
                                    timeout=TIMEOUT_S)
        assert answer["content"] == "from two"

        # A channel allowlist applies without a restart.
        bot_two = pool.runners["two"].bot
        await pool.store.put(BotConfig(name="two", token=second.token,
                                       channels=(s.second_channel_id,)))
        await pool.wait_for(lambda: pool.configs["two"].channels == (s.second_channel_id,),
                            timeout_s=TIMEOUT_S)
        assert pool.runners["two"].bot is bot_two
        await s.post_user_message(s.channel_id, s.alice["id"], "not here", bot=second)
        await s.post_user_message(s.second_channel_id, s.alice["id"], "here", bot=second)
        assert (await actors.next()).text == "here"

        # A new token restarts that bot only.
        bot_one = pool.runners["one"].bot
        token = s.rotate_token(second)
        await pool.store.put(BotConfig(name="two", token=token,
                                       channels=(s.second_channel_id,)))
        await pool.wait_for(lambda: "two" in pool.runners and
                            pool.runners["two"].bot is not bot_two, timeout_s=TIMEOUT_S)
        await _running(pool, "two")
        assert pool.runners["one"].bot is bot_one
        assert (await pool.store.status("two")).state == "running"  # type: ignore[union-attr]
        await s.post_user_message(s.second_channel_id, s.alice["id"], "after", bot=second)
        assert (await actors.next()).origin == f"discord-{second.user['id']}"

        # Removing a bot stops it; the other keeps answering.
        await pool.store.remove("two")
        await pool.wait_for(lambda: "two" not in pool.runners, timeout_s=TIMEOUT_S)
        assert bot_two.is_closed()
        await s.post_user_message(s.channel_id, s.alice["id"], "still one", bot=first)
        assert (await actors.next()).text == "still one"


async def test_a_bad_token_fails_that_bot_only(
        nats_url: str, discord_standin: DiscordStandIn, actors: FakeActors) -> None:  # noqa: F811
    s = discord_standin
    default = BotConfig(name="default", token=s.bot.token)
    async with running_pool(nats_url, s, default=default) as pool:
        await pool.store.put(BotConfig(name="broken", token="not-a-real-token"))
        await pool.wait_for(lambda: "default" in pool.runners and "broken" in pool.configs,
                            timeout_s=TIMEOUT_S)

        async def failed() -> bool:
            status = await pool.store.status("broken")
            return status is not None and status.state == "failed"

        await eventually(failed, within_s=TIMEOUT_S, what="the broken bot marked failed")
        status = await pool.store.status("broken")
        assert status is not None and "rejected the token" in status.error
        assert "broken" not in pool.runners
        await s.post_user_message(s.channel_id, s.alice["id"], "default works")
        assert (await actors.next()).text == "default works"


async def test_the_pool_stops_every_bot_on_shutdown(
        nats_url: str, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    bots = [s.bot, s.add_bot("B2"), s.add_bot("B3")]
    async with running_pool(nats_url, s) as pool:
        for i, bot in enumerate(bots):
            await pool.store.put(BotConfig(name=f"b{i}", token=bot.token))
        await _running(pool, "b0", "b1", "b2")
        clients = [r.bot for r in pool.runners.values()]
    assert all(c.is_closed() for c in clients)


def test_bots_cli_add_list_set_remove_load(nats_url: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", "token-abcdefghijklmnop")

    def run(*args: str) -> tuple[int, str]:
        code = main(["--nats-url", nats_url, "bots", *args])
        return code, capsys.readouterr().out

    assert run("add", "helper", "--token-env", "BOT_TOKEN", "--profile", "python_coder",
               "--dms", "no", "--guilds", "1,2")[0] == 0
    code, out = run("add", "helper", "--token", "x" * 20)
    assert code == 2 and "exists" in out
    code, out = run("list", "--json")
    [row] = json.loads(out)
    assert row["name"] == "helper" and row["profile"] == "python_coder"
    assert row["dms"] is False and row["guilds"] == ["1", "2"]
    assert row["token"] == "toke…mnop" and "abcdefghijklmnop" not in out
    code, out = run("set", "helper", "--channels", "7", "--models", "2=openai/gpt-4o-mini")
    assert code == 0 and "without restart" in out
    code, out = run("set", "helper", "--token", "another-token-0123456789")
    assert code == 0 and "restarts" in out
    code, out = run("add", "bad", "--token", "t" * 20, "--profile", "nobody")
    assert code == 2 and "unknown agent profile" in out

    file = tmp_path / "bots.yaml"
    file.write_text("bots:\n  - name: a\n    token: tok-aaaaaaaaaaaaaaa\n"
                    "  - name: b\n    token: tok-bbbbbbbbbbbbbbb\n    dms: false\n")
    assert run("load", str(file))[0] == 0
    code, out = run("list")
    assert code == 0 and all(name in out for name in ("helper", "a ", "b "))
    assert run("remove", "a")[0] == 0
    code, out = run("remove", "a")
    assert code == 2 and "no bot named 'a'" in out
    names = [r["name"] for r in json.loads(run("list", "--json")[1])]
    assert names == ["b", "helper"]


def test_bots_file_errors_name_the_field_not_the_token(tmp_path: Path) -> None:
    file = tmp_path / "bots.yaml"
    file.write_text("- name: ok\n  token: secret-token-value\n  models: {'9': x}\n")
    with pytest.raises(BotConfigError, match="models") as caught:
        load_bots_file(file)
    assert "secret-token-value" not in str(caught.value)
    file.write_text("bots:\n  x: {token: secret-token-value, channels: ['5']}\n")
    [bot] = load_bots_file(file)
    assert bot.channels == ("5",) and bot.allows(1, (5, None)) and not bot.allows(1, (6, 7))
