"""End to end: `switchboard up` (every actor its own process) on a real nats-server, driven by
`switchboard chat` and observed with `switchboard events tail`, as a user would."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from system import REPO, RunningSystem, running_system
from waiting import until

from protocol import SessionState, Subjects, event_decoder, session_decoder
from switchboard.embedded import EmbeddedNats

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def system(module_nats: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningSystem]:
    with running_system(module_nats, tmp_path_factory.mktemp("switchboard")) as running:
        yield running


def _events_tail(system: RunningSystem, limit: int, *extra: str
                 ) -> tuple[subprocess.Popen[str], str]:
    """``switchboard events tail`` in the background, returned once it is subscribed, with
    its "Following <subject> ..." line."""
    tail = subprocess.Popen(
        [sys.executable, "-m", "switchboard.cli", "events", "tail", "--limit", str(limit), *extra],
        env=system.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert tail.stderr is not None
    first = tail.stderr.readline()  # "Following ..." once the subscription is in place
    assert first.startswith("Following"), first + tail.stderr.read()
    return tail, first


def test_hello_is_answered_by_the_offline_model(system: RunningSystem) -> None:
    result = system.chat("hello", session="terminal-hello")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "offline model" in result.stdout
    assert "Hello" in result.stdout


def test_sequential_flow_writes_a_file_with_visible_progress(system: RunningSystem) -> None:
    tail, _ = _events_tail(system, limit=400)
    try:
        result = system.chat("write a python function that reverses a string and test it",
                             session="terminal-seq")
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert "Starting work" in out
        assert "Turn 1/" in out and "Turn 3/" in out  # progress each turn
        assert "Writing: reverse_string.py" in out
        assert "passed" in out
        workspace = system.data_dir / "workspaces" / "terminal-seq"
        source = (workspace / "reverse_string.py").read_text()
        assert "[::-1]" in source or "reversed(" in source
        assert (workspace / "test_reverse_string.py").is_file()
        state = asyncio.run(_session(system, "terminal-seq", wait_for_reflection=True))
        assert state.reflections, "the reflector saved a reflection"
        assert state.scores is not None and state.scores.task_completion >= 60
    finally:
        tail.terminate()
        events = tail.communicate(timeout=30)[0]
    for actor, kind in [("classifier", "classified"), ("planner", "planned"),
                        ("python_coder", "turn"), ("python_coder", "tool_call"),
                        ("evaluator", "evaluated"), ("reflector", "reflection")]:
        assert any(actor in line and kind in line and "terminal-seq" in line
                   for line in events.splitlines()), f"no {actor} {kind} event:\n{events}"


def test_chat_saves_an_answers_files_into_a_folder_it_creates(system: RunningSystem,
                                                             tmp_path: Path) -> None:
    target = tmp_path / "answers" / "today"  # does not exist yet
    result = subprocess.run(
        [sys.executable, "-m", "switchboard.cli", "chat", "--session", "terminal-save",
         "--save-dir", str(target), "--message",
         "write a python function that reverses a string and test it"],
        env=system.env, cwd=REPO, capture_output=True, text=True, timeout=150, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"saved to {target / 'reverse_string.py'}" in result.stdout
    assert "[::-1]" in (target / "reverse_string.py").read_text() or \
        "reversed(" in (target / "reverse_string.py").read_text()


def test_one_request_is_one_trace_across_processes(system: RunningSystem) -> None:
    tail, following = _events_tail(system, 400, "--json", "--session", "terminal-trace")
    # the server selects the session's events by subject (protocol/README.md)
    assert following.startswith("Following sb.event.*.*.terminal-trace "), following
    try:
        result = system.chat("write a python function that computes fibonacci and test it",
                             session="terminal-trace")
        assert result.returncode == 0, result.stdout
        asyncio.run(_session(system, "terminal-trace", wait_for_reflection=True))
    finally:
        tail.terminate()
        lines = tail.communicate(timeout=30)[0].splitlines()
    events = [event_decoder.decode(line) for line in lines if line.startswith("{")]
    actors = {e.actor for e in events}
    assert {"classifier", "planner", "python_coder", "evaluator", "reflector"} <= actors
    trace_ids = {e.trace_id for e in events}
    assert len(trace_ids) == 1 and "" not in trace_ids, trace_ids
    assert len({e.pid for e in events}) >= 5  # five processes, one trace


async def _session(system: RunningSystem, session: str, *, wait_for_reflection: bool
                   ) -> SessionState:
    nc = await nats.connect(system.nats_url)
    try:
        kv = await nc.jetstream().key_value(Subjects().sessions_bucket)

        async def _read() -> SessionState:
            entry = await kv.get(session)
            assert entry.value is not None
            return session_decoder.decode(entry.value)

        return await until(_read, lambda s: s.reflections or not wait_for_reflection,
                           within_s=20, what=f"a reflection saved in {session}")
    finally:
        await nc.close()


def test_branch_flow_returns_options_with_pros_and_cons(system: RunningSystem) -> None:
    result = system.chat("what are the pros and cons of different approaches to caching?",
                         session="terminal-branch")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    options = [line for line in out.splitlines() if line.startswith("**Option ")]
    assert 2 <= len(options) <= 3, out
    assert out.count("Pros:") == len(options) and out.count("Cons:") == len(options)
    assert "def " not in out  # no code in BRANCH answers


def test_second_run_in_a_session_plans_with_the_first_runs_reflection(
        system: RunningSystem) -> None:
    first = system.chat("write a python function that computes a factorial and test it",
                        session="terminal-memory")
    assert first.returncode == 0, first.stdout
    asyncio.run(_session(system, "terminal-memory", wait_for_reflection=True))
    second = system.chat("write a python function that checks for a palindrome and test it",
                         session="terminal-memory")
    assert second.returncode == 0, second.stdout
    assert "lesson" in second.stdout.lower(), second.stdout


def test_chat_exits_non_zero_when_switchboard_is_not_running(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "bare") as bare:  # a NATS server without Switchboard
        for url in (bare.url, "nats://127.0.0.1:1"):
            env = {**os.environ, "NATS_URL": url, "SB_DATA_DIR": str(tmp_path)}
            result = subprocess.run(
                [sys.executable, "-m", "switchboard.cli", "chat", "--message", "hello"],
                env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
            assert result.returncode == 2, result.stdout + result.stderr
            assert "not running" in result.stdout
