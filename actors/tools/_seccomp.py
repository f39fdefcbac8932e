"""The seccomp filter of every sandboxed program: system calls no build or test needs fail.

Refused with ``EPERM``: tracing other processes (``ptrace``, ``process_vm_readv/writev``,
``kcmp``), mounting and namespaces (``mount``, ``umount2``, ``pivot_root``, ``unshare``,
``setns``, ``clone`` with a namespace flag), the kernel keyring (``keyctl``, ``add_key``,
``request_key``), ``bpf``, ``perf_event_open``, ``userfaultfd``, loading modules or kernels,
``reboot``, swap, clock and accounting changes. ``clone3`` answers ``ENOSYS``, so C libraries
fall back to ``clone``, whose flags a filter can see (clone3 passes them in memory). The list
follows Docker's and Flatpak's default profiles (moby ``profiles/seccomp/default.json``,
flatpak ``common/flatpak-run.c`` ``setup_seccomp``). Built with libseccomp (``pyseccomp``, a
ctypes binding of the system's ``libseccomp.so.2``).
"""

from __future__ import annotations

import errno
import functools
import os
from typing import Any

import pyseccomp

REFUSED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
    "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd", "fanotify_init", "open_by_handle_at",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex", "syslog", "quotactl", "lookup_dcookie", "vhangup", "iopl", "ioperm",
)
"""System calls that fail with EPERM inside the sandbox."""

_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                    0x40000000, 0x00000080)
"""CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME (clone(2))."""


def _filter() -> Any:
    rules = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    for name in REFUSED:
        try:
            rules.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
        except (ValueError, RuntimeError, OSError):
            continue  # a call this architecture does not have (iopl on arm64)
    rules.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in _NAMESPACE_FLAGS:
        rules.add_rule(pyseccomp.ERRNO(errno.EPERM), "clone",
                       pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    return rules


@functools.cache
def program() -> bytes:
    """The filter as a classic BPF program (``struct sock_filter`` array), as bubblewrap's
    ``--seccomp FD`` reads it.

    Raises:
        OSError: libseccomp is missing or refused the filter.
    """
    read, write = os.pipe()
    try:
        with os.fdopen(write, "wb") as sink:
            _filter().export_bpf(sink)
        chunks = []
        while chunk := os.read(read, 65_536):
            chunks.append(chunk)
    finally:
        os.close(read)
    return b"".join(chunks)


def memfd() -> int:
    """A file descriptor positioned at the start of ``program()``, to pass to bubblewrap
    (``--seccomp FD``); the caller closes it once the child has started.

    Raises:
        OSError: as ``program``, or no memfd here.
    """
    fd = os.memfd_create("sb-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def load() -> None:
    """Load the filter into this process (and every program it will run): the Landlock
    launcher's last step before ``exec``.

    Raises:
        OSError: libseccomp is missing or the kernel refused the filter.
    """
    _filter().load()
