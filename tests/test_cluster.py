"""The whole system on a real 3-node NATS cluster with R3 streams, KV and object store (issue
10, item 2): a node killed with ``kill -9`` in the middle of a load loses no request and
answers none twice; the node comes back and catches up with the others. Provisioning waits
out a cluster that is still forming."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cluster import NatsCluster, nats_cluster
from faults import load_through_a_fault
from system import running_system
from waiting import eventually

from actors.bus import connect, ensure_consumer, provision
from actors.config import Settings, load_topology

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
