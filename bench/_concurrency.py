"""Scenario ``concurrency``: many conversations waiting on a slow model.

A simulated model served over HTTP (``bench._sse_server`` in its own process: every answer
takes ``MODEL_DELAY_S`` seconds, spread over ``MODEL_CHUNKS`` content chunks, then a usage
chunk and ``[DONE]``) is called the way users' models are: ``openai/bench-model`` with
``api_base`` and a dummy key in ``api_key_env``, so Switchboard's direct streaming path
(``modelcall._direct``) does the calls. ``switchboard up`` runs the repository's topology with
every tier on that model, the router's model call off (``router: {model: false}``: keyword
rules), and the classifier and researcher at ``max_in_flight`` ``MAX_IN_FLIGHT``, so each
"hello" is classifier → researcher (one streamed model call) → Reply, and slots never bound
the rate.

Levels of 0 (idle), 500 and 2,000 closed-loop conversations (``bench._concurrency_load``)
on one deployment. Reported per level: tasks/s over a window after a warm-up, the Little's-law
bound ``N / MODEL_DELAY_S`` and the ratio, latency and the orchestration overhead (latency
minus the model's ``MODEL_DELAY_S``) at p50/p90/p99, lost / duplicated / error replies,
redeliveries, PSS and RSS of every process sampled while the load runs, each process's CPU
(cores, and ms per task), and the growth of the system's summed PSS and RSS per active
conversation (KiB). The simulated server and the bench client are reported apart, outside the
system's sums.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench._concurrency_load import Conversations, LevelResult
from bench._consumers import consumer_counts, redeliveries
from bench._load import connect
from bench._measure import BENCH_CLIENT, percentile, process_label
from bench._procs import cpu_seconds, memory, process_tree
from bench._store import Figure
from bench._system import REPO, Deployment, bench_nats, deployment

_log = logging.getLogger(__name__)

SCENARIO = "concurrency"
MODEL_DELAY_S = 5.0
MODEL_CHUNKS = 50
LEVELS = (0, 500, 2000)
MAX_IN_FLIGHT = 4096
"""``max_in_flight`` of the classifier and the researcher (the most ``ActorSpec`` allows): a
delivery holds its slot until it is acked, after the Reply and the memory writes, so slots
barely above the level (2,048 for 2,000) did bound the rate: the researcher sat at 2,048
unacked with up to 870 messages waiting undelivered."""
KEY_ENV = "BENCH_MODEL_KEY"
"""The dummy key's variable (not ``SB_*``: ``bench._system.system_env`` drops those)."""
MODEL = "openai/bench-model"
SIM_SERVER = "model server (simulated)"
ROLES = ["classifier", "researcher"]
RESEARCHER_REPLICAS = 2
"""Replicas of the researcher, as an operator scales a busy role: at 2,000 conversations one
replica's event loop needs 0.85-0.9 of a core (2.3 ms of CPU a task, most of it the streamed
call's 51 socket reads) and deliveries queue in it for 0.4-0.6 s before their model call."""
WARMUP_CONVERSATIONS = 8


@dataclass(frozen=True)
class Timing:
    """Seconds of one level: warm-up before the measured window, the window, and the idle
    level's window."""

    warmup_s: float
    window_s: float
    idle_s: float


TIMING = {False: Timing(warmup_s=12.0, window_s=40.0, idle_s=10.0),
          True: Timing(warmup_s=8.0, window_s=10.0, idle_s=4.0)}


def sim_topology(api_base: str, *, router_model: bool) -> dict[str, Any]:
    """The repository's ``topology.yaml`` with every tier on the simulated model at
    ``api_base``, no escalation or brainstorm models of its own, the router's model on or
    off."""
    data: dict[str, Any] = yaml.safe_load((REPO / "topology.yaml").read_text(encoding="utf-8"))
    model = {"name": MODEL, "api_base": api_base, "api_key_env": KEY_ENV}
    data["tiers"] = {tier: [model] for tier in (1, 2, 3, 4)}
    data["escalation"] = []
    data["brainstorm_models"] = []
    data["router"] = {**data.get("router", {}), "model": router_model}
    return data


def write_topology(path: Path, api_base: str) -> Path:
    """``sim_topology`` with the router's model off, the classifier and the researcher at
    ``MAX_IN_FLIGHT``, and ``RESEARCHER_REPLICAS`` researchers."""
    data = sim_topology(api_base, router_model=False)
    for role in ROLES:
        data["actors"].setdefault(role, {})["max_in_flight"] = MAX_IN_FLIGHT
    data["actors"]["researcher"]["replicas"] = RESEARCHER_REPLICAS
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@contextlib.contextmanager
def sim_server(port: int, delay_s: float = MODEL_DELAY_S, chunks: int = MODEL_CHUNKS) -> Any:
    """``python -m bench._sse_server`` on 127.0.0.1:``port`` with a latency and chunk count
    (default: this scenario's), stopped (SIGTERM, then SIGKILL) when the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._sse_server", str(port), "--delay-s", str(delay_s),
         "--chunks", str(chunks)], cwd=REPO, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


async def _server_stats(port: int, *, wait_s: float = 0.0) -> dict[str, int]:
    """The simulated server's ``/stats``; retried for ``wait_s`` seconds while it starts."""
    deadline = time.monotonic() + wait_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/stats") as resp:
                    return dict(await resp.json())
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


class Probe:
    """Names, CPU and memory of every process the scenario watches: ``switchboard up``'s
    tree, its nats-server, the simulated model server and this process (the bench client)."""

    def __init__(self, system: Deployment, server_pid: int) -> None:
        self.system = system
        self.server_pid = server_pid

    def labels(self) -> dict[int, str]:
        names = self.system.names()
        pids = [*process_tree(self.system.proc.pid), *self.system.external, os.getpid()]
        labels = {pid: process_label(self.system, pid, names) for pid in pids}
        labels[self.server_pid] = SIM_SERVER
        return labels

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far, by process label (same-named processes added)."""
        out: dict[str, float] = {}
        for pid, label in self.labels().items():
            used = cpu_seconds(pid)
            if used is not None:
                out[label] = out.get(label, 0.0) + used
        return out

    def memory(self) -> dict[str, tuple[int, int]]:
        """(PSS, RSS) in KiB by process label."""
        out: dict[str, tuple[int, int]] = {}
        for pid, label in self.labels().items():
            mem = memory(pid, label)
            if mem is not None:
                pss, rss = out.get(label, (0, 0))
                out[label] = (pss + mem.pss_kb, rss + mem.rss_kb)
        return out


def in_system(label: str) -> bool:
    """Whether a process counts in the system's sums (not the simulated server, not the
    bench client)."""
    return label not in {SIM_SERVER, BENCH_CLIENT}


async def _level(conv: Conversations, probe: Probe, port: int, n: int,
                 timing: Timing) -> list[Figure]:
    """Run one level and return its figures."""
    before = await consumer_counts(conv.nc, conv.subjects.prefix, ROLES)
    started = time.perf_counter()
    window = (started + (timing.warmup_s if n else 0.0),
              started + (timing.warmup_s if n else 0.0) + (timing.window_s if n else
                                                           timing.idle_s))
    run = asyncio.ensure_future(conv.run(n, duration_s=window[1] - started,
                                         stagger_s=MODEL_DELAY_S))
    await asyncio.sleep(window[0] - time.perf_counter())
    cpu0 = await asyncio.to_thread(probe.cpu)
    await asyncio.sleep(max(0.0, window[0] + 0.75 * (window[1] - window[0])
                            - time.perf_counter()))
    mem = await asyncio.to_thread(probe.memory)
    streams = await _server_stats(port)
    await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
    cpu1 = await asyncio.to_thread(probe.cpu)
    result = await run
    for detail, count in result.trouble_details.most_common(5):
        _log.warning("concurrency: %d conversations: %d × %s", n, count, detail)
    after = await consumer_counts(conv.nc, conv.subjects.prefix, ROLES)
    return _figures(n, result, window, cpu0, cpu1, mem, streams,
                    redeliveries(before, after))


def _figures(n: int, result: LevelResult, window: tuple[float, float],
             cpu0: dict[str, float], cpu1: dict[str, float],
             mem: dict[str, tuple[int, int]], streams: dict[str, int],
             redelivered: int) -> list[Figure]:
    span = window[1] - window[0]
    finished = result.finished_between(*window)
    latency_ms = [(answered - sent) * 1000 for sent, answered in finished]
    params = {"window_s": span, "sent": result.sent, "roles": dict(result.roles),
              "trouble": dict(result.trouble), "errors": dict(result.errors),
              "trouble_details": dict(result.trouble_details.most_common(10)),
              "open_streams": streams.get("open", 0), "model_chunks": MODEL_CHUNKS}

    def fig(metric: str, value: float, unit: str, label: str | None = None) -> Figure:
        return Figure(scenario=SCENARIO, metric=metric, value=value, unit=unit, flow="simple",
                      in_flight=n, delay_s=MODEL_DELAY_S, replicas=1, label=label,
                      params=params)

    rate = len(finished) / span
    figures = [fig("tasks_per_s", rate, "tasks/s"), fig("finished", len(finished), "tasks")]
    if n:
        bound = n / MODEL_DELAY_S
        figures += [fig("bound_tasks_per_s", bound, "tasks/s"),
                    fig("ratio_to_bound", rate / bound, "x"),
                    fig("open_streams", streams.get("open", 0), "streams")]
        for q in (50, 90, 99):
            value = percentile(latency_ms, q)
            figures += [fig(f"latency_p{q}", value, "ms"),
                        fig(f"overhead_p{q}", value - MODEL_DELAY_S * 1000, "ms")]
        figures += [fig("lost", result.lost, "tasks"),
                    fig("duplicates", result.duplicates, "messages"),
                    fig("error_replies", sum(result.errors.values()), "replies"),
                    fig("empty_replies", result.empty, "replies"),
                    fig("send_failed", result.send_failed, "requests"),
                    fig("trouble_events", sum(result.trouble.values()), "events"),
                    fig("redeliveries", redelivered, "deliveries"),
                    fig("progress_per_task", result.progress / max(1, len(result.done)),
                        "messages")]
        for segment, values in result.segments_between(*window).items():
            figures += [fig(f"segment_p{q}", percentile(values, q), "ms", segment)
                        for q in (50, 99)]
    system_cpu = 0.0
    for label, used in cpu1.items():
        cores = (used - cpu0.get(label, used)) / span
        system_cpu += cores if in_system(label) else 0.0
        figures.append(fig("cpu_cores", cores, "cores", label))
        if rate:
            figures.append(fig("cpu_ms_per_task", cores * 1000 / rate, "ms", label))
    figures.append(fig("cpu_cores", system_cpu, "cores", "system"))
    pss_sum = rss_sum = 0
    for label, (pss, rss) in mem.items():
        figures += [fig("pss", pss / 1024, "MiB", label), fig("rss", rss / 1024, "MiB", label)]
        if in_system(label):
            pss_sum, rss_sum = pss_sum + pss, rss_sum + rss
    figures += [fig("pss", pss_sum / 1024, "MiB", "system"),
                fig("rss", rss_sum / 1024, "MiB", "system")]
    return figures


def growth(figures: list[Figure]) -> list[Figure]:
    """KiB of the system's summed PSS and RSS per active conversation, from the idle level to
    each loaded one (``label`` "from 0") and between consecutive loaded levels."""
    sums = {(f.in_flight or 0, f.metric): f.value for f in figures
            if f.label == "system" and f.metric in {"pss", "rss"}}
    levels = sorted({n for n, _ in sums})
    out = []
    for i, n in enumerate(levels[1:], start=1):
        for metric in ("pss", "rss"):
            for base in sorted({0, levels[i - 1]}):
                if (base, metric) in sums and n > base:
                    kib = (sums[(n, metric)] - sums[(base, metric)]) * 1024 / (n - base)
                    out.append(Figure(scenario=SCENARIO, metric=f"{metric}_kib_per_conversation",
                                      value=kib, unit="KiB", flow="simple", in_flight=n,
                                      delay_s=MODEL_DELAY_S, replicas=1, label=f"from {base}"))
    return out


async def _drive(system: Deployment, port: int, server_pid: int,
                 quick: bool) -> list[Figure]:
    timing = TIMING[quick]
    nc = await connect(system.nats_url)
    conv = Conversations(nc)
    probe = Probe(system, server_pid)
    figures: list[Figure] = []
    try:
        await conv.start()
        warm = await conv.run(WARMUP_CONVERSATIONS, duration_s=0.1, stagger_s=0.0)
        _log.info("concurrency: warm-up answered %d of %d (roles %s)", len(warm.done),
                  warm.sent, dict(warm.roles))
        for n in LEVELS:
            got = await _level(conv, probe, port, n, timing)
            figures += got
            _log.info("concurrency: %d conversations: %s", n, _one_line(got))
    finally:
        await conv.stop()
        await nc.close()
    return figures + growth(figures)


def _one_line(figures: list[Figure]) -> str:
    values = {f.metric: f.value for f in figures if f.label is None}
    pss = next((f.value for f in figures if f.metric == "pss" and f.label == "system"), 0.0)
    return (f"{values.get('tasks_per_s', 0):.1f} tasks/s "
            f"({values.get('ratio_to_bound', math.nan):.2f} of the bound), overhead p50 "
            f"{values.get('overhead_p50', math.nan):.0f} ms p99 "
            f"{values.get('overhead_p99', math.nan):.0f} ms, lost "
            f"{values.get('lost', 0):.0f}, system PSS {pss:.0f} MiB")


def _raise_open_files(needed: int) -> int:
    """Raise this process's soft limit of open files (inherited by ``switchboard up`` and the
    model server) to at least ``needed`` when the hard limit allows: the researcher holds one
    socket per model call in flight, and 1,024 is a common default. Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        _log.info("concurrency: open files limit raised from %d to %d", soft, new)
        soft = new
    return int(soft)


def run_concurrency(workdir: Path, *, quick: bool) -> list[Figure]:
    """Run the scenario (module docstring): one deployment, levels ``LEVELS``."""
    from switchboard.embedded import free_port

    _raise_open_files(2 * max(LEVELS) + 1024)
    run_dir = workdir / SCENARIO
    run_dir.mkdir(parents=True)
    port = free_port()
    os.environ[KEY_ENV] = "bench"
    topology = write_topology(run_dir / "topology.yaml", f"http://127.0.0.1:{port}/v1")
    with sim_server(port) as server, bench_nats(run_dir) as nats_server:
        asyncio.run(_server_stats(port, wait_s=20.0))
        with deployment(run_dir, topology, nats_url=nats_server.url) as system:
            system.external[nats_server.pid or 0] = "nats-server"
            figures = asyncio.run(_drive(system, port, server.pid, quick))
    figures.append(Figure(scenario=SCENARIO, metric="leftover_processes",
                          value=len(system.leftovers), unit="processes",
                          params={"commands": system.leftovers}))
    return figures


def concurrency_table(rows: list[dict[str, Any]]) -> str:
    """The latest ``concurrency`` figures: rate against the bound, overhead, losses, memory
    and CPU by level, and the growth per conversation."""
    from bench._concurrency_table import render

    return render([r for r in rows if r["scenario"] == SCENARIO])
