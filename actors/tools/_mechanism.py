"""Which sandbox is in force: ``tools.sandbox`` (``auto``, ``bubblewrap``, ``landlock``,
``seatbelt``, ``none``) resolved once per process by a trial run of ``true`` under each
mechanism. ``auto`` tries bubblewrap then Landlock on Linux, Seatbelt on macOS."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from actors.tools import _seatbelt, _spare
from actors.tools._sandbox import Bounds, Mechanism, landlock_supported, python_paths
from core.errors import SandboxUnavailableError

_log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0
AUTO: tuple[Mechanism, ...] = (("seatbelt",) if sys.platform == "darwin"
                                else ("bubblewrap", "landlock"))
"""What ``auto`` tries, in order."""
_PROBE_BOUNDS = Bounds(memory_bytes=1 << 30, cpu_s=10, processes=16, file_bytes=1 << 20,
                       open_files=64, tmp_bytes=1 << 20)


class Sandbox:
    """Finds, once per process and mechanism, whether a mechanism works here."""

    def __init__(self, bwrap: str = "bwrap", unshare: str = "unshare") -> None:
        self.programs = {"bubblewrap": bwrap, "landlock": unshare,
                         "seatbelt": _seatbelt.SANDBOX_EXEC}
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
        wanted: tuple[Mechanism, ...] = (AUTO if choice == "auto"
                                         else (choice,))  # type: ignore[assignment]
        reasons = []
        for mechanism in wanted:
            reason = await self._probe(mechanism)
            if reason is None:
                return mechanism
            reasons.append(f"{mechanism}: {reason}")
        msg = "no sandbox works on this machine (" + "; ".join(reasons) + ")"
        raise SandboxUnavailableError(msg)

    def program(self, mechanism: Mechanism) -> str:
        """The path of ``mechanism``'s program (its name when not on PATH)."""
        name = self.programs.get(mechanism, mechanism)
        return shutil.which(name) or name

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

    async def _try(self, mechanism: Mechanism) -> str | None:
        """None when ``true`` runs under ``mechanism`` exactly as a command would (from a
        spare), else why not."""
        if mechanism == "seatbelt":
            return await self._try_seatbelt()
        if shutil.which(self.programs[mechanism]) is None:
            package = "bubblewrap" if mechanism == "bubblewrap" else "util-linux (unshare)"
            return f"{self.programs[mechanism]} is not installed (package {package})"
        if mechanism == "landlock" and not landlock_supported():
            return "the kernel has no Landlock (Linux 5.13+ with landlock in the LSM list)"
        true = shutil.which("true") or "/bin/true"
        try:
            spare = await _spare.make(mechanism, self.program(mechanism), merge_stderr=True)
        except OSError as exc:
            return f"cannot start it ({exc})"
        with tempfile.TemporaryDirectory(prefix="sb-sandbox-probe-") as workspace:
            try:
                spare.run(Path(workspace), [true], _PROBE_BOUNDS, network=False, env={})
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    output, _ = await spare.process.communicate()
            except TimeoutError:
                return f"a trial run did not finish within {PROBE_TIMEOUT_S:g} s"
            except OSError as exc:
                return f"a trial run failed ({exc})"
            finally:
                if spare.process.returncode is None:
                    await spare.discard()
                else:
                    await spare.finish()
        if spare.process.returncode != 0:
            return (output.decode(errors="replace").strip()[-300:]
                    or f"exit {spare.process.returncode}")
        return None


    async def _try_seatbelt(self) -> str | None:
        if sys.platform != "darwin" or shutil.which(self.programs["seatbelt"]) is None:
            return "sandbox-exec is macOS's, and this is not macOS"
        true = shutil.which("true") or "/usr/bin/true"
        with tempfile.TemporaryDirectory(prefix="sb-sandbox-probe-") as workspace:
            argv = _seatbelt.argv(Path(workspace), Path(workspace), python_paths(), [true],
                                  network=False)
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT)
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    output, _ = await process.communicate()
            except TimeoutError:
                process.kill()
                await process.wait()
                return f"a trial run did not finish within {PROBE_TIMEOUT_S:g} s"
            except OSError as exc:
                return f"a trial run failed ({exc})"
        if process.returncode != 0:
            return output.decode(errors="replace").strip()[-300:] or f"exit {process.returncode}"
        return None


SANDBOX = Sandbox()
"""The process-wide sandbox (what works does not change while the process runs)."""
