"""One measured load run turned into figures: throughput, latency percentiles, losses,
redeliveries, and CPU time per task of each process of the deployment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client

from bench._consumers import consumer_counts, redeliveries
from bench._load import LoadGenerator, Until
from bench._loop import percentile
from bench._procs import command, cpu_seconds, process_tree
from bench._store import Figure
from bench._system import Deployment

PIPELINE_ROLES = ["classifier", "planner", "researcher", "python_coder", "evaluator", "reflector"]
SIMPLE_TEXT = "hello"
"""SIMPLE flow: the classifier calls it social and sends it to the researcher, which answers
in one streamed model turn."""
SEQUENTIAL_TEXT = "write a python script that frobnicates the widget registry"
"""SEQUENTIAL flow: classifier → planner → python_coder → evaluator → reflector. The offline
model knows no recipe for it, so the agent loop takes 2 model turns (write PLAN.md, answer)
and runs no subprocess: 4 model calls per task (plan, 2 turns, reflection)."""
FLOW_TEXT = {"simple": SIMPLE_TEXT, "sequential": SEQUENTIAL_TEXT}
BENCH_CLIENT = "bench client"
"""The load generator's own process: reported, but not counted in the system's total."""
FLOW_UNTIL: dict[str, Until] = {"simple": "reply", "sequential": "reflection"}


@dataclass(frozen=True)
class LoadSpec:
    """What to send: ``requests`` of ``flow`` with ``in_flight`` outstanding, at most
    ``budget_s`` seconds of sending, a request lost after ``timeout_s`` seconds."""

    flow: str
    requests: int
    in_flight: int
    budget_s: float = 120.0
    timeout_s: float = 60.0


def _cpu(system: Deployment) -> dict[int, float]:
    """CPU seconds used so far by each process serving the deployment, and by this one."""
    pids = [*process_tree(system.proc.pid), *system.external, os.getpid()]
    return {pid: cpu for pid in pids if (cpu := cpu_seconds(pid)) is not None}


def process_label(system: Deployment, pid: int, names: dict[int, str]) -> str:
    """A readable name for a process of the deployment."""
    if pid == system.proc.pid:
        return "supervisor"
    if pid == os.getpid():
        return BENCH_CLIENT
    if pid in system.external:
        return system.external[pid]
    if pid in names:
        return names[pid]
    cmd = command(pid)
    for needle, label in (("nats-server", "nats-server"), ("forkserver", "fork server"),
                          ("resource_tracker", "resource tracker")):
        if needle in cmd:
            return label
    return cmd[:40] or str(pid)


async def measure(gen: LoadGenerator, nc: Client, system: Deployment, spec: LoadSpec, *,
                  scenario: str, base: dict[str, Any]) -> list[Figure]:
    """Run ``spec`` through ``gen`` and return its figures.

    ``base`` holds the Figure fields shared by all of them (``replicas``, ``delay_s``, ...).
    """
    before = await consumer_counts(nc, gen.subjects.prefix, PIPELINE_ROLES)
    cpu_before = _cpu(system)
    result = await gen.run(FLOW_TEXT[spec.flow], requests=spec.requests,
                           in_flight=spec.in_flight, until=FLOW_UNTIL[spec.flow],
                           timeout_s=spec.timeout_s, budget_s=spec.budget_s)
    cpu_after = _cpu(system)
    after = await consumer_counts(nc, gen.subjects.prefix, PIPELINE_ROLES)
    params = {"requests": spec.requests, "text": FLOW_TEXT[spec.flow],
              "finish": FLOW_UNTIL[spec.flow], "sent": result.sent,
              "trouble": dict(result.trouble), "error_replies": dict(result.error_replies)}
    common = {"scenario": scenario, "flow": spec.flow, "in_flight": spec.in_flight, **base}

    def fig(metric: str, value: float, unit: str, label: str | None = None) -> Figure:
        return Figure(metric=metric, value=value, unit=unit, label=label, params=params,
                      **common)

    figures = [
        fig("tasks_per_s", result.tasks_per_s, "tasks/s"),
        fig("finished", result.finished, "tasks"),
        fig("wall", result.wall_s, "s"),
        fig("lost", result.lost, "tasks"),
        fig("duplicates", result.duplicates, "messages"),
        fig("error_replies", sum(result.error_replies.values()), "replies"),
        fig("trouble_events", sum(result.trouble.values()), "events"),
        fig("redeliveries", redeliveries(before, after), "deliveries"),
    ]
    for q in (50, 90, 99):
        figures.append(fig(f"latency_p{q}", percentile(result.finish_ms, q), "ms"))
    if spec.flow == "sequential":
        for q in (50, 90, 99):
            figures.append(fig(f"reply_latency_p{q}", percentile(result.reply_ms, q), "ms"))
    if result.finished:
        names = system.names()
        total = 0.0
        for pid, cpu in cpu_after.items():
            used = cpu - cpu_before.get(pid, cpu)
            label = process_label(system, pid, names)
            total += used if label != BENCH_CLIENT else 0.0
            if used * 1000 / result.finished >= 0.05:
                figures.append(fig("cpu_per_task", used * 1000 / result.finished, "ms",
                                   label=label))
        figures.append(fig("cpu_per_task", total * 1000 / result.finished, "ms", label="total"))
    return figures
