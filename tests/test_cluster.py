"""The whole system on a real 3-node NATS cluster with R3 streams, KV and object store (issue
10, item 2): a node killed with ``kill -9`` in the middle of a load loses no request and
answers none twice; the node comes back and catches up with the others."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cluster import NatsCluster, nats_cluster
from faults import load_through_a_fault
from system import running_system
from waiting import eventually

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
