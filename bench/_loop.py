"""The closed loop of the five-hop pipeline scenarios (``runtime``, the thin layer, the peers):
the loads, one run of ``in_flight`` workers, and its figures. Imports nothing of Switchboard,
so the thin layer's and the peers' processes can use it."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench._store import Figure

SCENARIO = "runtime"
HOPS = 5
SETTLE_S = 0.5
"""Seconds to keep listening after a load, to see late duplicates."""
REQUEST_TIMEOUT_S = 30.0
"""A task unanswered after this many seconds counts as lost."""
ACTORS_MEAN = "actors mean"
BENCH_CLIENT = "bench client"
NATS_SERVER = "nats-server"


class Answers:
    """Matches the answers of a pipeline's last step to the tasks waiting for them, by key,
    and counts the duplicates (a second answer to a task already answered)."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self._seen: set[str] = set()
        self.duplicates = 0

    def arrived(self, key: str, at: float) -> bool:
        """The answer to ``key`` arrived at ``at`` (``time.perf_counter()``); False when it
        is a duplicate."""
        if key in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(key)
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(at)
        return True

    async def latency_ms(self, key: str, send: Callable[[], Awaitable[Any]]) -> float:
        """Await ``send()`` (the task ``key``), then its answer; milliseconds from the send.

        Raises:
            TimeoutError: no answer within ``REQUEST_TIMEOUT_S``.
        """
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        sent = time.perf_counter()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await send()
                done = await future
        finally:
            self._waiting.pop(key, None)
        return (done - sent) * 1000


@dataclass(frozen=True)
class Load:
    """``requests`` tasks with ``in_flight`` outstanding, after ``warmup`` unmeasured ones, at
    most ``budget_s`` seconds of sending."""

    in_flight: int
    requests: int
    warmup: int
    budget_s: float


def loads(quick: bool) -> list[Load]:
    """The loads of a quick or full run (about 10 s and 60 s of sending per pipeline here)."""
    if quick:
        return [Load(1, 200, 50, 20), Load(64, 5000, 1000, 20), Load(256, 6000, 1500, 20)]
    return [Load(1, 2000, 100, 60), Load(64, 30000, 2000, 60), Load(256, 40000, 3000, 60)]


def peer_loads(quick: bool) -> list[Load]:
    """The peers' loads: ``loads``, a third of the tasks with ``--quick`` (the peers are two
    to four times slower than the runtime, no target is theirs, and at a third their
    tasks/s moves less than from run to run: 2026-12-08)."""
    if not quick:
        return loads(quick)
    return [Load(load.in_flight, max(load.in_flight, load.requests // 3),
                 load.warmup // 3, load.budget_s) for load in loads(quick)]


@dataclass
class LoopResult:
    """One load's outcome: tasks finished and lost (unanswered in time), duplicated and
    error replies, wall seconds of sending, and each finished task's latency in ms."""

    finished: int = 0
    lost: int = 0
    duplicates: int = 0
    errors: int = 0
    wall_s: float = 0.0
    latency_ms: list[float] = field(default_factory=list)


async def closed_loop(one: Callable[[], Awaitable[float]], in_flight: int, requests: int,
                      budget_s: float) -> LoopResult:
    """``in_flight`` workers each awaiting ``one()`` (a task's latency in ms; TimeoutError:
    lost) until ``requests`` were started or ``budget_s`` seconds of sending passed."""
    result = LoopResult()
    left = [requests]
    deadline = time.monotonic() + budget_s

    async def worker() -> None:
        while left[0] > 0 and time.monotonic() < deadline:
            left[0] -= 1
            try:
                result.latency_ms.append(await one())
                result.finished += 1
            except TimeoutError:
                result.lost += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    result.wall_s = time.perf_counter() - started
    return result


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by nearest rank; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Measured:
    """One measured run of a load: what came back, the CPU seconds each process used, and
    the redeliveries (None: no broker)."""

    result: LoopResult
    cpu_used_s: dict[str, float]
    redeliveries: int | None


def merged(rounds: list[Measured]) -> Measured:
    """Several rounds of one load as one: counts, wall time, CPU and redeliveries added,
    latencies pooled."""
    result = LoopResult()
    cpu: dict[str, float] = {}
    redelivered: int | None = 0
    for r in rounds:
        result.finished += r.result.finished
        result.lost += r.result.lost
        result.duplicates += r.result.duplicates
        result.errors += r.result.errors
        result.wall_s += r.result.wall_s
        result.latency_ms += r.result.latency_ms
        for name, used in r.cpu_used_s.items():
            cpu[name] = cpu.get(name, 0.0) + used
        redelivered = (None if redelivered is None or r.redeliveries is None
                       else redelivered + r.redeliveries)
    return Measured(result, cpu, redelivered)


def pipeline_figures(flow: str, load: Load, result: LoopResult, *, redeliveries: int | None,
                     cpu_used_s: dict[str, float], actors: list[str],
                     params: dict[str, Any]) -> list[Figure]:
    """The figures of one load of one pipeline.

    Args:
        flow: ``runtime5``, ``thin5``, ``autogen5``, ``faststream5``.
        load: what was sent.
        result: what came back.
        redeliveries: consumer deliveries beyond one per stored message (None: no broker).
        cpu_used_s: CPU seconds each process used during the load, by label.
        actors: the labels of ``cpu_used_s`` that are the pipeline's actors: their mean is
            ``actors mean``; CPU of the others is per task, not per step.
        params: stored with every figure.
    """
    tasks_per_s = result.finished / result.wall_s if result.wall_s else 0.0
    params = {"requests": load.requests, "warmup": load.warmup, "hops": HOPS, **params}

    def fig(metric: str, value: float, unit: str, label: str | None = None) -> Figure:
        return Figure(scenario=SCENARIO, flow=flow, in_flight=load.in_flight, replicas=1,
                      delay_s=0.0, metric=metric, value=value, unit=unit, label=label,
                      params=params)

    figures = [
        fig("tasks_per_s", tasks_per_s, "tasks/s"),
        fig("finished", result.finished, "tasks"),
        fig("wall", result.wall_s, "s"),
        fig("lost", result.lost, "tasks"),
        fig("duplicates", result.duplicates, "messages"),
        fig("error_replies", result.errors, "replies"),
    ]
    if redeliveries is not None:
        figures.append(fig("redeliveries", redeliveries, "deliveries"))
    figures += [fig(f"latency_p{q}", percentile(result.latency_ms, q), "ms")
                for q in (50, 90, 99)]
    if result.finished:
        per_step = {name: used * 1e6 / result.finished for name, used in cpu_used_s.items()}
        figures += [fig("cpu_per_step", us, "us", label=name) for name, us in per_step.items()]
        mine = [per_step[name] for name in actors if name in per_step]
        if mine:
            figures.append(fig("cpu_per_step", sum(mine) / len(mine), "us", label=ACTORS_MEAN))
    return figures
