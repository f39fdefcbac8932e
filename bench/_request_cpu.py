"""``request_cpu``: what one SIMPLE request costs the actor processes in CPU, beside one raw
streamed call of the same answer, in one run (issue 22, item 1).

``switchboard up`` with the repository's topology, every tier on a simulated OpenAI-compatible
model served over HTTP (``bench._sse_server`` in its own process: ``CHUNKS`` content chunks
over ``DELAY_S``), the router's model on (the server answers a router's request with a route,
``bench._sse_server.ROUTE``). So each "hello" is the classifier (one streamed router call) →
the researcher (one streamed answer) → Reply: two calls, both on the direct path, as with a
real OpenAI-compatible provider.

A closed loop of ``IN_FLIGHT`` conversations (each its own session and person) runs for the
window after a warm-up; the deployment's CPU over an idle window of the same length just
before is taken out. In the same run, against the same server: the raw aiohttp client's CPU
per streamed call of the same ``CHUNKS`` chunks (``bench._modelcall.raw_call``: ``json.loads``
per SSE line, the floor), ``IN_FLIGHT`` at a time.

Figures, in ms of CPU per request: every process of the deployment, ``actors`` (the sum over
the replicas of the roles a SIMPLE request goes through, ``VISITED``: the other roles' idle
CPU is background, not the request's), ``nats-server``; ``raw_call_ms``;
``ratio_to_raw`` = actors ÷ raw call (issue 22's target: ≤ 3, the request making two calls);
``model_routed``: the share of requests the router's model decided (1.0: both calls made).

With ``BENCH_PROFILE=1`` every actor process profiles itself (``SB_PROFILE_DIR``, cProfile,
which about doubles their CPU: that run's figures are marked ``profiled`` and are not
comparable) and the scenario writes where the classifier's and the researcher's time went,
per function, to ``bench/results/request_cpu_profile.txt`` (``profile_table``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import pstats
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import yaml
from nats.aio.msg import Msg

from bench._concurrency import KEY_ENV, MODEL, Probe, _server_stats, in_system
from bench._concurrency_load import Conversations
from bench._load import connect
from bench._modelcall import cpu_per_call, raw_call
from bench._store import Figure
from bench._system import REPO, Deployment, bench_nats, deployment
from protocol import ExecutionEvent

_log = logging.getLogger(__name__)

SCENARIO = "request_cpu"
CHUNKS = 20
DELAY_S = 0.2
"""Seconds the simulated model takes for an answer (its chunks spread over them)."""
IN_FLIGHT = 16
TIMING = {False: (5.0, 30.0), True: (3.0, 12.0)}
"""Seconds of warm-up and of the measured window (the idle window is as long)."""
RAW_CALLS = {False: 800, True: 300}
VISITED = ("classifier", "researcher")
"""The roles a SIMPLE request goes through."""


def write_topology(path: Path, api_base: str) -> Path:
    """The repository's topology with every tier on the simulated model, no escalation or
    brainstorm models of its own, and the router's model on."""
    data = yaml.safe_load((REPO / "topology.yaml").read_text(encoding="utf-8"))
    model = {"name": MODEL, "api_base": api_base, "api_key_env": KEY_ENV}
    data["tiers"] = {tier: [model] for tier in (1, 2, 3, 4)}
    data["escalation"] = []
    data["brainstorm_models"] = []
    data["router"] = {**data.get("router", {}), "model": True}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


class _Sources:
    """Counts the ``classified`` events' sources (what decided each route)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._decoder = msgspec.json.Decoder(ExecutionEvent)

    async def on_event(self, msg: Msg) -> None:
        self.counts[self._decoder.decode(msg.data).source] += 1


async def _raw_ms(port: int, calls: int) -> float:
    """The raw client's CPU ms per streamed call of ``CHUNKS`` chunks over ``DELAY_S``."""
    body = json.dumps({"model": "bench-model", "stream": True, "sim_chunks": CHUNKS,
                       "sim_delay_s": DELAY_S,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        return await cpu_per_call(functools.partial(raw_call, session, url, body), calls,
                                  in_flight=IN_FLIGHT)


async def _drive(system: Deployment, port: int, server_pid: int, quick: bool
                 ) -> list[Figure]:
    warmup_s, window_s = TIMING[quick]
    nc = await connect(system.nats_url)
    conv = Conversations(nc)
    probe = Probe(system, server_pid)
    sources = _Sources()
    try:
        await conv.start()
        sub = await nc.subscribe(conv.subjects.event("classifier", "classified"),
                                 cb=sources.on_event)
        idle0 = await asyncio.to_thread(probe.cpu)
        await asyncio.sleep(window_s)
        idle1 = await asyncio.to_thread(probe.cpu)
        started = time.perf_counter()
        run = asyncio.ensure_future(conv.run(IN_FLIGHT, duration_s=warmup_s + window_s,
                                             stagger_s=DELAY_S))
        await asyncio.sleep(warmup_s)
        window = (time.perf_counter(), 0.0)
        cpu0 = await asyncio.to_thread(probe.cpu)
        await asyncio.sleep(max(0.0, started + warmup_s + window_s - time.perf_counter()))
        cpu1 = await asyncio.to_thread(probe.cpu)
        window = (window[0], time.perf_counter())
        result = await run
        await sub.unsubscribe()
    finally:
        await conv.stop()
        await nc.close()
    raw = await _raw_ms(port, RAW_CALLS[quick])
    finished = len(result.finished_between(*window))
    idle_scale = (window[1] - window[0]) / window_s
    per_request: dict[str, float] = {}
    for label, used in cpu1.items():
        if not in_system(label):
            continue
        busy = used - cpu0.get(label, used)
        idle = (idle1.get(label, 0.0) - idle0.get(label, 0.0)) * idle_scale
        per_request[label] = max(busy - idle, 0.0) * 1000 / max(finished, 1)
    actors = sum(ms for label, ms in per_request.items() if label.split("/")[0] in VISITED)
    decided = sum(sources.counts.values())
    params = {"window_s": window[1] - window[0], "finished": finished, "chunks": CHUNKS,
              "answered": len(result.done),
              "delay_s": DELAY_S, "sources": dict(sources.counts),
              "errors": dict(result.errors), "lost": result.lost}

    def fig(metric: str, value: float, unit: str, label: str | None = None) -> Figure:
        return Figure(scenario=SCENARIO, metric=metric, value=value, unit=unit, flow="simple",
                      in_flight=IN_FLIGHT, delay_s=DELAY_S, replicas=1, label=label,
                      params=params)

    figures = [fig("cpu_ms_per_request", ms, "ms", label)
               for label, ms in sorted(per_request.items()) if ms > 0]
    figures += [fig("actors_cpu_ms_per_request", actors, "ms"),
                fig("raw_call_cpu_ms", raw, "ms"),
                fig("ratio_to_raw", actors / raw if raw else 0.0, "x"),
                fig("tasks_per_s", finished / (window[1] - window[0]), "tasks/s"),
                fig("model_routed", sources.counts.get("model", 0) / max(decided, 1), "share"),
                fig("lost", result.lost, "tasks"),
                fig("error_replies", sum(result.errors.values()), "replies")]
    _log.info("request_cpu: %d requests, actors %.2f ms CPU each, raw call %.3f ms: %.1f× "
              "(routed by %s)", finished, actors, raw, actors / raw if raw else 0.0,
              dict(sources.counts))
    return figures


PROFILE_OUT = REPO / "bench" / "results" / "request_cpu_profile.txt"
PROFILED = ("classifier-0", "researcher-0")


def profile_table(path: Path, requests: int, top: int = 30) -> str:
    """The functions ``path``'s profile spent most time in (their own time), as a share of
    the process's profiled time and in profiled µs per request, with their cumulative time
    per request (callees included)."""
    stats = pstats.Stats(str(path))
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in entries.values()) or 1.0
    rows = sorted(entries.items(), key=lambda item: -item[1][2])[:top]
    lines = [f"{path.stem}: {total:.1f} s profiled, {requests} requests "
             f"({total * 1e6 / max(requests, 1):.0f} µs per request, profiled)",
             f"{'own %':>6} {'own µs/req':>10} {'cum µs/req':>10} {'calls/req':>9}  function"]
    for (file, line, name), (_, calls, tt, ct, _) in rows:
        where = file.split("site-packages/")[-1].replace(str(REPO) + "/", "")
        lines.append(f"{tt * 100 / total:6.1f} {tt * 1e6 / max(requests, 1):10.1f} "
                     f"{ct * 1e6 / max(requests, 1):10.1f} {calls / max(requests, 1):9.1f}  "
                     f"{name} ({where}:{line})")
    return "\n".join(lines)


def run_request_cpu(workdir: Path, *, quick: bool) -> list[Figure]:
    """Run the scenario (module docstring)."""
    from switchboard.embedded import free_port

    run_dir = workdir / SCENARIO
    run_dir.mkdir(parents=True)
    profiles = run_dir / "profiles" if os.environ.get("BENCH_PROFILE") == "1" else None
    port = free_port()
    os.environ[KEY_ENV] = "bench"
    topology = write_topology(run_dir / "topology.yaml", f"http://127.0.0.1:{port}/v1")
    server = subprocess.Popen(
        [sys.executable, "-m", "bench._sse_server", str(port), "--delay-s", str(DELAY_S),
         "--chunks", str(CHUNKS)], cwd=REPO, start_new_session=True)
    try:
        asyncio.run(_server_stats(port, wait_s=20.0))
        env = {"SB_PROFILE_DIR": str(profiles)} if profiles is not None else None
        with bench_nats(run_dir) as nats_server, \
                deployment(run_dir, topology, nats_url=nats_server.url,
                           extra_env=env) as system:
            system.external[nats_server.pid or 0] = "nats-server"
            figures = asyncio.run(_drive(system, port, server.pid, quick))
        if profiles is not None:
            figures = [dataclasses.replace(f, params={**f.params, "profiled": True})
                       for f in figures]
            _write_profiles(profiles, figures)
        return figures
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _write_profiles(profiles: Path, figures: list[Figure]) -> None:
    """``profile_table`` of each ``PROFILED`` process to ``PROFILE_OUT`` (and the log)."""
    answered = next((int(f.params.get("answered", 0)) for f in figures
                     if f.metric == "actors_cpu_ms_per_request"), 0)
    tables = [profile_table(profiles / f"{name}.prof", answered)
              for name in PROFILED if (profiles / f"{name}.prof").exists()]
    if not tables:
        _log.warning("request_cpu: no profile written under %s", profiles)
        return
    text = "\n\n".join(tables) + "\n"
    PROFILE_OUT.write_text(text, encoding="utf-8")
    _log.info("request_cpu: profiles written to %s\n%s", PROFILE_OUT, text)


def request_cpu_table(rows: list[dict[str, Any]]) -> str:
    """The scenario's latest figures: ms of CPU per request by process, and the ratio."""
    mine = [r for r in rows if r["scenario"] == SCENARIO]
    if not mine:
        return ""
    lines = ["== One SIMPLE request's CPU (two streamed calls, "
             f"{CHUNKS} chunks each) beside one raw streamed call =="]
    for r in sorted((r for r in mine if r["metric"] == "cpu_ms_per_request"),
                    key=lambda r: -r["value"]):
        lines.append(f"{r['label']:>24}  {r['value']:7.3f} ms")
    values = {r["metric"]: r["value"] for r in mine if r["label"] is None}
    lines.append(f"{'actors (sum)':>24}  {values.get('actors_cpu_ms_per_request', 0):7.3f} ms")
    lines.append(f"{'raw streamed call':>24}  {values.get('raw_call_cpu_ms', 0):7.3f} ms")
    lines.append(f"{'actors ÷ raw call':>24}  {values.get('ratio_to_raw', 0):7.2f} ×  "
                 f"(target ≤ 3; routed by the model: "
                 f"{values.get('model_routed', 0):.0%})")
    return "\n".join(lines)
