"""What the tool sandbox costs per command: ``run_command`` under each mechanism beside a bare
subprocess, in one run.

For each program (``echo hi``; ``python -c pass``, which also loads the interpreter from the
read-only binds), one command at a time, each sandbox taking turns command by command with
the floor and ``none`` (so a slow minute of a shared machine falls on all of them alike), each
in its own workspace; one sandbox per group (the kernel tears a command's namespaces down
after it returns, which slows the other mechanism's next command):
- ``bare``: ``asyncio.create_subprocess_exec`` of the program with the same clean environment,
  output read to the end (the floor);
- ``none``: ``run_command`` with ``tools.sandbox: none`` (the tool's own work: allowlist, the
  workspace quota scan, output capture);
- ``bubblewrap`` and ``landlock``: ``run_command`` in each sandbox (probed once before).
Reported per program and mechanism: wall p50 / p95 in ms, CPU ms per command (this process plus
its children, ``getrusage``), and ``added_p50_ms`` (p50 minus the bare p50; target: at most 20).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from actors.tools import SANDBOX, SandboxUnavailableError, command_env, run_tool
from artifacts import Workspace
from bench._store import Figure
from core.config import ToolPolicy
from protocol import ToolCall

_log = logging.getLogger(__name__)

PROGRAMS = {"echo": ["echo", "hi"], "python": ["python", "-c", "pass"]}
TARGET_ADDED_P50_MS = 20.0


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def _bare(workspace: Workspace, argv: list[str]) -> None:
    env = command_env(workspace)
    program = shutil.which(argv[0], path=env["PATH"]) or argv[0]
    process = await asyncio.create_subprocess_exec(
        program, *argv[1:], cwd=workspace.root, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    await process.communicate()


async def _tool(workspace: Workspace, argv: list[str], policy: ToolPolicy) -> None:
    call = ToolCall(call_id="b", name="run_command", arguments=json.dumps(
        {"command": " ".join(argv)}))
    result = await run_tool(workspace, call, policy)
    if result.is_error:
        msg = f"the benchmark command failed: {result.content[:300]}"
        raise RuntimeError(msg)


async def _once(mechanism: str, workspace: Workspace, argv: list[str],
                policy: ToolPolicy) -> tuple[float, float]:
    """One command: its wall time and CPU (this process and its waited children), in ms."""
    cpu_before, started = _cpu_s(), time.perf_counter()
    if mechanism == "bare":
        await _bare(workspace, argv)
    else:
        await _tool(workspace, argv, policy)
    return (time.perf_counter() - started) * 1000, (_cpu_s() - cpu_before) * 1000


async def _interleaved(mechanisms: list[str], argv: list[str], runs: int,
                       directory: Path) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and CPU ms of ``runs`` commands per mechanism, the mechanisms taking turns command
    by command (after three warm-up rounds)."""
    policies = {m: ToolPolicy.model_validate({"sandbox": "none" if m == "bare" else m})
                for m in mechanisms}
    workspaces = {m: Workspace.for_session(directory, f"bench-{m}") for m in mechanisms}
    seen: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in mechanisms}
    for round_ in range(runs + 3):
        for mechanism in mechanisms:
            wall, cpu = await _once(mechanism, workspaces[mechanism], argv, policies[mechanism])
            if round_ >= 3:
                seen[mechanism][0].append(wall)
                seen[mechanism][1].append(cpu)
    return seen


async def _run(quick: bool) -> list[Figure]:
    runs = 30 if quick else 200
    sandboxes = []
    for mechanism in ("bubblewrap", "landlock"):
        try:
            sandboxes.append(await SANDBOX.mechanism(mechanism))
        except SandboxUnavailableError as exc:
            _log.warning("sandbox %s skipped: %s", mechanism, exc)
    figures: list[Figure] = []
    params = {"runs": runs, "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(prefix="sb-bench-sandbox-") as directory:
        for program, argv in PROGRAMS.items():
            # One sandbox at a time beside its own floor: a deployment uses one mechanism, and
            # one mechanism's namespaces, torn down by the kernel after its command, would
            # slow the other's next command.
            for index, sandbox in enumerate(sandboxes or ["none"]):
                group = ["bare", "none"] + ([sandbox] if sandbox != "none" else [])
                seen = await _interleaved(group, argv, runs, Path(directory))
                floor = statistics.median(seen["bare"][0])
                for mechanism in group if index == 0 else [sandbox]:
                    walls, cpus = seen[mechanism]
                    p50 = statistics.median(walls)
                    p95 = statistics.quantiles(walls, n=20)[-1]
                    cpu_ms = statistics.fmean(cpus)
                    figures += [
                        Figure(scenario="sandbox", metric=metric, value=value, unit="ms",
                               flow=program, label=mechanism, params=params)
                        for metric, value in (("wall_p50_ms", p50), ("wall_p95_ms", p95),
                                              ("cpu_ms_per_command", cpu_ms),
                                              ("added_p50_ms", p50 - floor))]
                    print(f"sandbox {program:<6} {mechanism:<10} p50 {p50:6.1f} ms  p95 "
                          f"{p95:6.1f} ms  cpu {cpu_ms:5.1f} ms/command  added p50 "
                          f"{p50 - floor:+6.1f} ms (floor {floor:.1f} ms, same turns)")
    return figures


def run_sandbox(directory: Path, *, quick: bool) -> list[Figure]:
    """Measure the sandbox's cost (see the module docstring); ``directory`` is unused (the
    workspaces are temporary)."""
    del directory
    return asyncio.run(_run(quick))
