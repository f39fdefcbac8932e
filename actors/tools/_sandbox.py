"""The sandbox every program a tool starts runs in (``run_command``, git): it sees its
session's workspace and read-only system files, and nothing else of the host.

Two mechanisms, chosen by ``tools.sandbox`` (``auto``: the first that works here):

- **bubblewrap** (``bwrap``, bubblewrap(1); as Flatpak and Claude Code's sandbox runtime use
  it): new user, PID, IPC, UTS, cgroup and (unless ``tools.network``) network namespaces; a
  new root filesystem of read-only system directories (``/usr``, ``/lib*``, ``/bin``), a few
  read-only files of ``/etc`` (copied once per process), this Python's installation
  read-only, a private ``/proc`` and ``/dev``, a private tmpfs ``/tmp``, and the workspace
  read-write; every capability dropped, no new user namespaces, the seccomp filter of
  ``_seccomp``, a new session (no terminal injection), killed with its parent.
- **landlock** (landlock(7), Linux 5.13+; as Codex CLI's Linux sandbox uses it), where
  bubblewrap is missing: ``unshare`` (util-linux) makes the user, PID, mount and network
  namespaces, and ``_confine.py`` mounts the private ``/tmp``, drops capabilities, allows
  reads of the same system paths and writes to the workspace only, loads the same filter.

Both share the bounds set between fork and exec (``RLIMIT_AS``, ``RLIMIT_CPU``,
``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``, ``RLIMIT_NPROC`` when not root) and a pids cgroup where
one can be made (``_pids``). ``none`` runs programs unconfined, only ever when the operator
says so. The data directory, the JetStream store, home directories, credentials, other
sessions' workspaces and the project's source tree are not visible inside. docs/sandbox.md
tells operators what is and is not reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import resource
import shutil
import sys
import sysconfig
import tempfile
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from actors.config import ToolPolicy
from actors.errors import SandboxUnavailableError
from actors.tools import _pids, _seccomp

_log = logging.getLogger(__name__)

Mechanism = Literal["bubblewrap", "landlock", "none"]
PROBE_TIMEOUT_S = 10.0
CONFINE = Path(__file__).with_name("_confine.py")

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Read-only inside, when they exist (symlinks such as merged-/usr's ``/bin`` stay symlinks)."""
ETC_FILES = (
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
    "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts",
    "/etc/host.conf", "/etc/resolv.conf", "/etc/gai.conf", "/etc/ssl/certs",
    "/etc/ca-certificates", "/etc/mime.types", "/etc/os-release",
)
"""The files of ``/etc`` a program needs to load libraries, name users and (when allowed)
resolve and verify hosts; no key, password or credential file is among them."""
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


class Bounds(NamedTuple):
    """Per-command bounds, from ``ToolPolicy`` (bytes, seconds, counts)."""

    memory_bytes: int
    cpu_s: int
    processes: int
    file_bytes: int
    open_files: int
    tmp_bytes: int

    @classmethod
    def of(cls, policy: ToolPolicy) -> Bounds:
        """The bounds of ``policy``."""
        return cls(policy.memory_bytes, policy.cpu_s, policy.processes, policy.file_bytes,
                   policy.open_files, policy.tmp_bytes)


@functools.cache
def etc_copy() -> str:
    """A private directory holding copies of ``ETC_FILES`` (symlinked files copied by content,
    symlinks inside directories kept), made once per process and bound as the sandbox's
    ``/etc``: one mount instead of one per file (about 0.15 ms each, measured with bwrap
    0.11 here). Removed when the process exits; a change to the host's files (a new
    ``resolv.conf``) is seen by the next process.

    Raises:
        OSError: the temporary directory cannot be made.
    """
    root = tempfile.mkdtemp(prefix="sb-sandbox-etc-")
    weakref.finalize(_ETC_OWNER, shutil.rmtree, root, ignore_errors=True)
    os.chmod(root, 0o755)
    for path in ETC_FILES:
        target = os.path.join(root, os.path.relpath(path, "/etc"))
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        with contextlib.suppress(OSError):  # missing here, or unreadable: left out
            if os.path.isdir(path):
                shutil.copytree(path, target, symlinks=True)
            elif os.path.isfile(path):
                shutil.copyfile(path, target)
                os.chmod(target, 0o644)
    return root


class _EtcOwner:
    """Ties ``etc_copy``'s directory to the process's life (finalized at exit)."""


_ETC_OWNER = _EtcOwner()


@functools.cache
def python_paths() -> tuple[str, ...]:
    """This interpreter's installation and environment (read-only inside): the venv, its base
    Python and the directories of ``sys.executable`` (symlinks resolved)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sysconfig.get_path("stdlib"),
             os.path.dirname(os.path.realpath(sys.executable))}
    real = sorted({os.path.realpath(p) for p in paths if p})
    outermost = [p for p in real if not _covered(p, [q for q in real if q != p])]
    return tuple(p for p in outermost if not _covered(p, SYSTEM_DIRS))


def _covered(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


BWRAP_FIXED = ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
               "--new-session", "--cap-drop", "ALL", "--uid", "1000", "--gid", "1000",
               "--hostname", "sandbox", "--clearenv")
"""bubblewrap's options that never vary: every namespace, no new user namespaces inside,
killed with its parent, a new session, no capabilities, an unprivileged id, an empty
environment."""


def bwrap_options(workspace: Path, *, network: bool, tmp_bytes: int, seccomp_fd: int,
                  env: Mapping[str, str]) -> list[str]:
    """bubblewrap's options for one command after ``BWRAP_FIXED``: the network, the mounts
    (see the module's docstring), the working directory, the seccomp filter's descriptor and
    the environment (exactly ``env``)."""
    args = ["--share-net"] if network else []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    # bubblewrap mounts in order: the private /tmp first, so a Python or a workspace that
    # lives under the host's /tmp is bound on top of it, not hidden by it.
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    for path in python_paths():
        args += ["--ro-bind", path, path]
    args += ["--ro-bind", etc_copy(), "/etc"]
    args += ["--bind", str(workspace), str(workspace),
             # The new root is a tmpfs of its own, with no size limit: read-only once built.
             "--remount-ro", "/", "--chdir", str(workspace), "--seccomp", str(seccomp_fd)]
    for name, value in env.items():
        args += ["--setenv", name, value]
    return args


def bwrap_argv(bwrap: str, workspace: Path, argv: Sequence[str], *, network: bool,
               tmp_bytes: int, seccomp_fd: int, env: Mapping[str, str]) -> list[str]:
    """The whole bubblewrap command line that runs ``argv`` in ``workspace`` (the probe's;
    commands use a spare, ``_spare``)."""
    return [bwrap, *BWRAP_FIXED,
            *bwrap_options(workspace, network=network, tmp_bytes=tmp_bytes,
                           seccomp_fd=seccomp_fd, env=env), "--", *argv]


def landlock_argv(unshare: str, workspace: Path, argv: Sequence[str], *, network: bool,
                  tmp_bytes: int, seccomp_fd: int) -> list[str]:
    """The ``unshare`` + ``_confine.py`` command line that runs ``argv`` in ``workspace``."""
    spec = {"ro": [*SYSTEM_DIRS, *python_paths(), *ETC_FILES, str(CONFINE), "/proc"],
            "rw": [str(workspace)], "dev": list(DEVICES), "tmp_bytes": tmp_bytes,
            "seccomp_fd": seccomp_fd}
    namespaces = ["--user", "--map-root-user", "--pid", "--mount", "--ipc", "--uts"]
    if not network:
        namespaces.append("--net")
    return [unshare, *namespaces, "--", sys.executable, "-I", "-S", "-B", str(CONFINE),
            json.dumps(spec), "--", *argv]


def _set_limits(bounds: Bounds, nproc: int | None, cgroup: _pids.PidsCgroup | None) -> None:
    """Between fork and exec: the rlimits, then the pids cgroup."""
    limits = [(resource.RLIMIT_AS, bounds.memory_bytes),
              (resource.RLIMIT_FSIZE, bounds.file_bytes),
              (resource.RLIMIT_NOFILE, bounds.open_files), (resource.RLIMIT_CORE, 0)]
    if nproc is not None:
        limits.append((resource.RLIMIT_NPROC, nproc))
    for limit, value in limits:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(limit, (value, value))
    with contextlib.suppress(ValueError, OSError):  # SIGXCPU at the bound, SIGKILL 1 s later
        resource.setrlimit(resource.RLIMIT_CPU, (bounds.cpu_s, bounds.cpu_s + 1))
    if cgroup is not None:
        cgroup.join()


JOIN_CGROUP = 'echo $$ > "$0" && exec "$@"'
"""``sh -c`` script: move this shell into the cgroup whose ``cgroup.procs`` is ``$0``, then
become the rest of the command line (so everything it starts is inside)."""


def bounds_prefix(bounds: Bounds, nproc: int | None, cgroup: _pids.PidsCgroup | None,
                  prlimit: str, sh: str) -> list[str]:
    """The command-line prefix that applies ``bounds`` without a ``preexec_fn``: ``sh`` joins
    the pids cgroup, util-linux's ``prlimit`` sets the rlimits, then the sandbox starts. (A
    ``preexec_fn`` makes Python fork the whole actor process instead of using vfork, some
    milliseconds per command in a process that has a model client loaded.)"""
    prefix = [sh, "-c", JOIN_CGROUP, str(cgroup.path / "cgroup.procs")] if cgroup else []
    prefix += [prlimit, f"--as={bounds.memory_bytes}", f"--cpu={bounds.cpu_s}:{bounds.cpu_s + 1}",
               f"--fsize={bounds.file_bytes}", f"--nofile={bounds.open_files}", "--core=0"]
    if nproc is not None:
        prefix.append(f"--nproc={nproc}")
    return [*prefix, "--"]


def nproc_limit(processes: int) -> int | None:
    """``RLIMIT_NPROC`` for a command that may start ``processes``, when no pids cgroup bounds
    it: the user's tasks count at every level of user namespaces (``kernel/ucount.c``), so the
    limit leaves room for the ones this user runs already. None for root, which the limit does
    not bind (fork(2))."""
    uid = os.getuid()
    if uid == 0:
        return None
    running = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    running += len(os.listdir(f"/proc/{entry.name}/task"))
    return processes + running


class Launch(NamedTuple):
    """What ``asyncio.create_subprocess_exec`` needs to start one sandboxed program, and what
    to do once it has ended (``finish``: True when it hit the process bound)."""

    argv: list[str]
    pass_fds: tuple[int, ...]
    preexec: Callable[[], None] | None
    """Sets the bounds between fork and exec, only where ``prlimit`` is missing."""
    mechanism: Mechanism
    cgroup: _pids.PidsCgroup | None

    def started(self) -> None:
        """Close the parent's copies of the inherited descriptors."""
        for fd in self.pass_fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    async def finish(self) -> bool:
        """Once the program has ended or been killed: its pids cgroup emptied and removed
        (``PidsCgroup.release``). Returns whether a fork was refused for the process bound."""
        return await self.cgroup.release() if self.cgroup is not None else False


class Sandbox:
    """Finds, once per process and mechanism, whether a mechanism works here, and builds the
    command lines that use it."""

    def __init__(self, bwrap: str = "bwrap", unshare: str = "unshare") -> None:
        self.programs = {"bubblewrap": bwrap, "landlock": unshare}
        self._lock = asyncio.Lock()
        self._probed: dict[str, str | None] = {}
        """mechanism → None when it works, else why not."""

    async def mechanism(self, choice: str) -> Mechanism:
        """The mechanism in force for ``tools.sandbox`` = ``choice``.

        Raises:
            SandboxUnavailableError: the chosen mechanism (or, for ``auto``, both) cannot run
                a program here; the message says why.
        """
        if choice == "none":
            return "none"
        wanted: tuple[Mechanism, ...] = (("bubblewrap", "landlock") if choice == "auto"
                                         else (choice,))  # type: ignore[assignment]
        reasons = []
        for mechanism in wanted:
            reason = await self._probe(mechanism)
            if reason is None:
                return mechanism
            reasons.append(f"{mechanism}: {reason}")
        msg = "no sandbox works on this machine (" + "; ".join(reasons) + ")"
        raise SandboxUnavailableError(msg)

    async def _probe(self, mechanism: Mechanism) -> str | None:
        async with self._lock:
            if mechanism not in self._probed:
                self._probed[mechanism] = await self._try(mechanism)
                if self._probed[mechanism] is None:
                    _log.info("the %s sandbox works here", mechanism)
                else:
                    _log.warning("the %s sandbox does not work here: %s", mechanism,
                                 self._probed[mechanism])
        return self._probed[mechanism]

    def program(self, mechanism: Mechanism) -> str:
        """The path of ``mechanism``'s program (its name when not on PATH)."""
        name = self.programs.get(mechanism, mechanism)
        return shutil.which(name) or name

    async def _try(self, mechanism: Mechanism) -> str | None:
        program = shutil.which(self.programs[mechanism])
        if program is None:
            package = "bubblewrap" if mechanism == "bubblewrap" else "util-linux (unshare)"
            return f"{self.programs[mechanism]} is not installed (package {package})"
        if mechanism == "landlock" and not _landlock_supported():
            return "the kernel has no Landlock (Linux 5.13+ with landlock in the LSM list)"
        true = shutil.which("true") or "/bin/true"
        with tempfile.TemporaryDirectory(prefix="sb-sandbox-probe-") as workspace:
            try:
                launch = self.prepare(mechanism, Path(workspace), [true], ToolPolicy(),
                                      network=False, env={})
            except OSError as exc:
                return f"seccomp filter unavailable ({exc})"
            try:
                process = await asyncio.create_subprocess_exec(
                    *launch.argv, stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                    pass_fds=launch.pass_fds, preexec_fn=launch.preexec)
            finally:
                launch.started()
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    _, stderr = await process.communicate()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                return f"a trial run did not finish within {PROBE_TIMEOUT_S:g} s"
            finally:
                await launch.finish()
        if process.returncode != 0:
            return stderr.decode(errors="replace").strip()[-300:] or f"exit {process.returncode}"
        return None

    def prepare(self, mechanism: Mechanism, workspace: Path, argv: Sequence[str],
                policy: ToolPolicy, *, network: bool, env: Mapping[str, str]) -> Launch:
        """The launch of ``argv`` in ``workspace`` under ``mechanism``, with ``env`` (bubblewrap
        sets it inside; the others take the caller's). Commands under bubblewrap start from
        a spare instead (``_spare``); the probe starts here.

        Raises:
            OSError: the seccomp filter could not be built (libseccomp missing).
        """
        bounds = Bounds.of(policy)
        cgroup = _pids.create(bounds.processes) if mechanism != "none" else None
        nproc = nproc_limit(bounds.processes) if cgroup is None else None
        prlimit, sh = _PROGRAMS.get("prlimit"), _PROGRAMS.get("sh")
        if prlimit is not None and sh is not None:
            prefix, preexec = bounds_prefix(bounds, nproc, cgroup, prlimit, sh), None
        else:
            prefix, preexec = [], functools.partial(_set_limits, bounds, nproc, cgroup)
        if mechanism == "none":
            return Launch([*prefix, *argv], (), preexec, mechanism, None)
        fd = _seccomp.memfd()
        os.set_inheritable(fd, True)
        program = self.program(mechanism)
        if mechanism == "bubblewrap":
            command = bwrap_argv(program, workspace, argv, network=network,
                                 tmp_bytes=bounds.tmp_bytes, seccomp_fd=fd, env=env)
        else:
            command = landlock_argv(program, workspace, argv, network=network,
                                    tmp_bytes=bounds.tmp_bytes, seccomp_fd=fd)
        return Launch([*prefix, *command], (fd,), preexec, mechanism, cgroup)


def _landlock_supported() -> bool:
    """Whether the kernel has Landlock (its ABI version, landlock_create_ruleset(2), is >= 1)."""
    import ctypes

    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
        syscall.restype = ctypes.c_long
        return bool(syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1)) >= 1)
    except (OSError, AttributeError):
        return False


_PROGRAMS = {name: path for name in ("prlimit", "sh") if (path := shutil.which(name))}
"""util-linux's ``prlimit`` and a POSIX shell, found once."""
SH = _PROGRAMS.get("sh", "/bin/sh")
"""The shell that moves a spare into its cgroup (``JOIN_CGROUP``)."""

SANDBOX = Sandbox()
"""The process-wide sandbox (what works does not change while the process runs)."""


def workspace_bytes(root: Path) -> int:
    """Bytes the workspace's files take on disk (allocated blocks), symlinks not followed."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
    return total
