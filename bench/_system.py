"""A whole Switchboard for the bench: ``switchboard up`` as a subprocess, exactly as a user runs
it, against a nats-server on 127.0.0.1 (the bench's own, or the embedded one ``up`` starts).

Every process started here is stopped here, by pid, even when the bench fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench._procs import command, process_tree, still_same
from switchboard.embedded import EmbeddedNats, free_port

_log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
READY_LINE = "Switchboard is up"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 40.0
LINGER_S = 3.0
"""Seconds a child may outlive ``switchboard up`` before the bench kills it."""
TIERS = (1, 2, 3, 4)


@dataclass
class Deployment:
    """A running ``switchboard up``.

    Attributes:
        proc: the ``switchboard up`` process.
        nats_url: the server the actors use.
        data_dir: ``SB_DATA_DIR`` (NATS store when embedded, workspaces, processes.json).
        topology_path: the topology file it runs.
        launched_at: ``time.monotonic()`` just before the launch, in seconds.
        ready_after_s: seconds from launch to the "Switchboard is up" line (None: not yet).
        output: its stdout and stderr lines, in order.
    """

    proc: subprocess.Popen[str]
    nats_url: str
    data_dir: Path
    topology_path: Path
    launched_at: float
    ready_after_s: float | None = None
    output: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    external: dict[int, str] = field(default_factory=dict)
    """Processes outside ``switchboard up``'s tree that serve it (the bench's nats-server):
    pid → name."""
    stopped_in_s: float | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment for ``switchboard`` commands against this deployment."""
        return system_env(self.data_dir, self.topology_path, nats_url=self.nats_url)

    def names(self) -> dict[int, str]:
        """pid → process name (``python_coder/0``) as the supervisor last wrote them."""
        path = self.data_dir / "processes.json"
        with contextlib.suppress(OSError, ValueError):
            return {int(pid): name for name, pid in json.loads(path.read_text()).items()}
        return {}

    def log_lines(self, *needles: str) -> list[str]:
        """Output lines containing any of ``needles`` (case-sensitive)."""
        return [line.rstrip() for line in list(self.output) if any(n in line for n in needles)]


def system_env(data_dir: Path, topology: Path, *, nats_url: str | None = None,
               nats_port: int | None = None) -> dict[str, str]:
    """This process's environment without ``SB_*`` / ``DISCORD_*`` / ``NATS_URL``, plus what a
    bench deployment needs (no Discord, offline models, unbuffered output)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SB_", "DISCORD_")) and k != "NATS_URL"}
    env.update(SB_DATA_DIR=str(data_dir), SB_TOPOLOGY=str(topology), SB_LOG_LEVEL="WARNING",
               LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONUNBUFFERED="1")
    if nats_url:
        env["NATS_URL"] = nats_url
    if nats_port:
        env["SB_NATS_PORT"] = str(nats_port)
    return env


def write_topology(path: Path, *, delay_s: float = 0.0,
                   actors: dict[str, dict[str, Any]] | None = None) -> Path:
    """The repository's ``topology.yaml`` with every tier's offline model answering after
    ``delay_s`` seconds and ``actors`` merged per role (``{"classifier": {"replicas": 2}}``)."""
    data = yaml.safe_load((REPO / "topology.yaml").read_text(encoding="utf-8"))
    if delay_s:
        data["tiers"] = {
            tier: [{"name": m, "params": {"delay_s": delay_s}} if isinstance(m, str)
                   else {**m, "params": {**m.get("params", {}), "delay_s": delay_s}}
                   for m in models]
            for tier, models in data["tiers"].items()
        }
    for role, spec in (actors or {}).items():
        data["actors"].setdefault(role, {}).update(spec)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@contextlib.contextmanager
def bench_nats(workdir: Path) -> Iterator[EmbeddedNats]:
    """A nats-server with JetStream on a free 127.0.0.1 port and a temp store, stopped after;
    under ``SCHED_BATCH`` and Go's memory limit as ``switchboard up`` runs it, unless
    ``SB_NATS_SCHED_BATCH=0`` or ``SB_NATS_MEMORY_LIMIT=off``."""
    from core.config import Settings

    settings = Settings()
    server = EmbeddedNats(workdir / "nats", batch_scheduling=settings.nats_sched_batch,
                          memory_limit=settings.nats_memory_limit).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def deployment(workdir: Path, topology: Path, *, nats_url: str | None = None,
               ready_timeout_s: float = READY_TIMEOUT_S,
               wait_ready: bool = True,
               extra_env: dict[str, str] | None = None) -> Iterator[Deployment]:
    """Run ``switchboard up`` until the block ends; wait for its ready line first.

    Args:
        workdir: a fresh directory for the data directory.
        topology: the topology file.
        nats_url: an existing server; None lets ``up`` start its embedded one on a free port.
        ready_timeout_s: give up (and stop everything) after this many seconds.
        wait_ready: False yields at once (``ready_after_s`` is set when the line comes).
        extra_env: more environment of ``switchboard up`` (``SB_PROFILE_DIR``).

    Raises:
        RuntimeError: the ready line did not appear in time (the output's tail is quoted).
    """
    data_dir = workdir / "data"
    port = None if nats_url else free_port()
    env = {**system_env(data_dir, topology, nats_url=nats_url, nats_port=port),
           **(extra_env or {})}
    launched = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchboard.cli", "up", "--no-discord"], env=env, cwd=REPO,
        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    system = Deployment(proc, nats_url or f"nats://127.0.0.1:{port}", data_dir, topology,
                        launched)
    reader = threading.Thread(target=_read, args=(system,), daemon=True, name="up-output")
    reader.start()
    try:
        if wait_ready and not _wait_ready(system, ready_timeout_s):
            tail = "".join(system.output[-30:])
            msg = f"switchboard up was not ready within {ready_timeout_s:.0f} s:\n{tail}"
            raise RuntimeError(msg)
        yield system
    finally:
        stop(system)
        reader.join(timeout=5)


def _read(system: Deployment) -> None:
    assert system.proc.stdout is not None
    for line in system.proc.stdout:
        if READY_LINE in line and system.ready_after_s is None:
            system.ready_after_s = time.monotonic() - system.launched_at
        system.output.append(line)


def _wait_ready(system: Deployment, timeout_s: float) -> bool:
    deadline = system.launched_at + timeout_s
    while time.monotonic() < deadline:
        if system.ready_after_s is not None:
            return True
        if system.proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def stop(system: Deployment) -> None:
    """SIGTERM ``switchboard up`` (it stops its children; SIGKILL after 40 s), then SIGKILL by
    pid whatever of its process tree is still alive 3 s after it exited."""
    proc = system.proc
    tree = process_tree(proc.pid)
    asked = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _log.warning("switchboard up did not stop in %.0f s; killing its processes",
                         STOP_TIMEOUT_S)
            proc.kill()
            proc.wait(timeout=10)
    system.stopped_in_s = time.monotonic() - asked
    deadline = time.monotonic() + LINGER_S
    left = {pid: s for pid, s in tree.items() if pid != proc.pid}
    while left and time.monotonic() < deadline:
        left = {pid: s for pid, s in left.items() if still_same(pid, s)}
        time.sleep(0.1)
    for pid, started in left.items():
        if still_same(pid, started):
            _log.warning("process %d (%s) outlived switchboard up by %.0f s; killing it",
                         pid, command(pid)[:120], LINGER_S)
            system.leftovers.append(command(pid))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
