"""The Landlock sandbox's launcher: starts the program confined, waits for it, exits as it did.

Run as a script (``python -I -S _confine.py --spec-fd FD``), never imported by the actors,
inside ``unshare --user --map-root-user --pid --mount --ipc --uts``: a user and mount namespace
of its own, and a PID namespace its first child is process 1 of. It is started ahead of its
command (a spare, ``_spare``) and reads the command from FD until end of file, as JSON:
``ro`` (paths readable and executable), ``rw`` (the workspace), ``dev`` (device files it may
read and write), ``tmp_bytes`` (size of the private ``/tmp``), ``seccomp_fd`` (the filter of
``_seccomp.program()``, inherited), ``network`` (false: a new, empty network namespace,
unshare(2) ``CLONE_NEWNET``), ``argv`` and ``env`` (the program and its whole environment).

It forks process 1 of the new PID namespace (when it ends, every process of the namespace ends
with it), which forks the program's process, and waits: the program's exit status becomes its
own, and death by signal N becomes 128 + N, as a shell reports it (``unshare --fork`` would
re-raise the signal on itself instead, and fails to for some). Each is killed if its parent
dies. Process 1:
0. ``/proc`` of its own PID namespace (only its own processes);
1. a private, empty tmpfs on ``/tmp`` (mount(2) in its own mount namespace);
then the program's process:
2. every capability dropped from the bounding set, so the program ``exec``ed as (namespace)
   root has none (capabilities(7), "Transformation of capabilities during execve()");
3. no-new-privileges, then Landlock: everything of the filesystem is refused but the paths of
   SPEC, and (ABI 6+) abstract UNIX sockets and signals outside the sandbox (landlock(7),
   ``<linux/landlock.h>``; the syscalls through ctypes);
4. the seccomp filter (seccomp(2), ``SECCOMP_SET_MODE_FILTER``);
5. ``execve`` ARGV with ENV.
Any failure ends it with status 126 and a line on stderr that starts with ``sandbox:``.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from typing import Any, NoReturn

_PR_CAPBSET_DROP = 24
_PR_SET_PDEATHSIG = 1
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_CAP_LAST = 63
_CLONE_NEWNET = 0x40000000


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _libc() -> ctypes.CDLL:
    # The C library this interpreter already has loaded (ctypes.util.find_library would run
    # ldconfig: tens of milliseconds per command).
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MS_REC = 1, 32, 4096, 16384


def _private_tmp(libc: ctypes.CDLL, size: int, keep: list[str], read_only: list[str]) -> None:
    """A new tmpfs on ``/tmp``; the paths of ``keep`` (the workspace) and ``read_only`` (a
    Python, an MCP server's files) that were under ``/tmp`` are bound back at their places in
    it, the ``read_only`` ones read-only: Landlock's rule for the private ``/tmp`` allows
    writing everything beneath it, so only the mount keeps them unwritable (mount(2),
    ``MS_REMOUNT | MS_BIND | MS_RDONLY``)."""
    read_only = [p for p in read_only if p.startswith("/tmp/") and os.path.exists(p)]
    under = [p for p in keep if p.startswith("/tmp/") and os.path.exists(p)] + read_only
    held = {path: os.open(path, os.O_PATH | os.O_CLOEXEC) for path in under}
    options = f"size={size},mode=1777".encode()
    _check(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, options), "mount /tmp")
    for path, fd in held.items():
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "ab").close()  # a mount point, closed at once
        source = f"/proc/self/fd/{fd}".encode()
        _check(libc.mount(source, path.encode(), None, _MS_BIND | _MS_REC, None),
               f"bind {path}")
        os.close(fd)
        if path in read_only:
            _check(libc.mount(None, path.encode(), None,
                              _MS_REMOUNT | _MS_BIND | _MS_RDONLY, None), f"read-only {path}")


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    for cap in range(_CAP_LAST + 1):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 22:
            break  # EINVAL: past the last capability this kernel knows


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in <linux/landlock.h>
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_RULE_PATH_BENEATH = 1
_CREATE_RULESET_VERSION = 1
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_TRUNCATE, _IOCTL_DEV = 1 << 14, 1 << 15
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_PR_SET_NO_NEW_PRIVS = 38


def _handled(abi: int) -> int:
    """Every filesystem access right of Landlock ABI ``abi`` (landlock(7), "Access rights")."""
    rights = (1 << 13) - 1  # ABI 1: execute ... make_sym
    if abi >= 2:
        rights |= 1 << 13  # refer
    if abi >= 3:
        rights |= _TRUNCATE
    if abi >= 5:
        rights |= _IOCTL_DEV
    return rights


def _landlock(libc: ctypes.CDLL, spec: dict[str, list[str]]) -> None:
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    abi = syscall(_CREATE_RULESET, None, ctypes.c_size_t(0),
                  ctypes.c_uint32(_CREATE_RULESET_VERSION))
    if abi < 1:
        raise OSError(ctypes.get_errno(), "Landlock is not enabled in this kernel")
    handled = _handled(abi)
    file_rights = _EXECUTE | _WRITE_FILE | _READ_FILE | (_TRUNCATE if abi >= 3 else 0)
    attr = _RulesetAttr(handled, 0, _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0)
    size = ctypes.sizeof(attr) if abi >= 6 else 8
    ruleset = syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                      ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")

    def allow(path: str, rights: int) -> None:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            if not os.path.isdir(path):
                rights &= file_rights
            rule = _PathBeneath(rights, fd)
            _check(syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0),
                   f"landlock_add_rule {path}")
        finally:
            os.close(fd)

    for path in spec["ro"]:
        if os.path.exists(path):
            allow(path, _READ_FILE | _READ_DIR | _EXECUTE)
    for path in spec["dev"]:
        if os.path.exists(path):
            allow(path, _READ_FILE | _WRITE_FILE)
    for path in [*spec["rw"], "/tmp"]:
        allow(path, handled)
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(syscall(_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    os.close(ruleset)


def _seccomp(libc: ctypes.CDLL, fd: int) -> None:
    program = b""
    while chunk := os.read(fd, 65_536):
        program += chunk
    os.close(fd)
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _check(libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0),
           "seccomp")


def _fail(exc: BaseException) -> NoReturn:
    sys.stderr.write(f"sandbox: {type(exc).__name__}: {exc}\n")
    sys.stderr.flush()
    os._exit(126)


def _status(status: int) -> int:
    """A wait status as a shell's exit code: 128 + N for death by signal N."""
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _init(policy: dict[str, Any], program: list[str]) -> None:
    """Process 1 of the new PID namespace: mounts, then starts the program and reaps every
    orphan until the program ends; exits with its status (which ends every process left).
    The program is not process 1 itself: the kernel drops signals whose default action would
    end process 1 of a namespace (pid_namespaces(7)), ``SIGXCPU`` of ``RLIMIT_CPU`` among them.
    Never returns."""
    try:
        libc = _libc()
        _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
        _check(libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                          None), "mount /proc")
        _private_tmp(libc, int(policy["tmp_bytes"]), policy["rw"], policy["ro"])
        child = os.fork()
    except Exception as exc:  # every failure is told the same way
        _fail(exc)
    if child == 0:
        _confined(libc, policy, program)
    while True:
        pid, status = os.wait()
        if pid == child:
            os._exit(_status(status))


def _confined(libc: ctypes.CDLL, policy: dict[str, Any], program: list[str]) -> None:
    """The program's process: confine, then become ``program``; never returns."""
    try:
        _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
        _drop_capabilities(libc)
        _landlock(libc, policy)
        _seccomp(libc, int(policy["seccomp_fd"]))
        os.chdir(policy["rw"][0])
        for signum in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; programs don't
            signal.signal(signum, signal.SIG_DFL)
        os.execve(program[0], program, policy["env"])
    except Exception as exc:  # every failure is told the same way
        _fail(exc)


def _read_spec(fd: int) -> dict[str, Any]:
    data = b""
    while chunk := os.read(fd, 65_536):
        data += chunk
    os.close(fd)
    spec = json.loads(data)
    if not isinstance(spec, dict) or not spec.get("argv"):
        raise ValueError("the spec names no program")
    return spec


def main(argv: list[str]) -> None:
    """``argv``: ``["--spec-fd", FD]``; exits with the program's status."""
    try:
        if len(argv) != 2 or argv[0] != "--spec-fd":
            raise ValueError("usage: _confine.py --spec-fd FD")
        policy = _read_spec(int(argv[1]))
        program = [str(arg) for arg in policy["argv"]]
        if not policy.get("network"):
            _check(_libc().unshare(_CLONE_NEWNET), "unshare the network")
    except (ValueError, OSError) as exc:
        _fail(exc)
    child = os.fork()
    if child == 0:
        _init(policy, program)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda n, _frame: os.kill(child, signal.SIGKILL))
    _, status = os.waitpid(child, 0)
    sys.exit(_status(status))


if __name__ == "__main__":
    main(sys.argv[1:])
