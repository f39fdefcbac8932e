"""Scenario ``learning``: does the starting tier learn?

A replayed workload of SEQUENTIAL tasks of 10 kinds (``bench._learning_kinds``), each request
its own session and person, runs twice on fresh deployments (own nats-server store, so no case
carries over): ``cases: {learn_tier: false}``, then ``true``. The model is simulated
(``bench._sim_model``): each kind has a least tier; below it the model says it is stuck and the
agent loop escalates. Every agent role starts at tier 2 (``tier: 2``), so kinds needing tier 3
or 4 escalate unless the planner starts them higher from similar past cases
(``actors.router.learned_tier``).

Per task, from the execution events of its session: model calls (``model_call``, priced per
call by the model's tier: ``PRICES``), agent turns (``turn``), escalations (``escalation``),
the starting tier and what chose it (``tier_chosen``), whether it ended stuck at the top
(``paused``) or finished (``reflection``). A task's kind had a case stored before the task was
planned when a ``case_stored`` event of an earlier task of that kind is older (actor clock,
``ExecutionEvent.at``) than the task's ``tier_chosen``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import yaml
from nats.aio.client import Client
from nats.aio.msg import Msg

from bench._learning_kinds import KINDS, Kind, workload
from bench._load import TROUBLE_KINDS, connect
from bench._measure import percentile
from bench._procs import cpu_seconds, process_tree
from bench._sim_model import ROLE, tier_of_model
from bench._store import Figure
from bench._system import REPO, Deployment, bench_nats, deployment
from gateway.bridge import Bridge
from protocol import AGENT_ROLES, ChatMessage, ExecutionEvent, Outbound, Reply, Subjects

_log = logging.getLogger(__name__)

SCENARIO = "learning"
PRICES = {1: 0.0005, 2: 0.003, 3: 0.015, 4: 0.06}
"""Simulated price of one model call by tier, US dollars (cheap chat → critical decisions)."""
ROLE_TIER = 2
"""Every agent role's ``tier`` in the bench topology: where a run starts without learning."""
IN_FLIGHT = 4
SIM_DELAY_S = 0.05
"""Simulated latency of every model call, seconds."""
TASKS = {False: 200, True: 30}
"""Tasks per mode, full and ``--quick``."""
WARMUP_TASKS = 4
WARMUP_TEXT = "warm up the bench pipeline with a zebra quokka note"
"""Shares no word with any kind, so its cases teach nothing about them."""
TIMEOUT_S = 60.0
BUDGET_S = {False: 240.0, True: 90.0}
"""Seconds of sending per mode; a task not yet sent by then is not sent."""
SETTLE_S = 1.0
_EVENT_KINDS = ("model_call", "turn", "escalation", "tier_chosen", "case_stored", "reflection",
                "paused", *TROUBLE_KINDS)
_TIER_IN_DETAIL = re.compile(r"^tier (\d)")
_decoder = msgspec.json.Decoder(ExecutionEvent)


def write_topology(path: Path, *, learn: bool, delay_s: float = SIM_DELAY_S,
                   failure: str = "tries") -> Path:
    """The repository's ``topology.yaml`` with the simulated model as tiers 1-4 (and the
    escalation path through them) answering after ``delay_s`` seconds, every agent role at
    tier ``ROLE_TIER`` and ``cases.learn_tier`` = ``learn``. Planner and reflector keep the
    repository's tiers."""
    data = yaml.safe_load((REPO / "topology.yaml").read_text(encoding="utf-8"))
    data["providers"] = {"sim": "bench._sim_model:SimLLM"}
    data["tiers"] = {t: [{"name": f"sim/tier-{t}",
                          "params": {"delay_s": delay_s, "failure": failure}}]
                     for t in PRICES}
    data["escalation"] = [f"sim/tier-{t}" for t in PRICES]
    data["brainstorm_models"] = ["sim/tier-2", "sim/tier-3"]
    for role in AGENT_ROLES:
        data["actors"].setdefault(role, {})["tier"] = ROLE_TIER
    data["cases"] = {**data.get("cases", {}), "learn_tier": learn}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Task:
    """One request of the replay and what its session's events said."""

    index: int
    kind: Kind | None
    text: str
    session: str
    sent_at: float = 0.0
    finished_at: float = 0.0
    calls: list[tuple[str, str]] = field(default_factory=list)
    """(actor, model) of each model call."""
    turns: int = 0
    escalations: int = 0
    start_tier: int = 0
    start_source: str = ""
    planned_at: float = 0.0
    """``tier_chosen`` time (actor clock, Unix seconds)."""
    stored_at: float = 0.0
    """``case_stored`` time (actor clock, Unix seconds)."""
    stuck: bool = False
    error: str = ""
    trouble: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def cost(self) -> float:
        return sum(PRICES[tier_of_model(model)] for _, model in self.calls)

    @property
    def agent_cost(self) -> float:
        return sum(PRICES[tier_of_model(model)] for actor, model in self.calls if actor == ROLE)

    @property
    def finished(self) -> bool:
        return self.done.is_set()

    @property
    def consistent(self) -> bool:
        """Whether the escalation events add up: start tier + escalations = the tier of the
        last agent call (the escalation path is tiers 1-4 in order)."""
        agent = [model for actor, model in self.calls if actor == ROLE]
        return bool(agent) and self.start_tier + self.escalations == tier_of_model(agent[-1])


class Replay:
    """Sends the workload through a gateway bridge and follows each session's events."""

    def __init__(self, nc: Client, prefix: str = "sb") -> None:
        self.nc = nc
        self.subjects = Subjects(prefix)
        self.token = uuid.uuid4().hex[:8]
        self.bridge = Bridge(nc, self.subjects, f"bench-{self.token}")
        self.tasks: dict[str, Task] = {}
        self._subs: list[Any] = []

    async def start(self) -> None:
        await self.bridge.start(self._on_outbound)
        for kind in _EVENT_KINDS:
            self._subs.append(await self.nc.subscribe(self.subjects.event("*", kind),
                                                      cb=self._on_event))

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await self.bridge.stop()

    async def _on_outbound(self, message: Outbound) -> None:
        if isinstance(message, Reply) and message.error is not None:
            task = self.tasks.get(message.session)
            if task is not None:
                task.error = str(message.error)

    async def _on_event(self, msg: Msg) -> None:
        event = _decoder.decode(msg.data)
        task = self.tasks.get(event.session)
        if task is None:
            return
        match event.kind:
            case "model_call":
                task.calls.append((event.actor, event.model))
            case "turn":
                task.turns += 1
            case "escalation":
                task.escalations += 1
            case "tier_chosen":
                match = _TIER_IN_DETAIL.match(event.detail)
                task.start_tier = int(match.group(1)) if match else 0
                task.start_source = event.source
                task.planned_at = event.at
            case "case_stored":
                task.stored_at = event.at
            case "reflection":
                self._finish(task)
            case "paused":
                task.stuck = True
                self._finish(task)
            case _:
                task.trouble += 1

    @staticmethod
    def _finish(task: Task) -> None:
        if not task.done.is_set():
            task.finished_at = time.perf_counter()
            task.done.set()

    async def run(self, work: list[tuple[Kind | None, str]], *, in_flight: int,
                  budget_s: float) -> tuple[list[Task], float]:
        """Replay ``work`` in order with ``in_flight`` workers (closed loop).

        Returns:
            The tasks sent, and the wall time from the first send to the last finish (s).
        """
        serial = itertools.count()
        queue = iter(work)
        sent: list[Task] = []
        started = time.perf_counter()

        async def worker() -> None:
            for kind, text in queue:
                if time.perf_counter() - started > budget_s:
                    return
                task = Task(next(serial), kind, text, f"bench-{self.token}-{uuid.uuid4().hex[:8]}")
                sent.append(task)
                await self._one(task)

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        last = max((t.finished_at for t in sent if t.finished), default=started)
        await asyncio.sleep(SETTLE_S)  # events published after the finishing one
        return sent, last - started

    async def _one(self, task: Task) -> None:
        self.tasks[task.session] = task
        user = f"bench-{task.session[-8:]}"
        task.sent_at = time.perf_counter()
        await self.bridge.send(ChatMessage(
            message_id=task.session, session=task.session, origin=self.bridge.origin,
            user_id=user, user_name=user, text=task.text, sent_at=time.time()))
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await task.done.wait()
        except TimeoutError:
            _log.warning("task %d (%s) unfinished after %.0f s", task.index,
                         task.kind.name if task.kind else "-", TIMEOUT_S)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _summary(tasks: list[Task], wall_s: float) -> dict[str, float]:
    """The mode's figures (metric → value) from its tasks."""
    done = [t for t in tasks if t.finished]
    stored: dict[str, list[float]] = {}
    for t in tasks:
        if t.stored_at and t.kind is not None:
            stored.setdefault(t.kind.name, []).append(t.stored_at)
    with_case = sum(1 for t in done if t.kind is not None and t.planned_at and any(
        at < t.planned_at for at in stored.get(t.kind.name, [])))
    later = [t for t in done if t.kind is not None and t.index >= len(KINDS)]
    return {
        "tasks": len(tasks), "finished": len(done), "lost": len(tasks) - len(done),
        "escalations_per_task": _mean([t.escalations for t in done]),
        "model_calls_per_task": _mean([len(t.calls) for t in done]),
        "agent_calls_per_task": _mean([sum(a == ROLE for a, _ in t.calls) for t in done]),
        "router_calls_per_task": _mean([sum(a == "classifier" for a, _ in t.calls)
                                        for t in done]),
        "turns_per_task": _mean([t.turns for t in done]),
        "cost_per_task": _mean([t.cost for t in done]),
        "agent_cost_per_task": _mean([t.agent_cost for t in done]),
        "tasks_per_s": len(done) / wall_s if wall_s > 0 else 0.0,
        "latency_p50": percentile([(t.finished_at - t.sent_at) * 1000 for t in done], 50),
        "latency_p90": percentile([(t.finished_at - t.sent_at) * 1000 for t in done], 90),
        "latency_p50_first_quarter": percentile(
            [(t.finished_at - t.sent_at) * 1000 for t in done if t.index < len(tasks) / 4], 50),
        "latency_p50_last_quarter": percentile(
            [(t.finished_at - t.sent_at) * 1000 for t in done
             if t.index >= len(tasks) * 3 / 4], 50),
        "stuck_at_top": sum(t.stuck for t in done),
        "started_from_case": sum(t.start_source == "case" for t in done),
        "started_above_role_tier": sum(t.start_tier > ROLE_TIER for t in done),
        "planned_after_same_kind_case": with_case,
        "later_tasks": len(later),
        "later_escalations_per_task": _mean([t.escalations for t in later]),
        "cases_stored": sum(bool(t.stored_at) for t in tasks),
        "error_replies": sum(bool(t.error) for t in tasks),
        "trouble_events": sum(t.trouble for t in tasks),
        "escalations_inconsistent": sum(not t.consistent for t in done),
        "wall_s": wall_s,
    }


def _by_need(tasks: list[Task]) -> dict[int, dict[str, float]]:
    """Per least tier of the kind: tasks, escalations per task, start tier, cost per task."""
    out = {}
    for need in sorted({k.min_tier for k in KINDS}):
        group = [t for t in tasks if t.finished and t.kind is not None
                 and t.kind.min_tier == need]
        out[need] = {"tasks": len(group),
                     "escalations_per_task": _mean([t.escalations for t in group]),
                     "start_tier_mean": _mean([t.start_tier for t in group]),
                     "cost_per_task": _mean([t.cost for t in group])}
    return out


_UNITS = {"tasks": "tasks", "finished": "tasks", "lost": "tasks", "stuck_at_top": "tasks",
          "started_from_case": "tasks", "started_above_role_tier": "tasks",
          "planned_after_same_kind_case": "tasks", "later_tasks": "tasks",
          "cases_stored": "cases", "error_replies": "replies", "trouble_events": "events",
          "escalations_inconsistent": "tasks",
          "escalations_per_task": "escalations", "later_escalations_per_task": "escalations",
          "model_calls_per_task": "calls", "agent_calls_per_task": "calls",
          "router_calls_per_task": "calls",
          "turns_per_task": "turns", "cost_per_task": "USD", "agent_cost_per_task": "USD",
          "tasks_per_s": "tasks/s", "cpu_ms_per_task": "ms", "latency_p50": "ms",
          "latency_p50_first_quarter": "ms", "latency_p50_last_quarter": "ms",
          "latency_p90": "ms", "wall_s": "s",
          "start_tier_mean": "tier"}
RATIO_METRICS = ("escalations_per_task", "model_calls_per_task", "agent_calls_per_task",
                 "turns_per_task", "cost_per_task", "agent_cost_per_task", "tasks_per_s",
                 "latency_p50", "latency_p90", "cpu_ms_per_task")


def _cpu_s(system: Deployment) -> dict[int, float]:
    """CPU seconds used so far by each process serving ``system`` (not the bench's own)."""
    pids = [*process_tree(system.proc.pid), *system.external]
    return {pid: cpu for pid in pids if (cpu := cpu_seconds(pid, children=True)) is not None}


async def _drive(system: Deployment, work: list[tuple[Kind | None, str]], budget_s: float
                 ) -> tuple[list[Task], float, float]:
    """Warm up, then replay ``work``; returns the tasks, the wall time (s) and the CPU
    seconds the deployment used during the replay."""
    nc = await connect(system.nats_url)
    replay = Replay(nc)
    try:
        await replay.start()
        await replay.run([(None, WARMUP_TEXT)] * WARMUP_TASKS, in_flight=IN_FLIGHT,
                         budget_s=30)
        before = _cpu_s(system)
        tasks, wall = await replay.run(work, in_flight=IN_FLIGHT, budget_s=budget_s)
        after = _cpu_s(system)
        used = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
        return tasks, wall, used
    finally:
        await replay.stop()
        await nc.close()


def run_learning(workdir: Path, *, quick: bool, delay_s: float = SIM_DELAY_S,
                 failure: str = "tries") -> list[Figure]:
    """Scenario ``learning`` (module docstring): learning off, then on, each on a fresh
    deployment; figures per mode, per least tier of the kinds, and the ratio on/off.

    Args:
        workdir: a fresh directory for both deployments.
        quick: ``TASKS[True]`` tasks instead of ``TASKS[False]``.
        delay_s: the simulated latency of every model call, seconds.
        failure: how a model below a kind's tier fails (``bench._sim_model``): ``tries``
            (2 low-confidence turns, then escalation) or ``stuck`` (escalation at once).
    """
    work: list[tuple[Kind | None, str]] = list(workload(TASKS[quick]))
    params: dict[str, Any] = {
        "tasks": len(work), "kinds": len(KINDS), "prices_usd_per_call": PRICES,
        "role_tier": ROLE_TIER, "quick": quick, "failure": failure,
        "min_tiers": {k.name: k.min_tier for k in KINDS},
    }
    base: dict[str, Any] = {"scenario": SCENARIO, "flow": "sequential", "in_flight": IN_FLIGHT,
                            "replicas": 1, "delay_s": delay_s, "params": params}
    figures: list[Figure] = []
    results: dict[str, dict[str, float]] = {}
    for mode, learn in (("off", False), ("on", True)):
        run_dir = workdir / f"learning-{mode}"
        run_dir.mkdir(parents=True)
        topology = write_topology(run_dir / "topology.yaml", learn=learn, delay_s=delay_s,
                                  failure=failure)
        with bench_nats(run_dir) as server, \
                deployment(run_dir, topology, nats_url=server.url) as system:
            system.external[server.pid or 0] = "nats-server"
            tasks, wall, cpu = asyncio.run(_drive(system, work, BUDGET_S[quick]))
        results[mode] = figures_of = _summary(tasks, wall)
        figures_of["cpu_ms_per_task"] = 1000 * cpu / max(1, figures_of["finished"])
        _log.info("learning %s: %s", mode, ", ".join(
            f"{k} {v:.4g}" for k, v in figures_of.items()))
        figures += [Figure(metric=k, value=v, unit=_UNITS[k], label=mode, **base)
                    for k, v in figures_of.items()]
        for need, group in _by_need(tasks).items():
            figures += [Figure(metric=k, value=v, unit=_UNITS[k], label=f"{mode} needs {need}",
                               **base) for k, v in group.items()]
        figures += [
            Figure(metric="leftover_processes", value=len(system.leftovers), unit="processes",
                   label=mode, **{**base, "params": {**params,
                                                     "commands": system.leftovers}}),
        ]
    for metric in RATIO_METRICS:
        off, on = results["off"][metric], results["on"][metric]
        figures.append(Figure(metric=metric, value=on / off if off else float("nan"),
                              unit="ratio", label="on/off", **base))
    return figures


# ------------------------------------------------------------------ the printed table
