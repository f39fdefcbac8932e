"""The agentic loop end to end: a scripted model through the genuine
litellm path drives runs on a real nats-server with every actor its own process — one that
escalates through the whole tier path and asks the person, one that commits and is merged by
👍, one aborted by 🛑 at the next turn, one whose process is killed and resumes from its
checkpoint."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.aio.client
import nats.aio.msg
import nats.js.errors
import pytest
from system import REPO, RunningSystem, running_system
from waiting import eventually

from gateway.bridge import Bridge
from protocol import (
    Control,
    ControlAction,
    ExecutionEvent,
    Outbound,
    Reply,
    Subjects,
    event_decoder,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
TESTS = Path(__file__).resolve().parent
SUBJECTS = Subjects()


def _tiers(delay_s: float) -> dict[int, list[dict[str, object]]]:
    return {t: [{"name": f"scripted/tier-{t}", "params": {"delay_s": delay_s}}]
            for t in (1, 2, 3, 4)}


def _topology(delay_s: float = 0.0) -> dict[str, object]:
    return {
        "providers": {"offline": "offline_model:OfflineLLM",
                      "scripted": "scripted_model:ScriptedLLM"},
        "tiers": _tiers(delay_s),
        "escalation": [f"scripted/tier-{t}" for t in (1, 2, 3, 4)],
        "lock_ttl_s": 3.0,
        "actors": {"python_coder": {"tier": 1, "ack_wait_s": 3.0}},
    }


@pytest.fixture(scope="module")
def system(module_nats: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningSystem]:
    with running_system(module_nats, tmp_path_factory.mktemp("agentic"),
                        extra_env={"PYTHONPATH": str(TESTS)}, **_topology(delay_s=0.4)
                        ) as running:
        yield running


class Events:
    """Every execution event of one session, collected in the background."""

    def __init__(self, url: str, session: str) -> None:
        self.url, self.session = url, session
        self.events: list[ExecutionEvent] = []
        self._nc: nats.aio.client.Client | None = None

    async def __aenter__(self) -> Events:
        self._nc = await nats.connect(self.url)

        async def _collect(msg: nats.aio.msg.Msg) -> None:
            event = event_decoder.decode(msg.data)
            if event.session == self.session:
                self.events.append(event)

        await self._nc.subscribe(SUBJECTS.events_all, cb=_collect)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._nc is not None
        await self._nc.close()

    def of(self, kind: str) -> list[ExecutionEvent]:
        return [e for e in self.events if e.kind == kind]

    async def wait(self, kind: str, count: int = 1, within_s: float = 60) -> list[ExecutionEvent]:
        await eventually(lambda: len(self.of(kind)) >= count, within_s=within_s,
                         what=f"{count} {kind} events in {self.session}")
        return self.of(kind)


def _chat(system: RunningSystem, session: str, text: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "switchboard.cli", "chat", "--session", session, "--message", text,
         "--timeout", "200"],
        env=system.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _search(pattern: str, text: str) -> re.Match[str]:
    """``re.search`` where the test counts on a match."""
    match = re.search(pattern, text)
    assert match is not None, (pattern, text)
    return match


async def _finish(chat: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = await asyncio.to_thread(chat.communicate, timeout=240)
    return chat.returncode, out


async def test_escalates_through_every_tier_then_asks_and_resumes_with_the_answer(
        system: RunningSystem) -> None:
    session = "terminal-stuck"
    async with Events(system.nats_url, session) as events:
        code, out = await _finish(_chat(system, session,
                                        "[stuck] write a python function to frobnicate"))
        assert code == 0, out
        assert "❓ I'm stuck" in out and "Which frobnicator do you mean?" in out
        escalations = await events.wait("escalation", 3)
        path = [_search(r"(scripted/tier-\d) → (scripted/tier-\d)", e.detail).groups()
                for e in escalations]
        assert path == [("scripted/tier-1", "scripted/tier-2"),
                        ("scripted/tier-2", "scripted/tier-3"),
                        ("scripted/tier-3", "scripted/tier-4")]
        assert all("stuck" in e.detail for e in escalations)
        await events.wait("paused")
        code, out = await _finish(_chat(system, session, "here is a hint: the blue one"))
        assert code == 0, out
        assert "Done with the hint" in out
        assert "resumed" in {e.kind for e in events.events}
    assert (system.data_dir / "workspaces" / session / "answer.txt").read_text() == "42\n"


async def test_a_finished_run_commits_and_thumbs_up_merges_the_branch(
        system: RunningSystem) -> None:
    session = "terminal-merge"
    code, out = await _finish(_chat(system, session, "[commit] write a python hello script"))
    assert code == 0, out
    assert "📝 Commit:" in out and "hello.py" in out
    assert "👍" not in out  # the reaction hint is Discord's, not the terminal's
    branch = _search(r"Branch: `([^`]+)`", out).group(1)
    workspace = system.data_dir / "workspaces" / session
    assert _git(workspace, "show", f"{branch}:hello.py") == "print('hello')\n"
    assert _git(workspace, "ls-tree", "--name-only", "main").strip() == ""
    reply = await _react(system, Control(
        session=session, action=ControlAction.MERGE, role="python_coder", branch=branch,
        user_id="alice", message_id="commit-message-1", origin="test-reactions"))
    assert "Merged" in reply.text, reply
    assert _git(workspace, "show", "main:hello.py") == "print('hello')\n"


async def _react(system: RunningSystem, control: Control) -> Reply:
    """Publish ``control`` as the gateway does for a reaction; return the answer to it."""
    nc = await nats.connect(system.nats_url)
    try:
        answers: asyncio.Queue[Outbound] = asyncio.Queue()
        bridge = Bridge(nc, SUBJECTS, control.origin)
        await bridge.start(answers.put)
        await bridge.control(control)
        reply = await asyncio.wait_for(answers.get(), 60)
        await bridge.stop()
    finally:
        await nc.close()
    assert isinstance(reply, Reply), reply
    return reply


def _git(workspace: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(workspace), *args], capture_output=True,
                          text=True, check=True, timeout=30).stdout


async def test_stop_aborts_at_the_next_turn(system: RunningSystem) -> None:
    session = "terminal-abort"
    async with Events(system.nats_url, session) as events:
        chat = _chat(system, session, "[long 40] write a python module in many steps")
        await events.wait("turn", 2)
        nc = await nats.connect(system.nats_url)
        try:
            await Bridge(nc, SUBJECTS, "test-stop").control(
                Control(session=session, action=ControlAction.ABORT, user_id="alice"))
        finally:
            await nc.close()
        turns_at_stop = len(events.of("turn"))
        code, out = await _finish(chat)
        assert "Stopped at turn" in out, out
        stopped_at = int(_search(r"Stopped at turn (\d+)", out).group(1))
        assert turns_at_stop <= stopped_at <= turns_at_stop + 1  # the turn under way ends
        assert len(events.of("turn")) == stopped_at
        assert events.of("abort")
        assert code == 1  # the answer carries the "aborted" error code


async def test_a_killed_run_resumes_from_its_checkpoint(system: RunningSystem) -> None:
    session = "terminal-resume"
    async with Events(system.nats_url, session) as events:
        chat = _chat(system, session, "[long 8] write a python package in eight steps")
        [checkpoint] = await events.wait("checkpoint", 1)
        assert "turn 5" in checkpoint.detail
        os.kill(checkpoint.pid, signal.SIGKILL)
        code, out = await _finish(chat)
        assert code == 0, out
        assert "All 8 steps written" in out
        resumed = events.of("resumed")
        assert resumed and "checkpoint of turn 5" in resumed[0].detail
        after = [e for e in events.of("turn") if e.pid != checkpoint.pid]
        assert after and after[0].detail.startswith("turn 6/")  # not from the start
    workspace = system.data_dir / "workspaces" / session
    assert sorted(p.name for p in workspace.glob("step_*.txt")) == [
        f"step_{i}.txt" for i in range(1, 9)]


async def test_thumbs_down_deletes_the_branch_and_deleting_the_thread_forgets_it(
        system: RunningSystem) -> None:
    session = "terminal-discard"
    code, out = await _finish(_chat(system, session, "[commit] write a python hello script"))
    assert code == 0, out
    branch = _search(r"Branch: `([^`]+)`", out).group(1)
    workspace = system.data_dir / "workspaces" / session
    reply = await _react(system, Control(
        session=session, action=ControlAction.DISCARD, role="python_coder", branch=branch,
        user_id="alice", message_id="commit-message-2", origin="test-discard"))
    assert "Deleted branch" in reply.text, reply
    assert branch not in _git(workspace, "branch", "--list")
    nc = await nats.connect(system.nats_url)
    try:
        bridge = Bridge(nc, SUBJECTS, "test-discard")
        store = await nc.jetstream().object_store(SUBJECTS.artifacts_bucket)
        assert any(name.startswith(f"{session}/") for name in await _names(store))
        async with Events(system.nats_url, session) as events:
            await bridge.control(Control(session=session, action=ControlAction.DELETE_SESSION,
                                         user_id="alice", message_id="thread-deleted"))
            await events.wait("session_deleted")
        assert not any(name.startswith(f"{session}/") for name in await _names(store))
        assert not workspace.exists()
    finally:
        await nc.close()


async def _names(store: object) -> list[str]:
    try:
        return [o.name for o in await store.list()]  # type: ignore[attr-defined]
    except nats.js.errors.NotFoundError:  # an empty object store
        return []


async def test_file_markers_attach_workspace_files_and_explain_the_rest(
        system: RunningSystem) -> None:
    code, out = await _finish(_chat(system, "terminal-files", "[badpath] write a python file"))
    assert code == 0, out
    assert "📎 ok.txt" in out
    assert "cannot attach missing.txt" in out
    assert "cannot attach ../../outside.txt" in out and "cannot attach /etc/passwd" in out
    attached = [line for line in out.splitlines() if line.startswith("📎 ") and "bytes)" in line]
    assert attached == ["📎 ok.txt (5 bytes)"], out
