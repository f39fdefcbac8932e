"""The terminal chat remembers a person across sessions and runs (docs/design.md#reflexion-memory,
per-user memory):
each `switchboard chat` run has its own outbox origin, but every run's messages name the
terminal as their memory owner and the person by their login name. The whole system runs
(`switchboard up`, every actor its own process, a real nats-server).

The offline model says what it was shown of the person's other conversations: its chat answers
end with ``(From another conversation I remember you said: "...")``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from discord_system import user_memory
from system import REPO, RunningSystem, running_system
from waiting import until

from actors.memory import user_key
from gateway.chat import MEMORY_OWNER, terminal_user

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
RECALL = "From another conversation I remember you said"
TEAL = "hello, my favourite colour is teal"


def _chat_as(system: RunningSystem, login: str, message: str, session: str
             ) -> subprocess.CompletedProcess[str]:
    """``switchboard chat --message`` run by the login ``login`` (getpass reads LOGNAME)."""
    env = {**system.env, "LOGNAME": login, "USER": login}
    return subprocess.run(
        [sys.executable, "-m", "switchboard.cli", "chat", "--message", message, "--session",
         session, "--timeout", "120"],
        env=env, capture_output=True, text=True, timeout=150, cwd=REPO, check=False)


async def test_the_terminal_chat_recalls_a_person_across_sessions(
        nats_url: str, tmp_path: Path) -> None:
    context = running_system(nats_url, tmp_path)
    system = await asyncio.to_thread(context.__enter__)
    try:
        first = await asyncio.to_thread(system.chat, TEAL, session="terminal-a")
        assert first.returncode == 0, first.stdout + first.stderr
        assert RECALL not in first.stdout
        # The memory is written right after the answer is sent.
        key = user_key(MEMORY_OWNER, f"terminal:{terminal_user()}")

        async def remembered() -> str:
            return await user_memory(system.nats_url, key)

        await until(remembered, lambda stored: TEAL in stored, within_s=30,
                    what="the first session remembered")

        second = await asyncio.to_thread(system.chat, "hello again", session="terminal-b")
        assert second.returncode == 0, second.stdout + second.stderr
        assert f'{RECALL}: "{TEAL}"' in second.stdout

        other = await asyncio.to_thread(_chat_as, system, "someone-else", "hello again",
                                        "terminal-c")
        assert other.returncode == 0, other.stdout + other.stderr
        assert "colour is teal" not in other.stdout and RECALL not in other.stdout
    finally:
        await asyncio.to_thread(context.__exit__, None, None, None)
