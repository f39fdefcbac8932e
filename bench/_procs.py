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


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of ``pid``, or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[1]), int(fields[19])


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
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return sum(int(f) for f in fields[11:15 if children else 13]) / os.sysconf("SC_CLK_TCK")


def still_same(pid: int, started: int) -> bool:
    """Whether ``pid`` is alive and is the process that started at ``started`` (a zombie, which
    has exited and waits only for its parent to reap it, is not alive: the fork server of a
    ``switchboard up`` that has gone is reaped by init, here up to 2 s later)."""
    stat = _stat(pid)
    return stat is not None and stat[1] == started and _state(pid) != "Z"


def _state(pid: int) -> str:
    """The one-letter state of ``pid`` (``R``, ``S``, ``Z``...; "" when it is gone)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return ""
    return text[text.rfind(")") + 2 :].split(maxsplit=1)[0]


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
