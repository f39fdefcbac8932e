"""Spare sandbox launchers: started before the command that will use them.

Two costs come before a sandboxed program runs, and neither depends on the command: moving
the launcher into its pids cgroup (cgroup v1 waits for an RCU grace period:
``cgroup_attach_task`` takes ``cgroup_threadgroup_rwsem`` for writing; 1-25 ms measured on a
2-core VM when commands come seconds apart), and for Landlock the launcher's Python start
(about 25 ms). A *spare* has paid both: it is the mechanism's launcher (``_sandbox.spare_argv``)
already inside its own pids cgroup, blocked reading its command from a pipe. A command then
only sets the spare's rlimits (prlimit(2) on its pid) and process bound, and writes its
options (``_sandbox.spare_payload``): bubblewrap reads them with ``--args FD`` (bubblewrap(1))
and its ``sh`` becomes the command line; ``_confine`` reads a JSON spec.

If the actor dies, the pipe's end closes with nothing written: bubblewrap goes on with its fixed
options only (new namespaces, an empty root, no capabilities), finds no ``/bin/sh`` and exits;
``_confine`` refuses an empty spec and exits. One spare is kept per event loop, mechanism and
output shape, refilled by a task that the loop's shutdown cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from actors.tools import _child, _pids, _seccomp
from actors.tools._sandbox import (
    JOIN_CGROUP,
    SH,
    Bounds,
    Mechanism,
    nproc_limit,
    rlimits,
    spare_argv,
    spare_payload,
)

_log = logging.getLogger(__name__)

_KILL_WAIT_S = 5.0
_REFILL_PAUSE_S = 1.0
"""After a spare could not be made, wait this long before the keeper tries again."""


class Spare:
    """One launcher waiting for its command (see the module docstring)."""

    def __init__(self, mechanism: Mechanism, process: _child.Process,
                 cgroup: _pids.PidsCgroup | None, options_fd: int, seccomp_fd: int) -> None:
        self.mechanism = mechanism
        self.process = process
        self.cgroup = cgroup
        self._options_fd = options_fd
        self._seccomp_fd = seccomp_fd
        """The filter's descriptor number inside the spare (closed in this process)."""

    def run(self, workspace: Path, argv: Sequence[str], bounds: Bounds, *, network: bool,
            env: Mapping[str, str], read_only: Sequence[str] = ()) -> None:
        """Start ``argv`` in ``workspace`` under ``bounds`` with exactly ``env``, able to read
        the host paths ``read_only`` too.

        Raises:
            OSError: the spare has gone (its options pipe is closed).
        """
        pid = self.process.pid
        if self.cgroup is not None:
            self.cgroup.set_limit(bounds.processes)
        nproc = nproc_limit(bounds.processes) if self.cgroup is None else None
        for limit, soft, hard in rlimits(bounds, nproc):
            resource.prlimit(pid, limit, (soft, hard))
        data = spare_payload(self.mechanism, workspace, argv, network=network,
                             tmp_bytes=bounds.tmp_bytes, seccomp_fd=self._seccomp_fd, env=env,
                             read_only=read_only)
        try:
            view = memoryview(data)
            while view:  # the spare reads as we write: a long command line does not block
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


async def make(mechanism: Mechanism, program: str, *, merge_stderr: bool,
               stdin: bool = False) -> Spare:
    """A new spare under ``mechanism`` (``program``: the path of ``bwrap`` or ``unshare``)
    whose output is piped (stderr into stdout when ``merge_stderr``), and its input when
    ``stdin`` (else ``/dev/null``).

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
    prefix = [SH, "-c", JOIN_CGROUP, str(cgroup.path / "cgroup.procs")] if cgroup else []
    argv = [*prefix, *spare_argv(mechanism, program, read)]
    try:
        process = await _child.start(  # not forked from the actor: _child
            argv, cwd="/", env={}, stdin=_child.PIPE if stdin else _child.DEVNULL,
            stdout=_child.PIPE, stderr=_child.STDOUT if merge_stderr else _child.PIPE,
            start_new_session=True, pass_fds=(read, seccomp_fd))
    except BaseException:
        os.close(write)
        if cgroup is not None:
            await cgroup.release()
        raise
    finally:
        os.close(read)
        os.close(seccomp_fd)
    return Spare(mechanism, process, cgroup, write, seccomp_fd)


class _Slot:
    """The spare kept for one event loop, mechanism and output shape, and the task that
    refills it."""

    def __init__(self, mechanism: Mechanism, program: str, merge_stderr: bool,
                 stdin: bool) -> None:
        self._make = lambda: make(mechanism, program, merge_stderr=merge_stderr, stdin=stdin)
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
    """One spare per event loop, mechanism and output shape (see the module docstring)."""

    def __init__(self) -> None:
        self._slots: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[str, str, bool, bool], _Slot]
        ] = weakref.WeakKeyDictionary()

    async def take(self, mechanism: Mechanism, program: str, *, merge_stderr: bool,
                   stdin: bool = False) -> Spare:
        """A spare ready to ``run`` (kept, or made now), and a new one started behind it
        (``stdin``: its input is a pipe, for an MCP server).

        Raises:
            OSError: as ``make``.
        """
        slots = self._slots.setdefault(asyncio.get_running_loop(), {})
        key = (mechanism, program, merge_stderr, stdin)
        slot = slots.get(key)
        if slot is None:
            slot = slots[key] = _Slot(mechanism, program, merge_stderr, stdin)
        return await slot.take()


SPARES = Spares()
"""The process-wide spares (one per event loop and output shape)."""
