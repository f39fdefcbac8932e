"""``request_cpu``: what one SIMPLE request costs the actor processes in CPU, beside one raw
streamed call of the same answer, in one run (issue 22, item 1).

``switchboard up`` with the repository's topology, every tier on a simulated OpenAI-compatible
model served over HTTP (``bench._sse_server`` in its own process: ``CHUNKS`` content chunks
over ``DELAY_S``), the router's model on (the server answers a router's request with a route,
``bench._sse_server.ROUTE``). So each "hello" is the classifier (the router's call: no one
reads its text as it grows, so it asks for one answer, ``stream`` left out, which the server
sends after the same ``DELAY_S``) → the researcher (one streamed answer, ``CHUNKS`` chunks) →
Reply: two calls, both on the direct path, as with a real OpenAI-compatible provider.

Rounds (``Timing``): a closed loop of ``IN_FLIGHT`` conversations (each its own session and
person) for a window after a warm-up, the deployment's idle CPU (its rate over an idle window
measured first) taken out; then, the load stopped, the raw aiohttp client's CPU per streamed
call of the same ``CHUNKS`` chunks against the same server (``bench._modelcall.raw_call``:
``json.loads`` per SSE line, the floor), ``IN_FLIGHT`` at a time. Each round's ratio compares
two figures taken a few seconds apart, on the machine as it is then; the figures are the
medians over the rounds.

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
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import yaml
from nats.aio.msg import Msg

from bench._concurrency import (
    KEY_ENV,
    Probe,
    _server_stats,
    in_system,
    sim_server,
    sim_topology,
)
from bench._concurrency_load import Conversations, LevelResult
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
@dataclass(frozen=True)
class Timing:
    """Rounds of load then raw calls (the ratio is each round's, so both halves see the
    machine as it is then), each: seconds of warm-up and of measured window, raw calls; and
    the seconds of the idle window measured first."""

    rounds: int
    warmup_s: float
    window_s: float
    raw_calls: int
    idle_s: float


TIMING = {False: Timing(rounds=5, warmup_s=2.0, window_s=10.0, raw_calls=300, idle_s=10.0),
          True: Timing(rounds=3, warmup_s=1.5, window_s=5.0, raw_calls=150, idle_s=5.0)}
VISITED = ("classifier", "researcher")
"""The roles a SIMPLE request goes through."""


def write_topology(path: Path, api_base: str) -> Path:
    """``bench._concurrency.sim_topology`` with the router's model on."""
    data = sim_topology(api_base, router_model=True)
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


@dataclass
class _Round:
    """One round: CPU ms per request by process label, requests in the window, the raw
    call's CPU ms, and the run's result."""

    per_request: dict[str, float]
    finished: int
    window_s: float
    raw_ms: float
    result: LevelResult

    @property
    def actors(self) -> float:
        return sum(ms for label, ms in self.per_request.items()
                   if label.split("/")[0] in VISITED)


async def _round(conv: Conversations, probe: Probe, port: int, timing: Timing,
                 idle_per_s: dict[str, float]) -> _Round:
    """The load for a warm-up and a window (the CPU per request over the window, the idle
    rate taken out), then, the load stopped, the raw client's calls."""
    started = time.perf_counter()
    run = asyncio.ensure_future(conv.run(IN_FLIGHT, duration_s=timing.warmup_s
                                         + timing.window_s, stagger_s=DELAY_S))
    await asyncio.sleep(timing.warmup_s)
    begin = time.perf_counter()
    cpu0 = await asyncio.to_thread(probe.cpu)
    await asyncio.sleep(max(0.0, started + timing.warmup_s + timing.window_s
                            - time.perf_counter()))
    cpu1 = await asyncio.to_thread(probe.cpu)
    end = time.perf_counter()
    result = await run
    finished = len(result.finished_between(begin, end))
    per_request = {
        label: max(used - cpu0.get(label, used) - idle_per_s.get(label, 0.0) * (end - begin),
                   0.0) * 1000 / max(finished, 1)
        for label, used in cpu1.items() if in_system(label)}
    raw = await _raw_ms(port, timing.raw_calls)
    return _Round(per_request, finished, end - begin, raw, result)


async def _drive(system: Deployment, port: int, server_pid: int, quick: bool
                 ) -> list[Figure]:
    timing = TIMING[quick]
    nc = await connect(system.nats_url)
    conv = Conversations(nc)
    probe = Probe(system, server_pid)
    sources = _Sources()
    rounds: list[_Round] = []
    try:
        await conv.start()
        sub = await nc.subscribe(conv.subjects.event("classifier", "classified"),
                                 cb=sources.on_event)
        idle0 = await asyncio.to_thread(probe.cpu)
        await asyncio.sleep(timing.idle_s)
        idle1 = await asyncio.to_thread(probe.cpu)
        idle_per_s = {label: (used - idle0.get(label, used)) / timing.idle_s
                      for label, used in idle1.items()}
        for _ in range(timing.rounds):
            rounds.append(await _round(conv, probe, port, timing, idle_per_s))
            _log.info("request_cpu: round of %d requests: actors %.2f ms, raw call %.3f ms",
                      rounds[-1].finished, rounds[-1].actors, rounds[-1].raw_ms)
        await sub.unsubscribe()
    finally:
        await conv.stop()
        await nc.close()
    return _figures(rounds, sources)


def _figures(rounds: list[_Round], sources: _Sources) -> list[Figure]:
    """Medians over the rounds (the ratio: the median of each round's own ratio)."""
    actors = statistics.median(r.actors for r in rounds)
    raw = statistics.median(r.raw_ms for r in rounds)
    ratio = statistics.median(r.actors / r.raw_ms for r in rounds if r.raw_ms)
    finished = sum(r.finished for r in rounds)
    window_s = sum(r.window_s for r in rounds)
    decided = sum(sources.counts.values())
    lost = sum(r.result.lost for r in rounds)
    errors: Counter[str] = Counter()
    for r in rounds:
        errors.update(r.result.errors)
    params = {"window_s": window_s, "finished": finished, "chunks": CHUNKS,
              "answered": sum(len(r.result.done) for r in rounds), "rounds": len(rounds),
              "delay_s": DELAY_S, "sources": dict(sources.counts), "errors": dict(errors),
              "ratios": [round(r.actors / r.raw_ms, 3) for r in rounds if r.raw_ms],
              "lost": lost}

    def fig(metric: str, value: float, unit: str, label: str | None = None) -> Figure:
        return Figure(scenario=SCENARIO, metric=metric, value=value, unit=unit, flow="simple",
                      in_flight=IN_FLIGHT, delay_s=DELAY_S, replicas=1, label=label,
                      params=params)

    labels = sorted({label for r in rounds for label in r.per_request})
    per_label = {label: statistics.median(r.per_request.get(label, 0.0) for r in rounds)
                 for label in labels}
    figures = [fig("cpu_ms_per_request", ms, "ms", label)
               for label, ms in per_label.items() if ms > 0]
    figures += [fig("actors_cpu_ms_per_request", actors, "ms"),
                fig("raw_call_cpu_ms", raw, "ms"),
                fig("ratio_to_raw", ratio, "x"),
                fig("tasks_per_s", finished / window_s if window_s else 0.0, "tasks/s"),
                fig("model_routed", sources.counts.get("model", 0) / max(decided, 1), "share"),
                fig("lost", lost, "tasks"),
                fig("error_replies", sum(errors.values()), "replies")]
    _log.info("request_cpu: %d requests in %d rounds, actors %.2f ms CPU each, raw call "
              "%.3f ms: %.2f× (rounds %s; routed by %s)", finished, len(rounds), actors, raw,
              ratio, params["ratios"], dict(sources.counts))
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
    with sim_server(port, DELAY_S, CHUNKS) as server:
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
    lines = ["== One SIMPLE request's CPU (the router's call, one answer; the answer, "
             f"{CHUNKS} chunks streamed) beside one raw streamed call =="]
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
