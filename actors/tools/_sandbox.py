"""The sandbox every program a tool starts runs in (``run_command``, git): it sees its
session's workspace and read-only system files, and nothing else of the host. This module
builds the command lines and options; ``_spare`` starts them ahead of their commands and
``_mechanism`` finds which mechanism works here.

Two mechanisms, chosen by ``tools.sandbox`` (``auto``: the first that works here):

- **bubblewrap** (``bwrap``, bubblewrap(1); as Flatpak and Claude Code's sandbox runtime use
  it): new user, PID, IPC, UTS, cgroup and (unless ``tools.network``) network namespaces; a
  new root filesystem of read-only system directories (``/usr``, ``/lib*``, ``/bin``), a few
  read-only files of ``/etc`` (copied once per process), this Python's installation
  read-only, a private ``/proc`` and ``/dev``, a private tmpfs ``/tmp``, and the workspace
  read-write; every capability dropped, no new user namespaces, the seccomp filter of
  ``_seccomp``, a new session (no terminal injection), killed with its parent.
- **landlock** (landlock(7), Linux 5.13+; as Codex CLI's Linux sandbox uses it), where
  bubblewrap is missing: ``unshare`` (util-linux) makes the user, PID, mount, IPC and UTS
  namespaces, and ``_confine.py`` the network's, mounts the private ``/tmp``, drops
  capabilities, allows reads of the same system paths and writes to the workspace only, loads
  the same filter.

Both share the bounds, set on the launcher before its command is given (prlimit(2):
``RLIMIT_AS``, ``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``, ``RLIMIT_NPROC`` when not
root), and a pids cgroup where one can be made (``_pids``). On macOS, ``_seatbelt`` is the
mechanism. ``none`` runs programs unconfined, with the same rlimits, only ever when the
operator says so. The data directory, the JetStream store, home directories, credentials,
other sessions' workspaces and the project's source tree are not visible inside.
docs/sandbox.md tells operators what is and is not reachable.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import os
import resource
import shlex
import shutil
import sys
import sysconfig
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from core.config import ToolPolicy

_log = logging.getLogger(__name__)

Mechanism = Literal["bubblewrap", "landlock", "seatbelt", "none"]
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
                  env: Mapping[str, str], read_only: Sequence[str] = ()) -> list[str]:
    """bubblewrap's options for one command after ``BWRAP_FIXED``: the network, the mounts
    (see the module's docstring, and ``read_only``: more host paths it may read, at the same
    place), the working directory, the seccomp filter's descriptor and the environment
    (exactly ``env``)."""
    args = ["--share-net"] if network else []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    # bubblewrap mounts in order: the private /tmp first, so a Python or a workspace that
    # lives under the host's /tmp is bound on top of it, not hidden by it.
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    for path in (*python_paths(), *read_only):
        args += ["--ro-bind", path, path]
    args += ["--ro-bind", etc_copy(), "/etc"]
    args += ["--bind", str(workspace), str(workspace),
             # The new root is a tmpfs of its own, with no size limit: read-only once built.
             "--remount-ro", "/", "--chdir", str(workspace), "--seccomp", str(seccomp_fd)]
    for name, value in env.items():
        args += ["--setenv", name, value]
    return args


TRAMPOLINE = 'c=$SB_COMMAND; unset SB_COMMAND; eval "exec $c"'
"""bubblewrap's first program inside (``/bin/sh -c``): become the command line in
``SB_COMMAND`` (quoted with ``shlex.join``), leaving the variable out of its environment."""
LANDLOCK_NAMESPACES = ("--user", "--map-root-user", "--pid", "--mount", "--ipc", "--uts")
"""``unshare``'s namespaces for the Landlock launcher (the network's is its own, ``_confine``)."""


def spare_argv(mechanism: Mechanism, program: str, options_fd: int) -> list[str]:
    """The command line of a spare (``_spare``) under ``mechanism`` (``program`` is ``bwrap``
    or ``unshare``), which reads its command's options from ``options_fd``."""
    if mechanism == "bubblewrap":
        return [program, *BWRAP_FIXED, "--args", str(options_fd), "/bin/sh", "-c", TRAMPOLINE]
    return [program, *LANDLOCK_NAMESPACES, "--", sys.executable, "-I", "-S", "-B", str(CONFINE),
            "--spec-fd", str(options_fd)]


def spare_payload(mechanism: Mechanism, workspace: Path, argv: Sequence[str], *, network: bool,
                  tmp_bytes: int, seccomp_fd: int, env: Mapping[str, str],
                  read_only: Sequence[str] = ()) -> bytes:
    """What a spare under ``mechanism`` reads to run ``argv`` in ``workspace`` with exactly
    ``env`` (and ``read_only``, more host paths it may read): bubblewrap's options,
    NUL-separated (``--args``), or ``_confine``'s JSON spec."""
    if mechanism == "bubblewrap":
        options = bwrap_options(workspace, network=network, tmp_bytes=tmp_bytes,
                                seccomp_fd=seccomp_fd,
                                env={**env, "SB_COMMAND": shlex.join(argv)},
                                read_only=read_only)
        return b"".join(os.fsencode(option) + b"\0" for option in options)
    spec = {"ro": [*SYSTEM_DIRS, *python_paths(), *ETC_FILES, str(CONFINE), "/proc",
                   *read_only],
            "rw": [str(workspace)], "dev": list(DEVICES), "tmp_bytes": tmp_bytes,
            "seccomp_fd": seccomp_fd, "network": network, "argv": list(argv), "env": dict(env)}
    return json.dumps(spec).encode()


def rlimits(bounds: Bounds, nproc: int | None) -> list[tuple[int, int, int]]:
    """The rlimits of ``bounds`` as ``(resource, soft, hard)``: address space, file size,
    open files, no core dumps, ``RLIMIT_NPROC`` when ``nproc`` is given, and CPU seconds
    (SIGXCPU at the bound, SIGKILL a second later)."""
    table = [(resource.RLIMIT_AS, bounds.memory_bytes, bounds.memory_bytes),
             (resource.RLIMIT_FSIZE, bounds.file_bytes, bounds.file_bytes),
             (resource.RLIMIT_NOFILE, bounds.open_files, bounds.open_files),
             (resource.RLIMIT_CORE, 0, 0)]
    if nproc is not None:
        table.append((resource.RLIMIT_NPROC, nproc, nproc))
    table.append((resource.RLIMIT_CPU, bounds.cpu_s, bounds.cpu_s + 1))
    return table


def set_limits(bounds: Bounds, nproc: int | None) -> None:
    """Between fork and exec (only where ``prlimit`` is missing): the rlimits."""
    for limit, soft, hard in rlimits(bounds, nproc):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(limit, (soft, hard))


JOIN_CGROUP = 'echo $$ > "$0" && exec "$@"'
"""``sh -c`` script: move this shell into the cgroup whose ``cgroup.procs`` is ``$0``, then
become the rest of the command line (so everything it starts is inside)."""


def bounds_prefix(bounds: Bounds, nproc: int | None, prlimit: str) -> list[str]:
    """The command-line prefix that applies ``bounds`` to an unconfined program (``sandbox:
    none``) without a ``preexec_fn``: util-linux's ``prlimit`` sets the rlimits, then runs
    it. (A ``preexec_fn`` makes Python fork the whole actor process instead of using vfork,
    some milliseconds per command in a process that has a model client loaded.)"""
    prefix = [prlimit, f"--as={bounds.memory_bytes}", f"--cpu={bounds.cpu_s}:{bounds.cpu_s + 1}",
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
    if uid == 0 or not os.path.isdir("/proc"):  # root, or macOS (no /proc, ``_seatbelt``)
        return None
    running = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    running += len(os.listdir(f"/proc/{entry.name}/task"))
    return processes + running


def landlock_supported() -> bool:
    """Whether the kernel has Landlock (its ABI version, landlock_create_ruleset(2), is >= 1)."""
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
PRLIMIT = _PROGRAMS.get("prlimit")

def workspace_bytes(root: Path) -> int:
    """Bytes the workspace's files take on disk (allocated blocks), symlinks not followed."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
    return total
