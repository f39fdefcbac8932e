"""``<data dir>/supervisor.json``: what ``switchboard up``'s supervisor runs on this host — each
process's pid, whether it is alive, its restarts and start time — written after every start,
death and stop, read by ``switchboard status``."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from switchboard.supervisor import Supervisor

FILE = "supervisor.json"


@dataclass(frozen=True, slots=True)
class ProcessState:
    """One supervised process: ``name`` (``python_coder/0``, ``gateway``, ``api``), its last
    ``pid`` (0: never started), whether it was ``alive`` when written, how many times it was
    ``restarts``-ed, when its current process started (``started_at``, Unix seconds) and its
    last exit code (None: it never died)."""

    name: str
    pid: int
    alive: bool
    restarts: int
    started_at: float
    last_exit_code: int | None

    @property
    def role(self) -> str | None:
        """The actor role of a replica (``python_coder/0`` → ``python_coder``), else None."""
        role, slash, _ = self.name.partition("/")
        return role if slash else None


def write(data_dir: Path, supervisor: Supervisor) -> None:
    """Replace ``<data_dir>/supervisor.json`` with ``supervisor``'s processes (atomically).

    Raises:
        OSError: the file cannot be written.
    """
    states = []
    for spec in supervisor.specs:
        process = spec.process
        pid = process.pid if process is not None and process.pid is not None else 0
        alive = bool(process is not None and process.is_alive() and spec.restart_at is None)
        states.append(ProcessState(
            name=spec.name, pid=pid, alive=alive, restarts=spec.restarts,
            started_at=spec.started_wall,
            last_exit_code=spec.exit_codes[-1] if spec.exit_codes else None))
    target = data_dir / FILE
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps({"supervisor_pid": os.getpid(),
                               "processes": [asdict(s) for s in states]}, indent=1),
                   encoding="utf-8")
    tmp.replace(target)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def read(data_dir: Path) -> list[ProcessState] | None:
    """The processes of the ``switchboard up`` of ``data_dir``, or None when none runs there
    (no file, an unreadable one, or its supervisor is gone). ``alive`` is checked again now
    (a process killed since the file was written reads as not alive)."""
    try:
        data = json.loads((data_dir / FILE).read_text(encoding="utf-8"))
        if not _running(int(data["supervisor_pid"])):
            return None
        states = [ProcessState(**entry) for entry in data["processes"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [ProcessState(**{**asdict(s), "alive": s.alive and _running(s.pid)})
            for s in states]
