"""Network isolation for programs the tools start: a new, empty network namespace.

``unshare -rn -- ARGV`` (util-linux) runs ARGV in a new network namespace that has only a
loopback interface, down: no connection leaves it, not even to 127.0.0.1 of the host. ``-r``
also makes a user namespace (mapped to root inside), which lets an unprivileged process create
the network namespace where the kernel allows unprivileged user namespaces; as root, plain
``unshare -n`` works. Which form works is probed once per process by running ``true`` with it.
Sources: unshare(1), network_namespaces(7), user_namespaces(7).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil

_log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0
_FORMS = (("-rn",), ("-n",))


class NetworkIsolation:
    """Finds, once, the ``unshare`` command line that cuts a program off the network."""

    def __init__(self, program: str = "unshare") -> None:
        self.program = program
        self._lock = asyncio.Lock()
        self._probed = False
        self._prefix: tuple[str, ...] | None = None
        self.reason = ""
        """Why isolation is unavailable (empty when it works or before the probe)."""

    async def prefix(self) -> tuple[str, ...] | None:
        """``("/usr/bin/unshare", "-rn", "--")`` or similar, or None when no form works here
        (then ``reason`` says why)."""
        async with self._lock:
            if not self._probed:
                self._prefix = await self._probe()
                self._probed = True
        return self._prefix

    async def _probe(self) -> tuple[str, ...] | None:
        unshare = shutil.which(self.program)
        true = shutil.which("true")
        if unshare is None or true is None:
            self.reason = f"the {self.program} program (util-linux) is not installed"
            return None
        errors: list[str] = []
        for form in _FORMS:
            prefix = (unshare, *form, "--")
            process = await asyncio.create_subprocess_exec(
                *prefix, true, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    _, stderr = await process.communicate()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                errors.append(f"unshare {' '.join(form)} did not finish")
                continue
            if process.returncode == 0:
                _log.info("commands run without network through unshare %s", " ".join(form))
                return prefix
            errors.append(stderr.decode(errors="replace").strip() or f"exit {process.returncode}")
        self.reason = "; ".join(errors)
        _log.warning("network isolation is unavailable: %s", self.reason)
        return None


NETWORK_ISOLATION = NetworkIsolation()
"""The process-wide probe (the answer does not change while the process runs)."""
