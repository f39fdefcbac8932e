"""A pids cgroup per sandboxed command: a bound on its processes and threads that holds for
root too (``RLIMIT_NPROC`` does not bind a process whose real user is root, fork(2)).

The controller is found once, in cgroup v2 (``/sys/fs/cgroup`` with ``pids`` in
``cgroup.controllers``) or v1 (``/sys/fs/cgroup/pids``), under this process's own cgroup
(``/proc/self/cgroup``). The child joins its cgroup between fork and exec, by writing ``0`` to
``cgroup.procs`` (the writer itself, cgroups(7)), so nothing it starts escapes the bound. Where
no cgroup can be made (no controller, no write permission), ``create`` returns None and only
``RLIMIT_NPROC`` applies. Source: kernel ``Documentation/admin-guide/cgroup-v1/pids.rst`` and
``cgroup-v2.rst`` ("PID").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import signal
from pathlib import Path

_log = logging.getLogger(__name__)

_ROOT = Path("/sys/fs/cgroup")
DEFAULT_LIMIT = 64
"""``pids.max`` of a cgroup made before its command's bound is known (``set_limit``)."""
RELEASE_TIMEOUT_S = 5.0
_RELEASE_POLLS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02)
"""Waits between looks at an emptying cgroup: the sandbox's last processes usually leave
within a millisecond of the program's end; the last wait repeats up to ``RELEASE_TIMEOUT_S``."""
_counter = itertools.count()


def _own_path(controller: str) -> str | None:
    """This process's cgroup path for ``controller`` (v1), or the v2 path when ``""``."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (controller == "" and controllers == "" and line.startswith("0::")) or \
                controller in controllers.split(","):
            return path
    return None


@functools.cache
def parent() -> Path | None:
    """The directory new pids cgroups are made in, or None when none can be made here."""
    candidates: list[Path] = []
    v2 = _own_path("")
    if v2 is not None and "pids" in _read(_ROOT / "cgroup.controllers").split():
        candidates.append(_ROOT / v2.lstrip("/"))
    v1 = _own_path("pids")
    if v1 is not None and (_ROOT / "pids").is_dir():
        candidates.append(_ROOT / "pids" / v1.lstrip("/"))
    for base in candidates:
        probe = base / f"switchboard-probe-{os.getpid()}"
        try:
            probe.mkdir()
            probe.rmdir()
        except OSError:
            continue
        _sweep(base)
        return base
    return None


def _sweep(base: Path) -> None:
    """Remove the empty cgroups left by processes that are gone (killed before they could
    remove their commands' cgroups): ``switchboard-<pid>-<n>`` whose pid is not running."""
    for path in base.glob("switchboard-*-*"):
        pid = path.name.split("-")[1]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        with contextlib.suppress(OSError):
            path.rmdir()  # refused while a process is still inside


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class PidsCgroup:
    """One command's cgroup: ``join`` in the child, ``exceeded`` and ``remove`` after it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._procs = str(path / "cgroup.procs").encode()

    def join(self) -> None:
        """Move the calling process into the cgroup (runs between fork and exec: no Python
        objects beyond what is prepared, no logging)."""
        fd = os.open(self._procs, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    def set_limit(self, limit: int) -> None:
        """Bound the cgroup's processes and threads to ``limit`` (``pids.max``).

        Raises:
            OSError: the cgroup has gone.
        """
        (self.path / "pids.max").write_text(str(limit))

    async def release(self) -> bool:
        """Once the command has ended or been killed: end what is left in the cgroup (bounded
        by ``RELEASE_TIMEOUT_S``) and remove it. Returns whether a fork was refused for the
        bound."""
        exceeded = self.exceeded()
        waited = 0.0
        for attempt in itertools.count():
            if not self.kill_all() or waited >= RELEASE_TIMEOUT_S:
                break
            pause = _RELEASE_POLLS_S[min(attempt, len(_RELEASE_POLLS_S) - 1)]
            await asyncio.sleep(pause)  # no event tells when a cgroup empties (v1)
            waited += pause
        self.remove()
        return exceeded

    def exceeded(self) -> bool:
        """Whether a fork was refused for the limit (``pids.events``: ``max N``, N > 0)."""
        for line in _read(self.path / "pids.events").splitlines():
            name, _, count = line.partition(" ")
            if name == "max":
                return count.strip() not in ("", "0")
        return False

    def kill_all(self) -> int:
        """SIGKILL every process still in the cgroup; how many there were."""
        pids = _read(self.path / "cgroup.procs").split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        return len(pids)

    def remove(self) -> None:
        """Remove the cgroup (once its processes are gone; a busy one is left and logged)."""
        try:
            self.path.rmdir()
        except OSError as exc:
            _log.warning("pids cgroup %s not removed: %s", self.path, exc)


def create(limit: int) -> PidsCgroup | None:
    """A new cgroup whose processes and threads together number at most ``limit``, or None
    when this machine lets this process make none."""
    base = parent()
    if base is None:
        return None
    path = base / f"switchboard-{os.getpid()}-{next(_counter)}"
    try:
        path.mkdir()
        (path / "pids.max").write_text(str(limit))
    except OSError as exc:
        _log.warning("no pids cgroup for a command: %s", exc)
        with contextlib.suppress(OSError):
            path.rmdir()
        return None
    return PidsCgroup(path)
