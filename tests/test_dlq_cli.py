"""``switchboard dlq`` and ``switchboard status`` as a user runs them (subprocesses) against a
real nats-server, where an actor replica running in the test dead-letters tasks exactly as the
runtime does: unreadable bytes, and a handler that fails with a ``PermanentError``."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import nats
import nats.aio.client
import pytest
import pytest_asyncio
from system import REPO
from waiting import eventually

from core.config import Settings, load_topology
from core.errors import PermanentError
from protocol import HEADER_SESSION, ChatMessage, encoder
from runtime import Actor, MessageContext, handler, run_actor
from runtime.bus import provision
from runtime.dead_letters import count_letters
from switchboard.embedded import free_port

pytestmark = pytest.mark.timeout(180)
TOPOLOGY = load_topology()
SUBJECTS = TOPOLOGY.subjects


class Picky(Actor):
    """A classifier that refuses every chat message while ``refuse`` is set."""

    role = "classifier"
    refuse: ClassVar[bool] = True
    handled: ClassVar[list[str]] = []

    @handler
    async def on_chat(self, message: ChatMessage, ctx: MessageContext) -> None:
        if Picky.refuse:
            raise PermanentError("refused while the test says so")
        Picky.handled.append(message.message_id)


def _env(nats_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SB_", "DISCORD_", "NATS_"))}
    env.update(NATS_URL=nats_url, SB_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1",
               LITELLM_LOCAL_MODEL_COST_MAP="True")
    return env


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "switchboard.cli", *args], cwd=REPO, env=env,
        text=True, capture_output=True, timeout=60, check=False)


class Deployment:
    """A provisioned server with one ``Picky`` classifier replica running in this loop."""

    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url, self.env = url, env
        self.nc: nats.aio.client.Client
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start_replica(self) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(run_actor(
            Picky, 0, settings=Settings(), topology=TOPOLOGY, nats_url=self.url,
            stop=self.stop))

    async def stop_replica(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)
            self.task = None

    async def letters(self) -> int:
        return sum((await count_letters(self.nc.jetstream(), SUBJECTS)).values())


@pytest_asyncio.fixture
async def deployment(nats_url: str, tmp_path: Path) -> AsyncIterator[Deployment]:
    Picky.refuse, Picky.handled = True, []
    d = Deployment(nats_url, _env(nats_url, tmp_path / "data"))
    d.nc = await nats.connect(nats_url)
    await provision(d.nc.jetstream(), TOPOLOGY, TOPOLOGY.roles)
    await d.start_replica()
    try:
        yield d
    finally:
        await d.stop_replica()
        await d.nc.close()


async def _dead_letter_two(d: Deployment) -> str:
    """Unreadable bytes and a chat message the replica refuses; returns the message's id."""
    js = d.nc.jetstream()
    message_id = uuid.uuid4().hex
    await js.publish(SUBJECTS.task("classifier"), b"{not json")
    await js.publish(SUBJECTS.task("classifier"), encoder.encode(ChatMessage(
        message_id=message_id, session="terminal-dlq", origin="test", user_id="u1",
        text="hello")), headers={HEADER_SESSION: "terminal-dlq"})

    async def both() -> bool:
        return await d.letters() == 2

    await eventually(both, within_s=30, what="both tasks dead-lettered")
    return message_id


async def test_dead_letters_are_listed_shown_replayed_and_discarded(
        deployment: Deployment) -> None:
    d = deployment
    message_id = await _dead_letter_two(d)
    listed = await _cli(d.env, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    by_error = {letter["error"]: letter for letter in letters}
    assert set(by_error) == {"MalformedMessageError", "PermanentError"}
    refused, unreadable = by_error["PermanentError"], by_error["MalformedMessageError"]
    assert refused["role"] == "classifier" and refused["session"] == "terminal-dlq"
    assert refused["subject"] == SUBJECTS.task("classifier")

    other_role = await _cli(d.env, "dlq", "list", "--role", "planner")
    assert other_role.returncode == 0 and "No dead letters of planner" in other_role.stdout

    shown = await _cli(d.env, "dlq", "show", str(refused["seq"]), "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    original = json.loads(base64.b64decode(json.loads(shown.stdout)["data_base64"]))
    assert original["message_id"] == message_id  # the original bytes, kept
    readable = await _cli(d.env, "dlq", "show", f"#{refused['seq']}")
    assert readable.returncode == 0 and message_id in readable.stdout

    # Replayed once the handler accepts it: a fresh delivery reaches the handler.
    Picky.refuse = False
    replayed = await _cli(d.env, "dlq", "replay", str(refused["seq"]))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    await eventually(lambda: Picky.handled == [message_id], within_s=30,
                     what="the replayed task is handled")
    again = await _cli(d.env, "dlq", "replay", str(refused["seq"]))
    assert again.returncode == 1, again.stdout  # it left the queue

    discarded = await _cli(d.env, "dlq", "discard", str(unreadable["seq"]))
    assert discarded.returncode == 0, discarded.stdout + discarded.stderr
    gone = await _cli(d.env, "dlq", "show", str(unreadable["seq"]))
    assert gone.returncode == 1
    assert await d.letters() == 0
    empty = await _cli(d.env, "dlq", "list")
    assert empty.returncode == 0 and "No dead letters" in empty.stdout


async def test_a_replay_that_fails_again_is_a_new_dead_letter(deployment: Deployment) -> None:
    d = deployment
    await _dead_letter_two(d)
    letters = [json.loads(line) for line in
               (await _cli(d.env, "dlq", "list", "--json")).stdout.splitlines()]
    unreadable = next(x for x in letters if x["error"] == "MalformedMessageError")
    replayed = await _cli(d.env, "dlq", "replay", str(unreadable["seq"]))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr

    async def new_letter() -> bool:
        listed = (await _cli(d.env, "dlq", "list", "--json")).stdout.splitlines()
        seqs = {json.loads(line)["seq"]: json.loads(line)["error"] for line in listed}
        return (unreadable["seq"] not in seqs
                and sorted(seqs.values()) == ["MalformedMessageError", "PermanentError"])

    await eventually(new_letter, within_s=30, what="the replayed bytes are dead-lettered again")


async def test_status_says_which_roles_have_a_replica(deployment: Deployment) -> None:
    d = deployment
    status = await _cli(d.env, "status", "--json")
    assert status.returncode == 1, status.stdout + status.stderr  # only the classifier runs
    report = json.loads(status.stdout)
    assert report["roles"]["classifier"]["ready"] is True
    assert report["roles"]["classifier"]["num_waiting"] >= 1
    assert report["roles"]["planner"]["ready"] is False
    assert report["roles"]["planner"]["error"]  # never started here
    assert report["processes"] is None  # no `switchboard up` on this data directory
    text = await _cli(d.env, "status")
    assert text.returncode == 1 and "planner" in text.stdout and "not ready" in text.stdout

    await d.stop_replica()

    async def classifier_gone() -> bool:
        after = await _cli(d.env, "status", "--json")
        return json.loads(after.stdout)["roles"]["classifier"]["ready"] is False

    await eventually(classifier_gone, within_s=60, what="status: the stopped replica is gone")


async def test_commands_without_nats_say_so_and_exit_2(tmp_path: Path) -> None:
    env = _env(f"nats://127.0.0.1:{free_port()}", tmp_path)
    for args in (["status"], ["dlq", "list"], ["dlq", "replay", "3"]):
        result = await _cli(env, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
    bad = await _cli(env, "dlq", "show", "three")
    assert bad.returncode == 2 and "not a dead letter sequence" in bad.stderr
