"""Scenarios 1 and 2: throughput and latency by requests in flight, and scaling with replicas.

Both run against the bench's own nats-server and a ``switchboard up`` whose topology raises
``max_in_flight`` of the pipeline's actors to 256, so the load's in-flight count, not a
per-actor cap, sets the concurrency.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from bench._load import LoadGenerator, connect
from bench._measure import FLOW_TEXT, FLOW_UNTIL, PIPELINE_ROLES, LoadSpec, measure
from bench._store import Figure
from bench._system import bench_nats, deployment, write_topology

_log = logging.getLogger(__name__)

IN_FLIGHT = (1, 16, 64, 256)
QUICK_SEQUENTIAL_IN_FLIGHT = (1, 16, 64)
"""``--quick`` skips SEQUENTIAL at 256 in flight: 256 tasks at about 8 a second would be half
the quick run's five minutes (the full run measures it)."""
BENCH_MAX_IN_FLIGHT = 256
WARMUP_REQUESTS = 16
"""Requests of each flow sent before measuring (first litellm calls, workspaces, KV)."""

# Requests per run by in-flight count, sized so that a run lasts a few seconds here.
_REQUESTS = {
    (True, "simple"): {1: 50, 16: 200, 64: 300, 256: 512},
    (True, "sequential"): {1: 10, 16: 48, 64: 128, 256: 256},
    (False, "simple"): {1: 300, 16: 1500, 64: 2500, 256: 3000},
    (False, "sequential"): {1: 40, 16: 300, 64: 600, 256: 768},
}
_DELAYED_CAP = {"simple": 400, "sequential": 200}
"""With a simulated model latency a run is slower: at most this many requests."""


def requests_for(quick: bool, flow: str, in_flight: int, delay_s: float) -> int:
    """How many requests one run sends (bounded so a run lasts seconds, not minutes)."""
    n = _REQUESTS[(quick, flow)][in_flight]
    if delay_s > 0:
        n = min(n, _DELAYED_CAP[flow] // (2 if quick else 1))
        # One in flight waits 1 (simple) or 4 (sequential) model latencies per request.
        calls = 1 if flow == "simple" else 4
        n = min(n, max(in_flight * 2, int(12 / (delay_s * calls)) * in_flight))
    return max(n, in_flight)


def bench_actors(replicas: int = 1) -> dict[str, dict[str, Any]]:
    """Topology overrides: the pipeline's actors at ``max_in_flight`` 256, and the classifier
    and the SIMPLE flow's role actor (researcher) at ``replicas``."""
    actors = {role: {"max_in_flight": BENCH_MAX_IN_FLIGHT} for role in PIPELINE_ROLES}
    for role in ("classifier", "researcher"):
        actors[role]["replicas"] = replicas
    return actors


async def _warm_up(gen: LoadGenerator, flows: tuple[str, ...]) -> None:
    for flow in flows:
        # All at once, and no settling: its counts are not kept (with a 0.5 s model, 4 at a
        # time took 2 s more per deployment, and the settling 1 s).
        await gen.run(FLOW_TEXT[flow], requests=WARMUP_REQUESTS, in_flight=WARMUP_REQUESTS,
                      until=FLOW_UNTIL[flow], timeout_s=30, budget_s=30, settle_s=0.0)


async def _drive(url: str, system: Any, specs: list[LoadSpec], *, scenario: str,
                 base: dict[str, Any]) -> list[Figure]:
    nc = await connect(url)
    gen = LoadGenerator(nc)
    figures: list[Figure] = []
    try:
        await gen.start()
        await _warm_up(gen, tuple(dict.fromkeys(s.flow for s in specs)))
        for spec in specs:
            got = await measure(gen, nc, system, spec, scenario=scenario, base=base)
            _log.info("%s %s in flight %d: %.1f tasks/s", scenario, spec.flow, spec.in_flight,
                      next(f.value for f in got if f.metric == "tasks_per_s"))
            figures += got
    finally:
        await gen.stop()
        await nc.close()
    return figures


def _leftover_figures(system: Any, scenario: str, base: dict[str, Any]) -> list[Figure]:
    return [
        Figure(scenario=scenario, metric="stop", value=system.stopped_in_s or 0.0, unit="s",
               label="switchboard up", **base),
        Figure(scenario=scenario, metric="leftover_processes", value=len(system.leftovers),
               unit="processes", params={"commands": system.leftovers}, **base),
    ]


def run_throughput(workdir: Path, *, quick: bool, delays: list[float]) -> list[Figure]:
    """Scenario ``throughput``: SIMPLE and SEQUENTIAL at 1, 16, 64, 256 in flight (SEQUENTIAL
    at ``QUICK_SEQUENTIAL_IN_FLIGHT`` with ``quick``), for each simulated model latency in
    ``delays`` (seconds); one deployment per latency."""
    figures: list[Figure] = []
    for delay in delays:
        run_dir = workdir / f"throughput-{delay:g}"
        run_dir.mkdir(parents=True)
        topology = write_topology(run_dir / "topology.yaml", delay_s=delay,
                                  actors=bench_actors())
        base = {"replicas": 1, "delay_s": delay}
        specs = [LoadSpec(flow, requests_for(quick, flow, n, delay), n,
                          timeout_s=60 + 20 * delay * 4)
                 for flow in ("simple", "sequential")
                 for n in (QUICK_SEQUENTIAL_IN_FLIGHT if quick and flow == "sequential"
                           else IN_FLIGHT)]
        with bench_nats(run_dir) as server, \
                deployment(run_dir, topology, nats_url=server.url) as system:
            system.external[server.pid or 0] = "nats-server"
            figures += asyncio.run(_drive(server.url, system, specs, scenario="throughput",
                                          base=base))
        figures += _leftover_figures(system, "throughput", base)
    return figures


def run_scaling(workdir: Path, *, quick: bool, delays: list[float]) -> list[Figure]:
    """Scenario ``replicas``: SIMPLE at 64 in flight with the classifier and the researcher at
    1, 2 and 4 replicas (a fresh deployment each), for each latency in ``delays``."""
    figures: list[Figure] = []
    in_flight = 64
    for delay in delays:
        for replicas in (1, 2, 4):
            run_dir = workdir / f"replicas-{delay:g}-{replicas}"
            run_dir.mkdir(parents=True)
            topology = write_topology(run_dir / "topology.yaml", delay_s=delay,
                                      actors=bench_actors(replicas))
            base = {"replicas": replicas, "delay_s": delay}
            spec = LoadSpec("simple", requests_for(quick, "simple", in_flight, delay),
                            in_flight)
            with bench_nats(run_dir) as server, \
                    deployment(run_dir, topology, nats_url=server.url) as system:
                system.external[server.pid or 0] = "nats-server"
                figures += asyncio.run(_drive(server.url, system, [spec], scenario="replicas",
                                              base=base))
            figures += _leftover_figures(system, "replicas", base)
    return figures


IO_BOUND_DELAY_S = 0.5
IO_BOUND_MAX_IN_FLIGHT = 8
IO_BOUND_IN_FLIGHT = {False: 160, True: 64}
"""Requests in flight, full and ``--quick``: above the 4 replicas' 32 slots either way."""


def run_io_bound_scaling(workdir: Path, *, quick: bool) -> list[Figure]:
    """Scenario ``iobound``: SIMPLE requests whose model takes 0.5 s, the
    answering role (researcher) at ``max_in_flight`` 8 per replica and 1, 2 and 4 replicas (a
    fresh deployment each), 160 requests in flight (``--quick``: 64), so the role's slots
    bound the rate: the ideal is ``replicas × 8 / 0.5 s`` answers per second. Reports tasks/s
    and the ratio to linear scaling from 1 replica (``scaling``)."""
    figures: list[Figure] = []
    first = 0.0
    for replicas in (1, 2, 4):
        run_dir = workdir / f"iobound-{replicas}"
        run_dir.mkdir(parents=True)
        actors = bench_actors(1)
        actors["researcher"].update(replicas=replicas, max_in_flight=IO_BOUND_MAX_IN_FLIGHT)
        topology = write_topology(run_dir / "topology.yaml", delay_s=IO_BOUND_DELAY_S,
                                  actors=actors)
        ideal = replicas * IO_BOUND_MAX_IN_FLIGHT / IO_BOUND_DELAY_S
        in_flight = IO_BOUND_IN_FLIGHT[quick]
        requests = int(ideal * (3 if quick else 15)) + in_flight
        base = {"replicas": replicas, "delay_s": IO_BOUND_DELAY_S}
        spec = LoadSpec("simple", requests, in_flight)
        with bench_nats(run_dir) as server, \
                deployment(run_dir, topology, nats_url=server.url) as system:
            system.external[server.pid or 0] = "nats-server"
            run = asyncio.run(_drive(server.url, system, [spec], scenario="iobound",
                                     base=base))
        figures += run + _leftover_figures(system, "iobound", base)
        rate = next((f.value for f in run if f.metric == "tasks_per_s"), 0.0)
        first = first or rate
        figures.append(Figure(scenario="iobound", metric="scaling",
                              value=rate / (first * replicas) if first else float("nan"),
                              unit="x linear", flow="simple", in_flight=in_flight,
                              replicas=replicas, delay_s=IO_BOUND_DELAY_S))
        figures.append(Figure(scenario="iobound", metric="ideal_tasks_per_s", value=ideal,
                              unit="tasks/s", flow="simple", in_flight=in_flight,
                              replicas=replicas, delay_s=IO_BOUND_DELAY_S))
        _log.info("iobound: %d replicas %.1f tasks/s (ideal %.0f)", replicas, rate, ideal)
    return figures
