"""The ``runtime`` scenario: Switchboard's runtime alone on a 5-hop durable pipeline, beside the
floor (the thin layer, ``bench._thin``) and the peers (``bench._peers``), each on a nats-server of
its own. The thin layer and the runtime are both up at once and take turns: each load is cut
into ``rounds`` parts run by one, then the other (``_interleaved``), so a machine that is
slower in one minute than in the next slows both alike; the peers run after them.

Five bench-only actors (``bench._runtime_actors``), each its own OS process started by the real
``Supervisor`` (fork server, ``run_actor``), against a bench nats-server on 127.0.0.1. A closed
loop of ``in_flight`` workers publishes ChatMessages to the classifier's task subject (a
JetStream publish) and waits for the consolidator's Reply on a core subscription to the
bench's outbox subject. Each task is 5 durable steps, 5 execution events (the runtime's
``handled``), one KV put and one outbox publish.

Figures (flow ``runtime5``; ``thin5``, ``autogen5``, ``faststream5`` for the others): tasks/s,
send → Reply latency p50/p90/p99 (ms), lost and duplicated replies, redeliveries, and CPU µs per
step of each process (``/proc/PID/stat``; one step per task per actor process; for nats-server
and the bench client, per task); and the runtime's ratios to the thin layer: ``ratio_to_thin``
(tasks/s) at each load and ``latency_p50_ratio_to_thin`` at 1 in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from bench._consumers import consumer_counts, redeliveries
from bench._loop import (
    ACTORS_MEAN,
    BENCH_CLIENT,
    NATS_SERVER,
    SCENARIO,
    SETTLE_S,
    Answers,
    Load,
    LoopResult,
    Measured,
    closed_loop,
    loads,
    merged,
    percentile,
    pipeline_figures,
)
from bench._pipeline import THIN_ACTORS, RunLoad, thin_pipeline
from bench._procs import cpu_seconds
from bench._runtime_actors import BENCH_ACTORS, ROLES
from bench._store import Figure
from bench._system import REPO, bench_nats
from core.config import Settings, Topology, load_topology
from protocol import ChatMessage, Subjects, encoder, outbound_decoder
from switchboard.supervisor import ProcessSpec, Supervisor, preload_modules
from switchboard.worker import run_actor_process

_log = logging.getLogger(__name__)

ORIGIN = "benchrt"
"""The bench client's gateway origin: Replies arrive on ``<prefix>.out.benchrt``."""
IN_FLIGHTS = (1, 64, 256)
MAX_IN_FLIGHT = 256
"""``max_in_flight`` of every bench actor, so the load sets the concurrency."""
READY_TIMEOUT_S = 60.0
PUBLISH_TIMEOUT_S = 10.0


class Client5:
    """The bench client: publishes ChatMessages, matches Replies by ``in_reply_to``."""

    def __init__(self, nc: Client, subjects: Subjects) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self.subjects = subjects
        self.answers = Answers()
        self.errors = 0

    async def start(self) -> None:
        await self.nc.subscribe(self.subjects.outbox(ORIGIN), cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        now = time.perf_counter()
        reply = outbound_decoder.decode(msg.data)
        if self.answers.arrived(reply.in_reply_to, now) and getattr(reply, "error", None):
            self.errors += 1

    async def one(self) -> float:
        """Send one task and return its send → Reply latency in ms.

        Raises:
            TimeoutError: no Reply within ``bench._loop.REQUEST_TIMEOUT_S``.
        """
        key = uuid.uuid4().hex
        session = f"rt-{key[:16]}"
        message = ChatMessage(message_id=key, session=session, origin=ORIGIN, user_id="bench",
                              text="hello", sent_at=time.time())
        return await self.answers.latency_ms(key, lambda: self.js.publish(
            self.subjects.task(ROLES[0]), encoder.encode(message),
            headers={"Nats-Msg-Id": f"bench:{key}", "Sb-Session": session}))

    async def run(self, in_flight: int, requests: int, budget_s: float) -> LoopResult:
        """A closed loop of ``in_flight`` workers until ``requests`` finish or ``budget_s``
        seconds of sending pass."""
        dup0, err0 = self.answers.duplicates, self.errors
        result = await closed_loop(self.one, in_flight, requests, budget_s)
        await asyncio.sleep(SETTLE_S)
        result.duplicates = self.answers.duplicates - dup0
        result.errors = self.errors - err0
        return result


def bench_topology() -> Topology:
    """The repository's topology with the five roles at ``MAX_IN_FLIGHT``."""
    base = load_topology(REPO / "topology.yaml", settings=Settings(model=None))
    actors = dict(base.actors)
    for role in ROLES:
        actors[role] = base.actor(role).model_copy(update={"max_in_flight": MAX_IN_FLIGHT,
                                                           "replicas": 1})
    return base.model_copy(update={"actors": actors})


@contextlib.contextmanager
def supervised(topology: Topology, nats_url: str, data_dir: Path) -> Iterator[Supervisor]:
    """The five bench actors under the real Supervisor (fork server), in a thread of this
    process; stopped (SIGTERM, then SIGKILL after 15 s) when the block ends."""
    settings = Settings(nats_url=nats_url, data_dir=data_dir, log_level="WARNING", model=None)
    specs = [ProcessSpec(f"{role}/0", run_actor_process,
                         (role, 0, settings, topology, nats_url, BENCH_ACTORS[role]))
             for role in ROLES]
    supervisor = Supervisor(specs, preload=preload_modules(topology))
    thread = threading.Thread(target=supervisor.run, kwargs={"install_signals": False},
                              name="supervisor", daemon=True)
    thread.start()
    try:
        yield supervisor
    finally:
        supervisor.stop()
        thread.join(timeout=30)


async def _wait_ready(nc: Client, subjects: Subjects, timeout_s: float) -> None:
    """Until every role's consumer has a pull request waiting."""
    js = nc.jetstream(timeout=5)
    async with asyncio.timeout(timeout_s):
        while True:
            waiting = 0
            for role in ROLES:
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    info = await js.consumer_info(subjects.task_stream(role),
                                                  subjects.durable(role))
                    waiting += 1 if (info.num_waiting or 0) > 0 else 0
            if waiting == len(ROLES):
                return
            await asyncio.sleep(0.1)


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu for name, pid in pids.items() if (cpu := cpu_seconds(pid)) is not None}


async def _measure_once(client: Client5, load: Load, pids: dict[str, int], *,
                        warm: bool) -> Measured:
    if warm and load.warmup:
        await client.run(min(load.in_flight, 64), load.warmup, load.budget_s)
    before = await consumer_counts(client.nc, client.subjects.prefix, list(ROLES))
    cpu0 = _cpu(pids)
    result = await client.run(load.in_flight, load.requests, load.budget_s)
    cpu1 = _cpu(pids)
    after = await consumer_counts(client.nc, client.subjects.prefix, list(ROLES))
    used = {name: cpu1[name] - cpu0.get(name, cpu1[name]) for name in cpu1}
    return Measured(result, used, redeliveries(before, after))


@contextlib.asynccontextmanager
async def runtime_pipeline(workdir: Path) -> AsyncIterator[RunLoad]:
    """The five bench actors under the real supervisor on their own bench nats-server;
    yields ``run(load, warm)``; stops everything on leaving."""
    topology = bench_topology()
    subjects = topology.subjects
    with bench_nats(workdir) as server, supervised(topology, server.url, workdir / "data") as sup:
        nc = await nats.connect(server.url, name="bench-runtime", allow_reconnect=False,
                                connect_timeout=5)
        try:
            await _wait_ready(nc, subjects, READY_TIMEOUT_S)
            client = Client5(nc, subjects)
            await client.start()
            pids = {name.split("/")[0]: pid for name, pid in sup.pids().items()}
            if server.pid is not None:
                pids[NATS_SERVER] = server.pid
            pids[BENCH_CLIENT] = os.getpid()

            async def run(load: Load, warm: bool) -> Measured:
                return await _measure_once(client, load, pids, warm=warm)

            yield run
        finally:
            await nc.close()


def rounds(quick: bool) -> int:
    """How many alternating rounds each load is cut into (the thin layer's, then the
    runtime's, in turn), so both see the machine as it is in the same minute."""
    return 3 if quick else 4


async def _interleaved(workdir: Path, quick: bool) -> list[Figure]:
    """Each load cut into ``rounds`` parts, run by the thin layer and the runtime in turn,
    both deployments up the whole time; each flow's figures from its rounds together, and
    the ratio of each pair of rounds kept beside the ratio of the totals."""
    from bench._thin import LIMIT

    count = rounds(quick)
    figures: list[Figure] = []
    async with thin_pipeline(workdir / "thin") as thin, \
            runtime_pipeline(workdir / "runtime") as runtime:
        for load in loads(quick):
            part = Load(load.in_flight, max(1, load.requests // count), load.warmup,
                        load.budget_s / count)
            thin_rounds: list[Measured] = []
            runtime_rounds: list[Measured] = []
            for index in range(count):
                thin_rounds.append(await thin(part, index == 0))
                runtime_rounds.append(await runtime(part, index == 0))
            pairs = [_tasks_per_s(r) / _tasks_per_s(t)
                     for t, r in zip(thin_rounds, runtime_rounds, strict=True)
                     if _tasks_per_s(t)]
            for flow, got, actors, params in (
                    ("thin5", merged(thin_rounds), THIN_ACTORS,
                     {"limit": LIMIT, "events_per_step": 1, "batch": 32}),
                    ("runtime5", merged(runtime_rounds), list(ROLES),
                     {"max_in_flight": MAX_IN_FLIGHT, "events_per_step": 1})):
                figures += pipeline_figures(
                    flow, load, got.result, redeliveries=got.redeliveries,
                    cpu_used_s=got.cpu_used_s, actors=actors,
                    params={**params, "rounds": count, "round_ratios": pairs})
    return figures


def _tasks_per_s(measured: Measured) -> float:
    result = measured.result
    return result.finished / result.wall_s if result.wall_s else 0.0


def _value(figures: list[Figure], flow: str, in_flight: int | None, metric: str,
           label: str | None = None) -> float | None:
    for f in figures:
        if (f.flow, f.in_flight, f.metric, f.label) == (flow, in_flight, metric, label):
            return f.value
    return None


def ratios_to_thin(figures: list[Figure]) -> list[Figure]:
    """``ratio_to_thin`` (runtime tasks/s ÷ thin tasks/s) at each load, and
    ``latency_p50_ratio_to_thin`` at 1 in flight, as ``runtime5`` figures; logged."""
    out = []
    for f in figures:
        if f.flow != "runtime5" or f.metric not in {"tasks_per_s", "latency_p50"}:
            continue
        if f.metric == "latency_p50" and f.in_flight != 1:
            continue
        thin = _value(figures, "thin5", f.in_flight, f.metric)
        if not thin:
            continue
        metric = "ratio_to_thin" if f.metric == "tasks_per_s" else "latency_p50_ratio_to_thin"
        out.append(Figure(scenario=SCENARIO, flow="runtime5", in_flight=f.in_flight,
                          replicas=1, delay_s=0.0, metric=metric, value=f.value / thin,
                          unit="ratio", params={"runtime": f.value, "thin": thin,
                                                "round_ratios": f.params.get("round_ratios")}))
    for r in out:
        runtime_cpu = _value(figures, "runtime5", r.in_flight, "cpu_per_step", ACTORS_MEAN)
        thin_cpu = _value(figures, "thin5", r.in_flight, "cpu_per_step", ACTORS_MEAN)
        rounds_ = r.params.get("round_ratios") or []
        _log.info("runtime ÷ thin at %d in flight: %s %.2f (%.4g / %.4g; rounds %s); CPU µs "
                  "per step %s / %s", r.in_flight,
                  "tasks/s" if r.metric == "ratio_to_thin" else "p50 latency", r.value,
                  r.params["runtime"], r.params["thin"],
                  " ".join(f"{x:.2f}" for x in rounds_) or "-",
                  f"{runtime_cpu:.0f}" if runtime_cpu is not None else "-",
                  f"{thin_cpu:.0f}" if thin_cpu is not None else "-")
    return out


def _log_load(figures: list[Figure], flow: str) -> None:
    for load in sorted({f.in_flight for f in figures if f.flow == flow and f.in_flight}):
        _log.info("%s %d in flight: %.0f tasks/s, p50 %.2f ms, p99 %.2f ms, lost %.0f, dup %.0f, "
                  "redelivered %s", flow, load,
                  _value(figures, flow, load, "tasks_per_s") or 0.0,
                  _value(figures, flow, load, "latency_p50") or percentile([], 50),
                  _value(figures, flow, load, "latency_p99") or percentile([], 99),
                  _value(figures, flow, load, "lost") or 0.0,
                  _value(figures, flow, load, "duplicates") or 0.0,
                  _value(figures, flow, load, "redeliveries"))


def _event_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def run_runtime(workdir: Path, *, quick: bool) -> list[Figure]:
    """Run the thin layer, the runtime and the installed peers, in that order, each on a
    nats-server of its own; return all their figures and the runtime's ratios to the thin
    layer (see the module docstring)."""
    from bench._peers import run_peers

    workdir.mkdir(parents=True, exist_ok=True)
    figures = _event_loop(_interleaved(workdir, quick))
    _log_load(figures, "thin5")
    _log_load(figures, "runtime5")
    figures += ratios_to_thin(figures)
    peers = run_peers(workdir / "peers", quick=quick)
    for flow in ("autogen5", "faststream5"):
        _log_load(peers, flow)
    return figures + peers
