"""``run_command``: one allowlisted program in the workspace, no shell, bounded in time, output
and memory, with a clean environment (no secrets of the actor process reach it) and, unless
``tools.network`` is true, no network (an empty network namespace, see ``_sandbox``).

Where the namespace cannot be made (no ``unshare``, user namespaces forbidden), commands are
refused with a ``network_unavailable`` error rather than run with network.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePath
from typing import NamedTuple

from actors.tools import _child, _mechanism, _sandbox, _seatbelt, _seccomp, _spare
from artifacts import Workspace
from core.config import ToolPolicy
from core.errors import SandboxUnavailableError, ToolError, ToolRefusedError
from protocol import Refusal, refusal_tag

_log = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT = ToolPolicy().memory_bytes
"""Default address-space limit of a command in bytes (``RLIMIT_AS``): 1 GiB
(``tools.memory_bytes`` in ``topology.yaml``)."""

_READ_CHUNK = 65_536
QUOTA_CHECK_S = 1.0
"""How often the workspace is measured while a command runs (seconds)."""
_KILL_WAIT_S = 5.0


def command_env(workspace: Workspace) -> dict[str, str]:
    """The whole environment of a command: PATH (this Python's bin directory first), HOME (the
    workspace), LANG and PYTHONDONTWRITEBYTECODE. Nothing else, so no secrets."""
    path = os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])
    return {"PATH": path, "HOME": str(workspace.root), "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1"}


def _argv(command: str, policy: ToolPolicy, env: dict[str, str]) -> list[str]:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        msg = f"cannot parse the command ({exc}); quote arguments properly"
        raise ToolRefusedError(msg, kind=Refusal.INVALID_ARGUMENTS) from exc
    if not argv:
        msg = "the command is empty"
        raise ToolRefusedError(msg, kind=Refusal.INVALID_ARGUMENTS)
    program = PurePath(argv[0]).name
    if program not in policy.allowlist:
        msg = (f"{program!r} is not an allowed program; allowed: {', '.join(policy.allowlist)}"
               " (commands run without a shell: no pipes, redirections or &&)")
        raise ToolRefusedError(msg, kind=Refusal.COMMAND_NOT_ALLOWED)
    executable = shutil.which(program, path=env["PATH"])
    if executable is None:
        msg = f"{program!r} is allowed but not installed here"
        raise ToolError(msg)
    return [executable, *argv[1:]]


class _Capture:
    """Keeps the first and last ``limit // 2`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.half = max(1, limit // 2)
        self.limit = limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            del self.tail[: max(0, len(self.tail) - self.half)]

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        if self.total <= self.limit:
            return head + self.tail.decode("utf-8", errors="replace")
        cut = self.total - len(self.head) - len(self.tail)
        note = (f"\n[... output truncated: {self.total} bytes in all, over the limit of "
                f"{self.limit}; {cut} bytes left out here ...]\n")
        return head + note + self.tail.decode("utf-8", errors="replace")


class Started(NamedTuple):
    """A sandboxed program that has started, and what to do once it has ended."""

    process: _child.Process
    finish: Callable[[], Awaitable[bool]]
    """End what is left of it (its pids cgroup); True when it hit the process bound."""


async def spawn(workspace: Workspace, argv: list[str], policy: ToolPolicy, *, network: bool,
                env: dict[str, str], merge_stderr: bool, stdin: bool = False,
                read_only: tuple[str, ...] = ()) -> Started:
    """Start ``argv`` in the workspace under ``policy.sandbox`` (``_sandbox``) with exactly
    ``env`` (``read_only``: absolute host paths it may read besides the system, for an MCP
    server's own files), its output piped (stderr into stdout when ``merge_stderr``), its
    input a pipe when ``stdin`` (an MCP server's, ``_mcp``) else ``/dev/null``, in a new
    session. Under bubblewrap and Landlock the program starts from a spare (``_spare``).

    Raises:
        ToolRefusedError: no sandbox works here (kind ``sandbox_unavailable``), or the
            workspace is over ``policy.workspace_bytes`` (kind ``workspace_full``).
        OSError: the program could not be started.
    """
    used = await _recent_bytes(workspace.root)
    if used > policy.workspace_bytes:
        msg = (f"the workspace holds {used} bytes, over its quota of {policy.workspace_bytes}: "
               "delete files (build output, caches) before running more commands")
        raise ToolRefusedError(msg, kind=Refusal.WORKSPACE_FULL)
    try:
        mechanism = await _mechanism.SANDBOX.mechanism(policy.sandbox)
    except SandboxUnavailableError as exc:
        msg = (f"commands are refused: {exc}. Programs never run unconfined unless an operator "
               "sets `tools: {sandbox: none}` in topology.yaml (docs/sandbox.md)")
        raise ToolRefusedError(msg, kind=Refusal.SANDBOX_UNAVAILABLE) from exc
    if mechanism != "none":
        try:
            _seccomp.program()
        except OSError as exc:
            msg = f"commands are refused: the sandbox's seccomp filter cannot be built ({exc})"
            raise ToolRefusedError(msg, kind=Refusal.SANDBOX_UNAVAILABLE) from exc
    if mechanism in ("bubblewrap", "landlock"):
        return await _from_spare(mechanism, workspace, argv, policy, network=network, env=env,
                                 merge_stderr=merge_stderr, stdin=stdin, read_only=read_only)
    finish = _no_cgroup
    if mechanism == "seatbelt":
        tmp = tempfile.mkdtemp(prefix="sb-tmp-")
        argv = _seatbelt.argv(workspace.root, Path(tmp),
                              (*_sandbox.python_paths(), *read_only), argv, network=network)
        env = {**env, "TMPDIR": tmp}
        finish = functools.partial(_remove_tmp, tmp)
    bounds = _sandbox.Bounds.of(policy)
    nproc = _sandbox.nproc_limit(bounds.processes)
    prlimit = _sandbox.PRLIMIT
    prefix = _sandbox.bounds_prefix(bounds, nproc, prlimit) if prlimit else []
    preexec = None if prlimit else functools.partial(_sandbox.set_limits, bounds, nproc)
    process = await asyncio.create_subprocess_exec(
        *prefix, *argv, cwd=workspace.root, env=env,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        start_new_session=True, preexec_fn=preexec)
    return Started(process, finish)


async def _remove_tmp(tmp: str) -> bool:
    await asyncio.to_thread(shutil.rmtree, tmp, ignore_errors=True)
    return False


async def _no_cgroup() -> bool:
    return False


async def _from_spare(mechanism: _sandbox.Mechanism, workspace: Workspace, argv: list[str],
                      policy: ToolPolicy, *, network: bool, env: dict[str, str],
                      merge_stderr: bool, stdin: bool, read_only: tuple[str, ...]) -> Started:
    program = _mechanism.SANDBOX.program(mechanism)
    spare = await _spare.SPARES.take(mechanism, program, merge_stderr=merge_stderr, stdin=stdin)
    try:
        spare.run(workspace.root, argv, _sandbox.Bounds.of(policy), network=network, env=env,
                  read_only=read_only)
    except BaseException:
        await spare.discard()
        raise
    return Started(spare.process, spare.finish)


def _kill_group(process: _child.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


_measured: dict[Path, tuple[float, int]] = {}
"""The last size of each workspace measured in this process (when, bytes); at most
``_MEASURED_MAX`` entries."""
_MEASURED_MAX = 1024


async def _measure_bytes(root: Path) -> int:
    """The bytes the workspace's files take now (a walk of the whole tree, in a thread),
    remembered for ``_recent_bytes``."""
    used = await asyncio.to_thread(_sandbox.workspace_bytes, root)
    _measured.pop(root, None)
    _measured[root] = (time.monotonic(), used)
    while len(_measured) > _MEASURED_MAX:
        del _measured[next(iter(_measured))]
    return used


async def _recent_bytes(root: Path) -> int:
    """The workspace's size for the check before a program starts: a measurement at most
    ``QUOTA_CHECK_S`` old, else a new one. Every running program is measured that often by
    ``_watch_quota`` and once more when it ends, so reusing one that recent loosens the
    quota by no more than the watch already does, and a run's git commands (each a program
    started here, several a second) do not each walk the whole workspace (12 % of a
    SEQUENTIAL request's CPU in ``python_coder``: ``bench/README.md#one-requests-cpu``)."""
    seen = _measured.get(root)
    if seen is not None and time.monotonic() - seen[0] <= QUOTA_CHECK_S:
        return seen[1]
    return await _measure_bytes(root)


async def _watch_quota(workspace: Workspace, quota: int,
                       process: _child.Process) -> int:
    """While a command runs, measure the workspace every ``QUOTA_CHECK_S``; once it holds more
    than ``quota`` bytes, kill the command's process group and return the size (cancelled
    when the command ends first). A program filling the disk is stopped within about a
    second of writing past the quota."""
    while True:
        await asyncio.sleep(QUOTA_CHECK_S)
        used = await _measure_bytes(workspace.root)
        if used > quota:
            _log.info("workspace %s over its quota (%d > %d bytes): command stopped",
                      workspace.root.name, used, quota)
            _kill_group(process)
            return used


def _bound_hit(code: int, exceeded_processes: bool, policy: ToolPolicy) -> str | None:
    """The first line for a command a bound ended, or None."""
    if exceeded_processes:
        return (f"error: the command tried to run more than {policy.processes} processes "
                "and threads at once; its further forks were refused and it was stopped")
    if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return f"error: the command used more than {policy.cpu_s} s of CPU and was stopped"
    if code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
        return (f"error: the command wrote a file larger than {policy.file_bytes} bytes and "
                "was stopped")
    return None


async def run_command(workspace: Workspace, command: str, policy: ToolPolicy
                      ) -> tuple[str, bool]:
    """Run ``command`` in the workspace.

    Args:
        workspace: the working directory (also HOME).
        command: a command line, split with ``shlex`` (no shell); the program (argv[0]'s base
            name) must be in ``policy.allowlist`` and is looked up on the clean PATH.
        policy: allowlist, ``timeout_s`` (seconds), ``max_output_bytes``, ``memory_bytes``
            (``RLIMIT_AS`` of the child) and ``network`` (False: an empty network namespace).

    Returns:
        The text for the model and whether it is an error (non-zero exit or timeout). The text
        is ``$ command``, ``exit code: N`` and the output (stdout and stderr merged); a
        timeout's or a truncated output's first line carries its refusal tag.

    Raises:
        ToolRefusedError: the command is refused (unparsable, not allowed, no network isolation).
        ToolError: the program is allowed but not installed.
    """
    env = command_env(workspace)
    argv = _argv(command, policy, env)
    started = await spawn(workspace, argv, policy, network=policy.network, env=env,
                          merge_stderr=True)
    process = started.process
    capture = _Capture(policy.max_output_bytes)
    code: int | None = None
    quota = asyncio.create_task(_watch_quota(workspace, policy.workspace_bytes, process),
                                name="workspace-quota")
    try:
        async with asyncio.timeout(policy.timeout_s):
            assert process.stdout is not None
            while data := await process.stdout.read(_READ_CHUNK):
                capture.add(data)
            code = await process.wait()
    except TimeoutError:
        _log.info("command timed out after %gs: %s", policy.timeout_s, command)
    finally:
        quota.cancel()
        if process.returncode is None:
            _kill_group(process)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), _KILL_WAIT_S)
        exceeded = await started.finish()
    over = quota.result() if quota.done() and not quota.cancelled() else None
    if over is not None:
        first = (f"error: `{command}` was stopped: the workspace passed its quota of "
                 f"{policy.workspace_bytes} bytes while it ran ({over} bytes); delete files "
                 "before running more commands")
        return f"{refusal_tag(first, Refusal.WORKSPACE_FULL)}\n{capture.text()}", True
    if code is None and not exceeded:
        first = (f"error: `{command}` timed out after {policy.timeout_s:g} s and was killed "
                 "(with its child processes).")
        return f"{refusal_tag(first, Refusal.TIMEOUT)}\n{capture.text()}", True
    code = process.returncode if code is None else code
    bound = _bound_hit(code or 0, exceeded, policy)
    if bound is not None:
        first = refusal_tag(bound, Refusal.LIMIT_EXCEEDED)
        text = f"{first}\n$ {command}\nexit code: {code}\n{capture.text()}"
        return text, True
    used = await _measure_bytes(workspace.root)
    if used > policy.workspace_bytes:
        first = (f"error: after `{command}` the workspace holds {used} bytes, over its quota of "
                 f"{policy.workspace_bytes}: delete files before running more commands")
        first = refusal_tag(first, Refusal.WORKSPACE_FULL)
        return f"{first}\nexit code: {code}\n{capture.text()}", True
    first = f"$ {command}"
    if capture.truncated:
        first = refusal_tag(first, Refusal.OUTPUT_TRUNCATED)
    return f"{first}\nexit code: {code}\n{capture.text()}", code != 0
