"""The Discord features through the whole system: `switchboard up` (every actor its own process, a
real nats-server) with the genuine discord.py bot talking to the local stand-in of Discord.

Reactions (🛑, 👍 / 👎 on answers and on commit messages), /status while a run works, files
in and out, per-user memory with two people at once, rate limits, and a deleted thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import nacl.signing
import nats
import nats.js.errors
import pytest
from discord_standin import DiscordStandIn
from discord_standin.fixtures import discord_standin  # noqa: F401 - fixture
from discord_system import SLOW_TIER_2, TASK, wait_until_tracked
from discord_system import containing as _containing
from discord_system import discord_system as _system
from discord_system import user_memory as _memory
from system import REPO, running_system
from waiting import eventually, until

from actors.memory import user_key
from protocol import Subjects, session_decoder
from switchboard.embedded import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
SUBJECTS = Subjects()


async def _session(url: str, session: str) -> Any:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(SUBJECTS.sessions_bucket)
        entry = await kv.get(session)
        assert entry.value is not None
        return session_decoder.decode(entry.value)
    finally:
        await nc.close()


async def test_reactions_commit_merge_feedback_and_thread_deletion(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    async with _system(nats_url, tmp_path, s) as system:
        alice = s.alice["id"]
        hello = await s.post_user_message(s.channel_id, alice, "hello")
        [answer] = await s.wait_for(lambda: _containing(s, s.channel_id, "SB_MODEL"),
                                    timeout=60, what="the answer to hello")
        await s.add_user_reaction(s.channel_id, answer["id"], alice, "👎")
        state = await until(lambda: _session(system.nats_url, f"discord-{hello['id']}"),
                            lambda st: st.confidence != 50 and st.reflections, within_s=30,
                            what="the 👎 applied to the session")
        assert state.confidence == 30  # 50 - 20 (docs/design.md#feedback-and-confidence)
        assert state.reflections, "👎 asks the reflector for a reflection"

        task = await s.post_user_message(s.channel_id, alice, TASK)
        thread = await s.wait_for(lambda: s.threads_from(task["id"]), timeout=60,
                                  what="a thread for the work")
        [commit] = await s.wait_for(lambda: _containing(s, thread["id"], "👍 to merge"),
                                    timeout=120, what="the commit message")
        assert "reverse_string.py" in s.attachment_bytes(commit)
        await wait_until_tracked(s, commit)
        await s.add_user_reaction(thread["id"], commit["id"], alice, "👍")
        await s.wait_for(lambda: _containing(s, thread["id"], "Merged"), timeout=60,
                         what="the merge confirmation")
        workspace = system.data_dir / "workspaces" / f"discord-{thread['id']}"
        assert (workspace / "reverse_string.py").is_file()

        await s.delete_thread(thread["id"])
        await eventually(lambda: not workspace.exists(), within_s=30,
                         what="deleting the thread deletes its workspace")


async def test_stop_reaction_status_command_and_attachments(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    async with _system(nats_url, tmp_path, s, tiers=SLOW_TIER_2) as system:
        alice = s.alice["id"]
        data = b"name,value\nx,1\n"
        task = await s.post_user_message(s.channel_id, alice, TASK,
                                         files={"data.csv": data})
        thread = await s.wait_for(lambda: s.threads_from(task["id"]), timeout=60,
                                  what="a thread for the work")
        [status] = await s.wait_for(lambda: _containing(s, thread["id"], "Turn 1/"),
                                    timeout=60, what="the status message at turn 1")
        interaction = await s.run_command(thread["id"], alice, "status")
        replies = await s.wait_for(lambda: s.interactions.responses(interaction["token"]),
                                   timeout=30, what="the /status answer")
        assert "Turn" in replies[0]["content"] or "turn" in replies[0]["content"], replies
        await s.add_user_reaction(thread["id"], status["id"], alice, "🛑")
        await s.wait_for(lambda: _containing(s, thread["id"], "Stopped at turn"), timeout=60,
                         what="the run stopped at the next turn")
        workspace = system.data_dir / "workspaces" / f"discord-{thread['id']}"
        assert (workspace / "data.csv").read_bytes() == data  # stored before the run


async def test_two_people_at_once_keep_their_own_memory_and_limits_hold(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    bob = s.add_user("bob")
    async with _system(nats_url, tmp_path, s, env={"SB_GATEWAY_USER_RATE": "2"}) as system:
        alice = s.alice["id"]
        await asyncio.gather(
            s.post_user_message(s.channel_id, alice, "hi, my favourite colour is teal"),
            s.post_user_message(s.channel_id, bob["id"], "hi, my favourite colour is red"),
        )
        await s.wait_for(lambda: len(_containing(s, s.channel_id, "SB_MODEL")) >= 2,
                         timeout=60, what="both answered")
        origin = f"discord-{s.bot.user['id']}"
        # The memory is written right after the answer is sent.
        mine = await until(lambda: _memory(system.nats_url, user_key(origin, alice)),
                           lambda text: "colour" in text, within_s=30, what="alice's memory")
        theirs = await until(lambda: _memory(system.nats_url, user_key(origin, bob["id"])),
                             lambda text: "colour" in text, within_s=30, what="bob's memory")
        assert "teal" in mine and "red" not in mine
        assert "red" in theirs and "teal" not in theirs
        for text in ("hello again", "and again"):
            await s.post_user_message(s.channel_id, alice, text)
        refusal = await s.wait_for(lambda: _containing(s, s.channel_id, "Try again"),
                                   timeout=60, what="the rate limit's answer")
        assert "⏳" in refusal[0]["content"]


async def test_a_second_message_in_a_working_thread_is_queued_then_answered(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    async with _system(nats_url, tmp_path, s, tiers=SLOW_TIER_2):
        alice = s.alice["id"]
        task = await s.post_user_message(s.channel_id, alice, TASK)
        thread = await s.wait_for(lambda: s.threads_from(task["id"]), timeout=60,
                                  what="a thread for the work")
        await s.wait_for(lambda: _containing(s, thread["id"], "Turn 1/"), timeout=60,
                         what="the run under way")
        await s.post_user_message(thread["id"], alice, "also handle None", mention_bot=False)
        await s.wait_for(lambda: _containing(s, thread["id"], "Queued"), timeout=30,
                         what="the person told the second message is queued")
        first = await s.wait_for(lambda: _containing(s, thread["id"], "👍 to merge"),
                                 timeout=120, what="the first answer")
        # Only after the first run's answer does the second get its own answer.
        answers = await s.wait_for(
            lambda: [m for m in s.bot_messages(thread["id"])
                     if m["id"] > first[0]["id"] and "offline model" in m["content"]],
            timeout=120, what="the queued message answered after the first")
        assert answers


async def test_the_interactions_endpoint_answers_ask_with_the_real_actors(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    key = nacl.signing.SigningKey.generate()
    port = free_port()
    context = running_system(nats_url, tmp_path)
    system = await asyncio.to_thread(context.__enter__)
    env = {**system.env, "DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(),
           "DISCORD_API_BASE": s.api_base}
    endpoint = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "switchboard.cli", "gateway", "--interactions", f"127.0.0.1:{port}"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/interactions"
        async with aiohttp.ClientSession() as http:

            async def _listening() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    return (await _signed(http, url, key, b'{"type": 1}'))[0] == 200
                return False

            await eventually(_listening, within_s=30, what="the endpoint answers PING")
            interaction = s.interactions.create(s.bot, s.channel_id, s.alice, "ask",
                                                {"question": "hello"})
            status, body = await _signed(http, url, key, json.dumps(interaction).encode())
            assert (status, body) == (200, {"type": 5})  # deferred
            await s.interactions.acknowledge(interaction["token"], body)
            forged = nacl.signing.SigningKey.generate()
            assert (await _signed(http, url, forged, b'{"type": 1}'))[0] == 401
        answers = await s.wait_for(
            lambda: [m for m in s.interactions.responses(interaction["token"])
                     if "SB_MODEL" in m["content"]],
            timeout=60, what="the offline model's answer through the webhook")
        assert "offline model" in answers[0]["content"]
    finally:
        endpoint.send_signal(signal.SIGTERM)
        await asyncio.to_thread(endpoint.wait, 30)
        await asyncio.to_thread(context.__exit__, None, None, None)


async def _signed(http: aiohttp.ClientSession, url: str, key: nacl.signing.SigningKey,
                  body: bytes) -> tuple[int, Any]:
    stamp = str(int(time.time()))
    headers = {"X-Signature-Ed25519": key.sign(stamp.encode() + body).signature.hex(),
               "X-Signature-Timestamp": stamp, "Content-Type": "application/json"}
    async with http.post(url, data=body, headers=headers) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text.startswith("{") else text)


async def test_up_runs_the_bots_added_with_the_cli_without_discord_token(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SB_", "DISCORD_"))}
    env.update(NATS_URL=nats_url, SB_DATA_DIR=str(tmp_path / "data"),
               PROFILE_BOT_TOKEN=s.token)
    added = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "switchboard.cli", "bots", "add", "helper",
         "--token-env", "PROFILE_BOT_TOKEN", "--profile", "architect"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert added.returncode == 0, added.stdout + added.stderr
    context = running_system(nats_url, tmp_path, extra_env={
        "DISCORD_API_BASE": s.api_base, "DISCORD_GATEWAY_URL": s.gateway_url})
    system = await asyncio.to_thread(context.__enter__)
    try:
        assert system.wait_for_output("started gateway", 5), "".join(system.output[-20:])
        await s.wait_for(lambda: s._gateway_server.identified.is_set(), timeout=60,
                         what="the stored bot identified on the gateway")
        await s.post_user_message(s.channel_id, s.alice["id"], "hello")
        answers = await s.wait_for(lambda: _containing(s, s.channel_id, "SB_MODEL"),
                                   timeout=60, what="the stored bot's answer")
        assert answers
    finally:
        await asyncio.to_thread(context.__exit__, None, None, None)


async def test_reactions_still_work_after_the_gateway_process_restarts(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    async with _system(nats_url, tmp_path, s) as system:
        alice = s.alice["id"]
        task = await s.post_user_message(s.channel_id, alice, TASK)
        thread = await s.wait_for(lambda: s.threads_from(task["id"]), timeout=60,
                                  what="a thread for the work")
        [commit] = await s.wait_for(lambda: _containing(s, thread["id"], "👍 to merge"),
                                    timeout=120, what="the commit message")
        await wait_until_tracked(s, commit)
        gateway_pid = system.pids()["gateway"]
        os.kill(gateway_pid, signal.SIGKILL)  # the gateway dies: its memory is gone
        await s.wait_for(lambda: len(s._gateway_server.sessions) >= 2, timeout=60,
                         what="the restarted gateway identified again")
        await s.add_user_reaction(thread["id"], commit["id"], alice, "👍")
        await s.wait_for(lambda: _containing(s, thread["id"], "Merged"), timeout=60,
                         what="the merge after the restart")
