"""``run_command``: one allowlisted program in the workspace, no shell, bounded in time, output
and memory, with a clean environment (no secrets of the actor process reach it) and, unless
``tools.network`` is true, no network (an empty network namespace, see ``_sandbox``).

Where the namespace cannot be made (no ``unshare``, user namespaces forbidden), commands are
refused with a ``network_unavailable`` error rather than run with network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shlex
import shutil
import signal
import sys
from pathlib import PurePath

from actors.config import ToolPolicy
from actors.errors import ToolError, ToolRefusedError
from actors.tools import _sandbox
from actors.tools._refusal import (
    COMMAND_NOT_ALLOWED,
    INVALID_ARGUMENTS,
    NETWORK_UNAVAILABLE,
    OUTPUT_TRUNCATED,
    TIMEOUT,
    tag,
)
from actors.tools._workspace import Workspace

_log = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT = ToolPolicy().memory_bytes
"""Default address-space limit of a command in bytes (``RLIMIT_AS``): 1 GiB
(``tools.memory_bytes`` in ``topology.yaml``)."""

_READ_CHUNK = 65_536
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
        raise ToolRefusedError(msg, kind=INVALID_ARGUMENTS) from exc
    if not argv:
        msg = "the command is empty"
        raise ToolRefusedError(msg, kind=INVALID_ARGUMENTS)
    program = PurePath(argv[0]).name
    if program not in policy.allowlist:
        msg = (f"{program!r} is not an allowed program; allowed: {', '.join(policy.allowlist)}"
               " (commands run without a shell: no pipes, redirections or &&)")
        raise ToolRefusedError(msg, kind=COMMAND_NOT_ALLOWED)
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


async def _isolation(policy: ToolPolicy) -> tuple[str, ...]:
    """The argv prefix that takes the network away, or ``()`` when ``policy.network``.

    Raises:
        ToolRefusedError: no network is asked for but isolation is unavailable here.
    """
    if policy.network:
        return ()
    prefix = await _sandbox.NETWORK_ISOLATION.prefix()
    if prefix is None:
        msg = (f"commands are refused: network isolation is unavailable on this machine "
               f"({_sandbox.NETWORK_ISOLATION.reason}) and commands never run with network "
               "unless allowed; an operator can allow it with `tools: {network: true}` in "
               "topology.yaml")
        raise ToolRefusedError(msg, kind=NETWORK_UNAVAILABLE)
    return prefix


def _limit_memory(limit: int) -> None:
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


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
    prefix = await _isolation(policy)
    limit = policy.memory_bytes
    process = await asyncio.create_subprocess_exec(
        *prefix, *argv, cwd=workspace.root, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True, preexec_fn=lambda: _limit_memory(limit),
    )
    capture = _Capture(policy.max_output_bytes)
    try:
        async with asyncio.timeout(policy.timeout_s):
            assert process.stdout is not None
            while data := await process.stdout.read(_READ_CHUNK):
                capture.add(data)
            code = await process.wait()
    except TimeoutError:
        _log.info("command timed out after %gs: %s", policy.timeout_s, command)
        first = (f"error: `{command}` timed out after {policy.timeout_s:g} s and was killed "
                 "(with its child processes).")
        return f"{tag(first, TIMEOUT)}\n{capture.text()}", True
    finally:
        if process.returncode is None:
            _kill_group(process)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), _KILL_WAIT_S)
    first = tag(f"$ {command}", OUTPUT_TRUNCATED) if capture.truncated else f"$ {command}"
    return f"{first}\nexit code: {code}\n{capture.text()}", code != 0
