"""Feedback that matters, end to end with the offline model: after a 👎 on a
run's answer, the next run of that conversation starts one tier higher, and the 👎 marks the
run's case failed; a 👍 brings the conversation back to its role's tier."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import nats
import pytest
from session_events import read_session_events
from system import RunningSystem, running_system
from waiting import until

from gateway.bridge import Bridge
from protocol import Control, ControlAction, ExecutionEvent, Subjects

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SESSION = "terminal-feedback"


@pytest.fixture(scope="module")
def system(module_nats: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningSystem]:
    # Learning from cases off, so that only feedback moves the tier here.
    with running_system(module_nats, tmp_path_factory.mktemp("feedback"),
                        cases={"learn_tier": False}) as running:
        yield running


def _kinds(system: RunningSystem, kind: str) -> list[ExecutionEvent]:
    return [e for e in asyncio.run(read_session_events(system.nats_url, SESSION)) if e.kind == kind]


async def _feedback(system: RunningSystem, value: int) -> None:
    nc = await nats.connect(system.nats_url)
    try:
        bridge = Bridge(nc, Subjects(), "term-feedback-test")
        await bridge.control(Control(session=SESSION, action=ControlAction.FEEDBACK,
                                     value=value, user_id="terminal:tester",
                                     message_id=f"answer-{value}"))
    finally:
        await nc.close()


def _wait_for(system: RunningSystem, kind: str, count: int) -> list[ExecutionEvent]:
    return asyncio.run(until(lambda: read_session_events(system.nats_url, SESSION),
                             lambda events: sum(e.kind == kind for e in events) >= count,
                             within_s=60, what=f"{count} {kind} events"))


def test_a_thumbs_down_starts_the_next_run_one_tier_higher(system: RunningSystem) -> None:
    task = "write a python function that computes the factorial of n and test it"
    first = system.chat(task, session=SESSION)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "offline/tier-2" in first.stdout  # python_coder's tier
    _wait_for(system, "case_stored", 1)
    chosen = _kinds(system, "tier_chosen")
    assert chosen[-1].detail.startswith("tier 2:"), chosen[-1]

    asyncio.run(_feedback(system, -20))
    events = _wait_for(system, "case_feedback", 1)
    assert any(e.kind == "case_feedback" and "failed" in e.detail for e in events)

    second = system.chat("write a python function that checks whether a string is a "
                         "palindrome and test it", session=SESSION)
    assert second.returncode == 0, second.stdout + second.stderr
    chosen = _kinds(system, "tier_chosen")
    assert chosen[-1].source == "feedback", chosen[-1]
    assert chosen[-1].detail.startswith("tier 3:"), chosen[-1]
    assert "offline/tier-3" in second.stdout

    asyncio.run(_feedback(system, +15))
    _wait_for(system, "feedback", 2)
    third = system.chat("write a python function that reverses a list and test it",
                        session=SESSION)
    assert third.returncode == 0, third.stdout + third.stderr
    chosen = _kinds(system, "tier_chosen")
    assert chosen[-1].source == "role" and chosen[-1].detail.startswith("tier 2:"), chosen[-1]
