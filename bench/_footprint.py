"""Scenarios 3 and 4: memory of the whole default deployment, and cold start.

Both run ``switchboard up`` exactly as a user does, with the repository's ``topology.yaml``
(15 actor processes, supervisor, fork server) and its embedded nats-server on a free port.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path

from bench._load import LoadGenerator, connect
from bench._measure import LoadSpec, measure, process_label
from bench._procs import memory, process_tree
from bench._store import Figure
from bench._system import REPO, Deployment, deployment

_log = logging.getLogger(__name__)

IDLE_SETTLE_S = 3.0
"""Seconds after the ready line before measuring idle memory."""
CHAT_TIMEOUT_S = 60.0
COLD_START_BUDGET_S = 90.0


def _memory_figures(system: Deployment, state: str) -> list[Figure]:
    names = system.names()
    figures, pss, rss = [], 0, 0
    for pid in process_tree(system.proc.pid):
        label = process_label(system, pid, names)
        mem = memory(pid, label)
        if mem is None:
            continue
        pss, rss = pss + mem.pss_kb, rss + mem.rss_kb
        for metric, kb in (("pss", mem.pss_kb), ("rss", mem.rss_kb)):
            figures.append(Figure(scenario="memory", metric=metric, value=kb / 1024, unit="MB",
                                  label=label, params={"state": state, "pid": pid}))
    count = len(figures) // 2
    for metric, kb in (("pss_total", pss), ("rss_total", rss)):
        figures.append(Figure(scenario="memory", metric=metric, value=kb / 1024, unit="MB",
                              label=state, params={"state": state, "processes": count}))
    figures.append(Figure(scenario="memory", metric="processes", value=count,
                          unit="processes", label=state, params={"state": state}))
    return figures


async def _load(system: Deployment, quick: bool) -> list[Figure]:
    nc = await connect(system.nats_url)
    gen = LoadGenerator(nc)
    figures: list[Figure] = []
    try:
        await gen.start()
        for spec in (LoadSpec("simple", 300 if quick else 2000, 16),
                     LoadSpec("sequential", 48 if quick else 300, 16)):
            figures += await measure(gen, nc, system, spec, scenario="memory_load",
                                     base={"replicas": 1, "delay_s": 0.0})
    finally:
        await gen.stop()
        await nc.close()
    return figures


def run_memory(workdir: Path, *, quick: bool) -> list[Figure]:
    """Scenario ``memory``: PSS and RSS of every process of the default deployment at idle and
    after SIMPLE and SEQUENTIAL load (default topology: at most 8-64 in flight per actor)."""
    run_dir = workdir / "memory"
    run_dir.mkdir(parents=True)
    with deployment(run_dir, REPO / "topology.yaml") as system:
        time.sleep(IDLE_SETTLE_S)
        figures = _memory_figures(system, "idle")
        figures += asyncio.run(_load(system, quick))
        figures += _memory_figures(system, "after load")
    return figures


def _chat(system: Deployment, session: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "switchboard.cli", "chat", "--message", "hello", "--session",
            session, "--timeout", str(CHAT_TIMEOUT_S)]
    return subprocess.run(args, env=system.env, cwd=REPO, capture_output=True, text=True,
                          timeout=CHAT_TIMEOUT_S + 30, check=False)


def _cold_start_once(run_dir: Path) -> dict[str, float]:
    """Launch ``switchboard up`` and run ``switchboard chat --message hello`` until it answers
    (exit code 2, "not running", is retried after 0.2 s)."""
    with deployment(run_dir, REPO / "topology.yaml", wait_ready=False) as system:
        attempts = 0
        first_answer = None
        deadline = system.launched_at + COLD_START_BUDGET_S
        while first_answer is None and time.monotonic() < deadline:
            attempts += 1
            done = _chat(system, f"bench-cold-{attempts}")
            if done.returncode == 0:
                first_answer = time.monotonic() - system.launched_at
            elif done.returncode == 2:
                time.sleep(0.2)
            else:
                msg = f"switchboard chat failed ({done.returncode}): {done.stdout[-500:]}"
                raise RuntimeError(msg)
        if first_answer is None:
            msg = f"no answer within {COLD_START_BUDGET_S:.0f} s of launching switchboard up"
            raise RuntimeError(msg)
        while system.ready_after_s is None and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        warm = _chat(system, "bench-warm")
        warm_s = time.monotonic() - started
        if warm.returncode != 0:
            msg = f"warm switchboard chat failed ({warm.returncode}): {warm.stdout[-500:]}"
            raise RuntimeError(msg)
    return {"ready": system.ready_after_s or float("nan"), "first_answer": first_answer,
            "warm_chat": warm_s, "chat_attempts": attempts}


def run_cold_start(workdir: Path, *, quick: bool) -> list[Figure]:
    """Scenario ``coldstart``: seconds from launching ``switchboard up`` to its ready line and
    to the first answer of ``switchboard chat --message hello``; and how long one chat command
    takes against a running system (its own start-up included), for comparison."""
    figures = []
    for attempt in range(1 if quick else 3):
        run_dir = workdir / f"coldstart-{attempt}"
        run_dir.mkdir(parents=True)
        got = _cold_start_once(run_dir)
        _log.info("cold start %d: %s", attempt, got)
        for metric, value in got.items():
            unit = "attempts" if metric == "chat_attempts" else "s"
            figures.append(Figure(scenario="coldstart", metric=metric, value=value, unit=unit,
                                  label=f"attempt {attempt + 1}"))
    return figures
