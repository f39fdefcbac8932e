"""Spare bubblewrap launchers: started before the command that will use them.

Moving a process into a cgroup v1 waits for an RCU grace period (``cgroup_attach_task`` takes
``cgroup_threadgroup_rwsem`` for writing, which synchronizes RCU): 1-25 ms measured on a
2-core VM, most of a sandboxed command's start when commands come seconds apart. A *spare* is
``bwrap`` already inside its own pids cgroup, its fixed options applied, blocked reading the
rest from a pipe (``--args FD``, bubblewrap(1)). A command then only sets the spare's rlimits
(prlimit(2) on its pid), its process bound, and writes its options: the mounts, the
environment, the working directory and the command line, which the sandbox's ``sh`` reads from
``SB_COMMAND`` and becomes (``exec``) before the program starts.

If the actor dies, the pipe's end closes: bubblewrap goes on with the fixed options only (new
namespaces, an empty root, no capabilities), finds no ``/bin/sh`` and exits. One spare is kept
per event loop and output shape, refilled by a task that the loop's shutdown cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shlex
import signal
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from actors.tools import _pids, _seccomp
from actors.tools._sandbox import BWRAP_FIXED, JOIN_CGROUP, Bounds, bwrap_options, nproc_limit

_log = logging.getLogger(__name__)

TRAMPOLINE = 'c=$SB_COMMAND; unset SB_COMMAND; eval "exec $c"'
"""The sandbox's first program (``/bin/sh -c``): become the command line in ``SB_COMMAND``
(quoted with ``shlex.join``), leaving the variable out of its environment."""
_KILL_WAIT_S = 5.0
_REFILL_PAUSE_S = 1.0
"""After a spare could not be made, wait this long before the keeper tries again."""


class Spare:
    """One bubblewrap waiting for its options (see the module docstring)."""

    def __init__(self, process: asyncio.subprocess.Process, cgroup: _pids.PidsCgroup | None,
                 options_fd: int, seccomp_fd: int) -> None:
        self.process = process
        self.cgroup = cgroup
        self._options_fd = options_fd
        self._seccomp_fd = seccomp_fd
        """The filter's descriptor number inside the spare (closed in this process)."""

    def run(self, workspace: Path, argv: Sequence[str], bounds: Bounds, *, network: bool,
            env: Mapping[str, str]) -> None:
        """Start ``argv`` in ``workspace`` under ``bounds`` with exactly ``env``.

        Raises:
            OSError: the spare has gone (its options pipe is closed).
        """
        pid = self.process.pid
        limits = [(resource.RLIMIT_AS, bounds.memory_bytes),
                  (resource.RLIMIT_FSIZE, bounds.file_bytes),
                  (resource.RLIMIT_NOFILE, bounds.open_files), (resource.RLIMIT_CORE, 0),
                  # SIGXCPU at the bound, SIGKILL a second later.
                  (resource.RLIMIT_CPU, bounds.cpu_s)]
        for limit, value in limits:
            hard = value + 1 if limit == resource.RLIMIT_CPU else value
            resource.prlimit(pid, limit, (value, hard))
        if self.cgroup is not None:
            self.cgroup.set_limit(bounds.processes)
        elif (nproc := nproc_limit(bounds.processes)) is not None:
            resource.prlimit(pid, resource.RLIMIT_NPROC, (nproc, nproc))
        options = bwrap_options(workspace, network=network, tmp_bytes=bounds.tmp_bytes,
                                seccomp_fd=self._seccomp_fd,
                                env={**env, "SB_COMMAND": shlex.join(argv)})
        data = b"".join(os.fsencode(option) + b"\0" for option in options)
        try:
            view = memoryview(data)
            while view:  # bubblewrap reads as we write: a long command line does not block
                view = view[os.write(self._options_fd, view):]
        finally:
            self._close()

    def _close(self) -> None:
        if self._options_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._options_fd)
            self._options_fd = -1

    async def finish(self) -> bool:
        """Once its program has ended: the pids cgroup emptied and removed. Returns whether a
        fork was refused for the process bound."""
        self._close()
        return await self.cgroup.release() if self.cgroup is not None else False

    async def discard(self) -> None:
        """End an unused spare (killed before its pipe closes, so it never runs anything)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), _KILL_WAIT_S)
        await self.finish()


async def make(bwrap: str, sh: str, *, merge_stderr: bool) -> Spare:
    """A new spare whose output is piped (stderr into stdout when ``merge_stderr``).

    Raises:
        OSError: the seccomp filter, the pipe or the process could not be made.
    """
    cgroup = _pids.create(_pids.DEFAULT_LIMIT)
    try:
        seccomp_fd = _seccomp.memfd()
    except BaseException:
        if cgroup is not None:
            await cgroup.release()
        raise
    read, write = os.pipe()
    os.set_inheritable(read, True)
    os.set_inheritable(seccomp_fd, True)
    prefix = [sh, "-c", JOIN_CGROUP, str(cgroup.path / "cgroup.procs")] if cgroup else []
    argv = [*prefix, bwrap, *BWRAP_FIXED, "--args", str(read), "/bin/sh", "-c", TRAMPOLINE]
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd="/", env={}, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
            start_new_session=True, pass_fds=(read, seccomp_fd))
    except BaseException:
        os.close(write)
        if cgroup is not None:
            await cgroup.release()
        raise
    finally:
        os.close(read)
        os.close(seccomp_fd)
    return Spare(process, cgroup, write, seccomp_fd)


class _Slot:
    """The spare kept for one event loop and output shape, and the task that refills it."""

    def __init__(self, bwrap: str, sh: str, merge_stderr: bool) -> None:
        self._make = lambda: make(bwrap, sh, merge_stderr=merge_stderr)
        self._ready: asyncio.Queue[Spare] = asyncio.Queue(maxsize=1)
        self._keeper: asyncio.Task[None] | None = None

    async def take(self) -> Spare:
        try:
            spare = self._ready.get_nowait()
        except asyncio.QueueEmpty:
            spare = await self._make()
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(), name="sandbox-spare")
        return spare

    async def _keep(self) -> None:
        spare: Spare | None = None
        try:
            while True:
                try:
                    spare = await self._make()
                except OSError as exc:
                    _log.warning("no spare sandbox made (commands start without one): %s", exc)
                    await asyncio.sleep(_REFILL_PAUSE_S)
                    continue
                await self._ready.put(spare)  # waits while the last one is unused
                spare = None
        finally:
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    await self._ready.get_nowait().discard()
            if spare is not None:
                await spare.discard()


class Spares:
    """One spare per event loop and output shape (see the module docstring)."""

    def __init__(self) -> None:
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                dict[bool, _Slot]] = weakref.WeakKeyDictionary()

    async def take(self, bwrap: str, sh: str, *, merge_stderr: bool) -> Spare:
        """A spare ready to ``run`` (kept, or made now), and a new one started behind it.

        Raises:
            OSError: as ``make``.
        """
        slots = self._slots.setdefault(asyncio.get_running_loop(), {})
        slot = slots.get(merge_stderr)
        if slot is None:
            slot = slots[merge_stderr] = _Slot(bwrap, sh, merge_stderr)
        return await slot.take()


SPARES = Spares()
"""The process-wide spares (one per event loop and output shape)."""
