"""Nothing lost, nothing twice: the fault harness (``tests/faults.py``)
through a broker restart and a gateway restart in the middle of a load. (A role actor
killed mid-run: ``test_e2e_failures.py``; a cluster node lost: ``test_cluster.py``; poison
messages: ``test_runtime.py``, ``test_fuzz.py``.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from faults import load_through_a_fault
from system import running_system

from switchboard.embedded import EmbeddedNats

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

SLOW_TIER_2 = {
    1: ["offline/tier-1"],
    2: [{"name": "offline/tier-2", "params": {"delay_s": 0.3}}],
    3: ["offline/tier-3"],
    4: ["offline/tier-4"],
}


def test_a_broker_restart_mid_run_loses_nothing_and_answers_once(tmp_path: Path) -> None:
    """``kill -9`` of the only nats-server while runs are going, back 2 s later on the same
    port and store: clients reconnect, publishes that got no PubAck are retried (a failed
    delivery is redelivered, its publishes carry the same ``Nats-Msg-Id``), and JetStream
    drops the copies."""
    (tmp_path / "sb").mkdir()
    server = EmbeddedNats(tmp_path / "nats").start()
    try:
        with running_system(server.url, tmp_path / "sb", tiers=SLOW_TIER_2) as system:

            def restart() -> None:
                server.kill()
                time.sleep(2.0)
                server.start()

            answers = asyncio.run(load_through_a_fault(system, restart))
            try:
                answers.assert_each_answered_once()
            except AssertionError:
                print("".join(system.output[-200:]))  # noqa: T201 - the failure's context
                raise
            assert system.proc.poll() is None, "switchboard up survived the restart"
    finally:
        server.stop()


def test_a_gateway_restart_with_answers_pending_loses_none_and_repeats_none(
        nats_url: str, tmp_path: Path) -> None:
    """The gateway (a bridge with the durable outbox consumer) stops while runs are going and
    a new one of the same origin starts 2 s later: the answers published meanwhile are
    delivered to it, the one being handled at the stop is finished and acked first."""
    (tmp_path / "sb").mkdir()
    with running_system(nats_url, tmp_path / "sb", tiers=SLOW_TIER_2) as system:
        answers = asyncio.run(load_through_a_fault(system, None, restart_gateway=True))
        answers.assert_each_answered_once()
