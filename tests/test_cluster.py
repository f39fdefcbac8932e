"""The whole system on a real 3-node NATS cluster with R3 streams, KV and object store (issue
10, item 2): a node killed with ``kill -9`` in the middle of a load loses no request and
answers none twice; the node comes back and catches up with the others."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from pathlib import Path

import pytest
from cluster import NatsCluster, nats_cluster
from system import RunningSystem, running_system

from actors.config import Settings, load_topology
from gateway.bridge import connect_bridge
from protocol import ChatMessage, Outbound, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

SIMPLE, SEQUENTIAL = 16, 6
ANSWER_TIMEOUT_S = 240.0


async def _load_with_a_node_lost(system: RunningSystem, cluster: NatsCluster
                                 ) -> tuple[dict[str, list[Reply]], set[str]]:
    """Send the requests, kill node 1 once a few are answered, wait for every answer."""
    topology = load_topology(settings=Settings(topology=system.topology_path))
    bridge = await connect_bridge(Settings(), topology.subjects, "cluster-test",
                                  nats_url=cluster.url)
    replies: dict[str, list[Reply]] = collections.defaultdict(list)
    answered, some = asyncio.Event(), asyncio.Event()
    sent: set[str] = set()

    async def on_outbound(message: Outbound) -> None:
        if isinstance(message, Reply):
            replies[message.in_reply_to].append(message)
            if len(replies) >= 3:
                some.set()
            if sent and sent <= set(replies):
                answered.set()

    # Durable: answers published while the bridge's own node is down are kept for it.
    await bridge.start(on_outbound, durable=True)
    try:
        requests = [(f"hello there, number {i}", f"cl-simple-{i}") for i in range(SIMPLE)]
        requests += [("write a python function that reverses a string and test it",
                      f"cl-seq-{i}") for i in range(SEQUENTIAL)]
        for text, session in requests:
            message = ChatMessage(message_id=uuid.uuid4().hex, session=session,
                                  origin="cluster-test", user_id="tester", text=text,
                                  sent_at=time.time())
            sent.add(message.message_id)
            await bridge.send(message)
        async with asyncio.timeout(60):
            await some.wait()
        cluster.kill(1)  # mid-load: most requests are queued or running
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            await answered.wait()
        await asyncio.sleep(2.0)  # a duplicate would arrive now
        return dict(replies), sent
    finally:
        await bridge.stop()


def _caught_up(cluster: NatsCluster, index: int) -> bool:
    mine = cluster.stream_state(index)
    other = cluster.stream_state(0)
    return bool(other) and all(mine.get(name) == state for name, state in other.items())


def test_a_node_lost_mid_load_loses_nothing_and_catches_up(tmp_path: Path) -> None:
    (tmp_path / "sb").mkdir()
    with nats_cluster(tmp_path / "cluster") as cluster, \
            running_system(cluster.url, tmp_path / "sb",
                           extra_env={"SB_STREAM_REPLICAS": "3"}) as system:
        replies, sent = asyncio.run(_load_with_a_node_lost(system, cluster))
        assert set(replies) == sent, f"unanswered: {len(sent - set(replies))}"
        twice = {k: len(v) for k, v in replies.items() if len(v) != 1}
        assert not twice, f"answered more than once: {twice}"
        errors = [r.text for v in replies.values() for r in v if r.error]
        assert not errors, errors
        sequential = [r for v in replies.values() for r in v if r.session.startswith("cl-seq")]
        assert all(r.files for r in sequential), "every SEQUENTIAL run sent its files"

        cluster.restart(1)
        deadline = time.monotonic() + 60
        while not _caught_up(cluster, 1) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _caught_up(cluster, 1), (cluster.stream_state(1), cluster.stream_state(0))
        streams = cluster.stream_state(1)
        assert any(name.startswith("KV_") for name in streams)  # KV buckets are R3 too
        assert any(name.startswith("OBJ_") for name in streams)  # and the object store
