"""A whole Switchboard for end-to-end tests: ``switchboard up`` as a subprocess against a test
nats-server, every actor its own OS process, exactly as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 90.0


@dataclass
class RunningSystem:
    """A running ``switchboard up``: its URL, data directory, output and processes."""

    nats_url: str
    data_dir: Path
    topology_path: Path
    proc: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return system_env(self.nats_url, self.data_dir, self.topology_path)

    def pids(self) -> dict[str, int]:
        """Process name (``python_coder/0``) → pid, as the supervisor last wrote them."""
        path = self.data_dir / "processes.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def wait_for_output(self, text: str, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(text in line for line in list(self.output)):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def chat(self, message: str, *, timeout_s: float = 120.0, session: str | None = None
             ) -> subprocess.CompletedProcess[str]:
        """Run ``switchboard chat --message`` as a user would."""
        args = [sys.executable, "-m", "switchboard.cli", "chat", "--message", message,
                "--timeout", str(timeout_s)]
        if session:
            args += ["--session", session]
        return subprocess.run(args, env=self.env, capture_output=True, text=True,
                              timeout=timeout_s + 30, cwd=REPO, check=False)


def system_env(nats_url: str, data_dir: Path, topology: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SB_", "DISCORD_"))}
    env.update(NATS_URL=nats_url, SB_DATA_DIR=str(data_dir), SB_TOPOLOGY=str(topology),
               LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONUNBUFFERED="1")
    return env


def write_topology(path: Path, **changes: Any) -> Path:
    """The default topology with ``changes`` applied: top-level keys replaced, except
    ``actors`` whose entries are merged per role."""
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    actors = changes.pop("actors", {})
    data.update(changes)
    for role, spec in actors.items():
        data["actors"].setdefault(role, {}).update(spec)
    path.write_text(yaml.safe_dump(data))
    return path


@contextmanager
def running_system(nats_url: str, workdir: Path, *, extra_env: dict[str, str] | None = None,
                   **topology_changes: Any) -> Iterator[RunningSystem]:
    """Start ``switchboard up`` against ``nats_url`` and wait until every role is consuming."""
    data_dir = workdir / "data"
    topology = write_topology(workdir / "topology.yaml", **topology_changes)
    env = system_env(nats_url, data_dir, topology)
    env.update(extra_env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchboard.cli", "up"], env=env, cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    system = RunningSystem(nats_url, data_dir, topology, proc)
    reader = threading.Thread(target=_read, args=(proc, system.output), daemon=True)
    reader.start()
    try:
        if not system.wait_for_output("Switchboard is up", READY_TIMEOUT_S):
            tail = "".join(system.output[-40:])
            raise AssertionError(f"switchboard up did not become ready:\n{tail}")
        yield system
    finally:
        stop_up(proc)
        reader.join(timeout=5)


def stop_up(proc: subprocess.Popen[str]) -> None:
    """Stop a ``switchboard up`` started in its own session: SIGTERM, then after 40 s SIGKILL
    to its whole process group (the actors and the embedded server with it)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _read(proc: subprocess.Popen[str], sink: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sink.append(line)
