"""The whole system on a real 3-node NATS cluster with R3 streams, KV and object store (issue
10, item 2): a node killed with ``kill -9`` in the middle of a load loses no request and
answers none twice; the node comes back and catches up with the others. Terminal chats in
flight get their answers when the meta leader is killed. Provisioning
waits out a cluster that is still forming."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster import NatsCluster, nats_cluster
from faults import load_through_a_fault
from system import REPO, running_system
from waiting import eventually

from core.config import Settings, load_topology
from runtime.bus import connect, ensure_consumer, provision

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def _caught_up(cluster: NatsCluster, index: int) -> bool:
    mine = cluster.stream_state(index)
    other = cluster.stream_state(0)
    return bool(other) and all(mine.get(name) == state for name, state in other.items())


def test_a_node_lost_mid_load_loses_nothing_and_catches_up(tmp_path: Path) -> None:
    (tmp_path / "sb").mkdir()
    with nats_cluster(tmp_path / "cluster") as cluster, \
            running_system(cluster.url, tmp_path / "sb",
                           extra_env={"SB_STREAM_REPLICAS": "3"}) as system:
        answers = asyncio.run(load_through_a_fault(system, lambda: cluster.kill(1)))
        answers.assert_each_answered_once()

        cluster.restart(1)
        asyncio.run(eventually(lambda: _caught_up(cluster, 1), within_s=60,
                               what="the restarted node to catch up with the others"))
        streams = cluster.stream_state(1)
        assert any(name.startswith("KV_") for name in streams)  # KV buckets are R3 too
        assert any(name.startswith("OBJ_") for name in streams)  # and the object store


CHATS = 20
CHAT_TIMEOUT_S = 60
MODEL_DELAY_S = 3.0
"""Each model call of the test's offline models waits this long, so every chat is still
waiting for its answer when the node is killed."""


def test_chats_in_flight_are_answered_when_the_meta_leader_is_killed(tmp_path: Path) -> None:
    """Twenty ``switchboard chat --message`` processes (the real CLI) have sent their
    questions; the meta leader is killed with ``kill -9``; every chat prints its answer and
    exits 0. About a third of the chats were connected to the killed node: they reconnect
    to another, and read the answer stored for them meanwhile."""
    (tmp_path / "sb").mkdir()
    tiers = {t: [{"name": f"offline/tier-{t}", "params": {"delay_s": MODEL_DELAY_S}}]
             for t in range(1, 5)}
    with nats_cluster(tmp_path / "cluster") as cluster, \
            running_system(cluster.url, tmp_path / "sb", extra_env={"SB_STREAM_REPLICAS": "3"},
                           tiers=tiers) as system:
        questions = load_topology(settings=Settings(topology=system.topology_path)) \
            .subjects.task_stream("classifier")
        leader = cluster.meta_leader()
        started = time.monotonic()
        chats = [subprocess.Popen(
            [sys.executable, "-m", "switchboard.cli", "chat", "--message",
             f"hello there, number {i}", "--timeout", str(CHAT_TIMEOUT_S)],
            env=system.env, cwd=REPO, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT) for i in range(CHATS)]
        try:
            asyncio.run(eventually(
                lambda: cluster.stream_state(leader).get(questions, (0, 0))[1] >= CHATS,
                within_s=90, what=f"the {CHATS} chats' questions to be stored"))
            asked_s = time.monotonic() - started
            on_leader = sum(name.startswith("gateway/term-")
                            for name in cluster.client_names(leader))
            cluster.kill(leader)
            outputs = [chat.communicate(timeout=CHAT_TIMEOUT_S + 30)[0] for chat in chats]
        finally:
            for chat in chats:
                if chat.poll() is None:
                    chat.kill()
                    chat.wait()
    failed = {i: f"exit {chat.returncode}: {out.strip()[-300:]}"
              for i, (chat, out) in enumerate(zip(chats, outputs, strict=True))
              if chat.returncode != 0 or "offline model" not in out}
    assert not failed, (f"{len(failed)} of {CHATS} chats not answered (questions stored "
                        f"{asked_s:.1f} s after the start, then node {leader} killed, "
                        f"{on_leader} chats connected to it): {failed}")


def test_provisioning_waits_out_a_cluster_that_is_still_forming(tmp_path: Path) -> None:
    """Until the meta leader knows three peers, an R3 stream is refused with "no suitable
    peers for placement" (10005; it failed CI so, on a cluster whose JetStream already
    answered). Here two nodes of three are up when provisioning starts and the third comes
    1.5 s later: provisioning waits, and every stream, bucket and consumer gets three
    replicas."""
    topology = load_topology(settings=Settings(stream_replicas=3))
    roles = ["classifier", "researcher"]

    async def provision_while_forming(cluster: NatsCluster) -> dict[str, int]:
        nc = await connect(cluster.url, name="forming-test")
        try:
            js = nc.jetstream(timeout=5)
            provisioning = asyncio.create_task(provision(js, topology, roles))
            await asyncio.sleep(1.5)
            assert not provisioning.done(), "an R3 stream was placed on two nodes"
            await asyncio.to_thread(cluster.restart, 2)
            await provisioning
            for role in roles:
                await ensure_consumer(js, topology.subjects, role, topology.actors[role])
            return {info.config.name or "": info.config.num_replicas or 0
                    for info in await js.streams_info()}
        finally:
            await nc.close()

    with nats_cluster(tmp_path / "cluster", started=2) as cluster:
        replicas = asyncio.run(provision_while_forming(cluster))
    assert replicas and set(replicas.values()) == {3}, replicas
    assert any(name.startswith("KV_") for name in replicas)
