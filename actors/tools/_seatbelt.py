"""The macOS sandbox: ``sandbox-exec`` (Seatbelt, sandbox-exec(1)) with a profile made per
command. Documented and unit-tested on Linux; not run here (no macOS machine).

The profile (SBPL, the Scheme-like language of ``/usr/share/sandbox/*.sb``; OpenAI Codex CLI's
macOS sandbox and Chromium's renderer policy are built the same way) denies everything, then
allows:
- starting programs and forking (children inherit the profile), signals and process
  information only within the sandbox;
- reading file metadata anywhere (path lookup needs it; contents stay refused), reading the
  system (``/usr``, ``/bin``, ``/sbin``, ``/System``, ``/Library/Apple``, ``/private/etc`` for
  the resolver and user names, ``/dev`` random and null devices) and this Python's
  installation;
- reading and writing the workspace and a private temporary directory (``TMPDIR``);
- sysctl reads, and the directory service lookup behind getpwuid(3);
- the network only when ``tools.network`` is true.
macOS has no pids cgroup, and its ``RLIMIT_NPROC`` counts all the user's processes: there the
bounds are the other rlimits, and no process bound applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

SANDBOX_EXEC = "/usr/bin/sandbox-exec"
SYSTEM_READ = ("/usr", "/bin", "/sbin", "/System", "/Library/Apple", "/private/etc",
               "/private/var/db/timezone", "/dev/null", "/dev/zero", "/dev/random",
               "/dev/urandom")


def _string(path: str) -> str:
    """An SBPL string literal of ``path`` (backslashes and quotes escaped)."""
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def profile(workspace: Path, tmp: Path, python: Sequence[str], *, network: bool) -> str:
    """The Seatbelt profile for one command (see the module docstring)."""
    reads = " ".join(f"(subpath {_string(p)})" for p in (*SYSTEM_READ, *python))
    writable = f"(subpath {_string(str(workspace))}) (subpath {_string(str(tmp))})"
    lines = [
        "(version 1)",
        "(deny default)",
        "(allow process-exec process-fork)",
        "(allow signal (target same-sandbox))",
        "(allow process-info* (target same-sandbox))",
        "(allow sysctl-read)",
        '(allow mach-lookup (global-name "com.apple.system.opendirectoryd.libinfo"))',
        "(allow file-read-metadata)",
        f"(allow file-read* {reads})",
        f"(allow file-read* file-write* {writable})",
        '(allow file-write-data (literal "/dev/null"))',
    ]
    if network:
        lines.append("(allow network*)")
    return "\n".join(lines) + "\n"


def argv(workspace: Path, tmp: Path, python: Sequence[str], command: Sequence[str], *,
         network: bool) -> list[str]:
    """``sandbox-exec -p PROFILE COMMAND...``."""
    return [SANDBOX_EXEC, "-p", profile(workspace, tmp, python, network=network), *command]
