"""End to end, when things break: an actor process killed mid-run, a model that keeps
failing. Nothing is lost: the task is redelivered and answered, or dead-lettered with a clear
answer to the person."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from system import REPO, running_system
from waiting import eventually

from protocol import Subjects, dead_letter_decoder, event_decoder

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SLOW_TIER_2 = {
    1: ["offline/tier-1"],
    2: [{"name": "offline/tier-2", "params": {"delay_s": 0.8}}],
    3: ["offline/tier-3"],
    4: ["offline/tier-4"],
}


async def _first_event(url: str, subject: str, within_s: float) -> dict[str, object]:
    nc = await nats.connect(url)
    try:
        sub = await nc.subscribe(subject)
        msg = await sub.next_msg(timeout=within_s)
        event = event_decoder.decode(msg.data)
        return {"pid": event.pid, "detail": event.detail}
    finally:
        await nc.close()


def test_killing_the_role_actor_mid_run_loses_nothing(nats_url: str, tmp_path: Path) -> None:
    with running_system(nats_url, tmp_path, tiers=SLOW_TIER_2,
                        actors={"python_coder": {"ack_wait_s": 3.0}}) as system:
        before = system.pids()["python_coder/0"]
        chat = subprocess.Popen(
            [sys.executable, "-m", "switchboard.cli", "chat", "--session", "terminal-crash",
             "--message", "write a python function that reverses a string and test it"],
            env=system.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            turn = asyncio.run(_first_event(system.nats_url, "sb.event.python_coder.turn.*", 60))
            assert turn["pid"] == before
            os.kill(before, signal.SIGKILL)  # the actor process dies mid-run
            out, _ = chat.communicate(timeout=180)
        finally:
            if chat.poll() is None:
                chat.kill()
        assert chat.returncode == 0, out
        assert "reverse_string.py" in out and "passed" in out
        asyncio.run(eventually(lambda: system.pids().get("python_coder/0") not in (None, before),
                               within_s=30, what="the supervisor restarts python_coder/0"))
        assert any("died with exit code" in line for line in system.output)


async def _dead_letters(url: str, within_s: float) -> list[str]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(Subjects().dead_letter("researcher"), ordered_consumer=True)
        msg = await sub.next_msg(timeout=within_s)
        return [dead_letter_decoder.decode(msg.data).reason]
    finally:
        await nc.close()


def test_a_model_that_keeps_failing_is_dead_lettered_and_explained(
        nats_url: str, tmp_path: Path) -> None:
    broken = dict(SLOW_TIER_2)
    broken[1] = [{"name": "offline/tier-1", "params": {"error": "simulated outage"}}]
    with running_system(nats_url, tmp_path, tiers=broken,
                        actors={"researcher": {"max_deliveries": 2, "nak_delay_s": 0.1}}
                        ) as system:
        result = system.chat("hello", session="terminal-broken", timeout_s=60)
        assert result.returncode == 1, result.stdout
        assert "simulated outage" in result.stdout
        assert "dead-letter" in result.stdout
        [reason] = asyncio.run(_dead_letters(system.nats_url, 10))
        assert "simulated outage" in reason
