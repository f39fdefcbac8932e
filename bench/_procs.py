"""Processes on Linux, read from /proc: a process tree, and each process's memory.

PSS (proportional set size) divides each shared page among the processes that map it, so the
PSS of a process tree adds up to the memory it really uses; RSS counts a shared page once per
process (``man 5 proc``: ``/proc/PID/smaps_rollup``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessMemory:
    """One process's memory, in kibibytes (as /proc reports them)."""

    pid: int
    name: str
    pss_kb: int
    rss_kb: int


def _fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (``man 5 proc``: index 0 is
    field 3, the state), or None when ``pid`` is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    return text[text.rfind(")") + 2 :].split()


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of ``pid``, or None when it is gone."""
    fields = _fields(pid)
    return None if fields is None else (int(fields[1]), int(fields[19]))


def process_tree(root: int) -> dict[int, int]:
    """``root`` and all its descendants: pid → start time (clock ticks since boot).

    The start time tells a process from a later one that reused its pid.
    """
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[1]
    if root not in starts:
        return {}
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        tree[pid] = starts[pid]
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pid: int, *, children: bool = False) -> float | None:
    """User plus system CPU time ``pid`` has used so far, in seconds (None: it is gone); with
    ``children``, also that of its children that ended and were waited for (``cutime`` +
    ``cstime``: the git commands a role actor runs). From ``/proc/PID/stat`` (``man 5 proc``)."""
    fields = _fields(pid)
    if fields is None:
        return None
    return sum(int(f) for f in fields[11:15 if children else 13]) / os.sysconf("SC_CLK_TCK")


def still_same(pid: int, started: int) -> bool:
    """Whether ``pid`` is alive and is the process that started at ``started`` (a zombie, which
    has exited and waits only for its parent to reap it, is not alive: the fork server of a
    ``switchboard up`` that has gone is reaped by init, here up to 2 s later)."""
    fields = _fields(pid)
    return fields is not None and int(fields[19]) == started and fields[0] != "Z"


def command(pid: int) -> str:
    """The command line of ``pid`` (arguments joined by spaces), or its name."""
    with contextlib.suppress(OSError):
        raw = (PROC / str(pid) / "cmdline").read_bytes()
        if raw:
            return raw.replace(b"\0", b" ").decode(errors="replace").strip()
    with contextlib.suppress(OSError):
        return (PROC / str(pid) / "comm").read_text().strip()
    return ""


def memory(pid: int, name: str = "") -> ProcessMemory | None:
    """PSS and RSS of ``pid`` from ``/proc/PID/smaps_rollup``, or None when it is gone."""
    try:
        text = (PROC / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in {"Pss", "Rss"}:
            values[key] = int(rest.split()[0])
    return ProcessMemory(pid, name or command(pid), values.get("Pss", 0), values.get("Rss", 0))
