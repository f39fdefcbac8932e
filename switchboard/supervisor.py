"""The supervisor: every actor replica of the topology as its own OS process, restarted when it
dies, all stopped cleanly on SIGINT / SIGTERM.

Processes are forked from a fork server that preloaded the heavy imports (``switchboard._preload``,
and ``switchboard._preload_litellm`` when a model needs litellm), so a replica starts in
milliseconds and shares those modules' memory with its siblings.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from core.config import Settings, Topology
from modelcall import needs_litellm
from natsauth import API, GATEWAY, settings_for
from switchboard.worker import run_actor_process, run_gateway_process

_log = logging.getLogger(__name__)

RESTART_BACKOFF_S = (0.5, 10.0)
"""First and largest delay before restarting a process that died; doubles per quick death."""
HEALTHY_AFTER_S = 30.0
"""A process alive this long resets its restart delay."""
STOP_GRACE_S = 15.0
"""Seconds a process gets to drain after SIGTERM before SIGKILL."""


@dataclass
class ProcessSpec:
    """One supervised process: its name and what it runs."""

    name: str
    target: Callable[..., None]
    args: tuple[Any, ...]
    process: BaseProcess | None = None
    started_at: float = 0.0
    started_wall: float = 0.0
    """When the current process started, Unix seconds (``started_at`` is monotonic)."""
    restarts: int = 0
    backoff_s: float = RESTART_BACKOFF_S[0]
    restart_at: float | None = None
    exit_codes: list[int] = field(default_factory=list)


def plan_processes(
    settings: Settings,
    topology: Topology,
    nats_url: str,
    *,
    roles: dict[str, int] | None = None,
    gateway: bool = False,
    api: bool = False,
) -> list[ProcessSpec]:
    """The processes of a deployment: ``roles`` maps role → replicas (default: the topology's
    replica counts), plus the Discord gateway when ``gateway`` is true and the HTTP API
    (``api.cli.run_api_process``) when ``api`` is. Each runs as its own NATS identity when
    ``SB_NATS_CREDS_DIR`` is set (``natsauth.settings_for``).

    Raises:
        ConfigError: ``SB_NATS_CREDS_DIR`` lacks the seed of one of the processes.
    """
    counts = roles if roles is not None else {r: topology.actor(r).replicas for r in topology.roles}
    specs = [
        ProcessSpec(f"{role}/{i}", run_actor_process,
                    (role, i, settings_for(settings, role), topology, nats_url))
        for role, replicas in counts.items()
        for i in range(replicas)
    ]
    if gateway:
        specs.append(ProcessSpec("gateway", run_gateway_process,
                                 (settings_for(settings, GATEWAY), topology, nats_url)))
    if api:
        from api.cli import run_api_process  # only with the HTTP API (SB_API_TOKEN)

        specs.append(ProcessSpec("api", run_api_process,
                                 (settings_for(settings, API), topology, nats_url)))
    return specs


PRELOAD = ("switchboard._preload",)
"""What every fork server imports before forking."""
PRELOAD_LITELLM = (*PRELOAD, "switchboard._preload_litellm")
"""The same and litellm, for topologies that call a model through it."""


def preload_modules(topology: Topology) -> tuple[str, ...]:
    """The fork server's imports for ``topology``: litellm only when one of its models needs
    it (``modelcall.needs_litellm``; the offline model does not), and the module of every
    custom provider of ``topology.providers``, so each process does not import it again (a
    ``litellm.CustomLLM`` provider imports litellm: 1.6 s of CPU and 160 MB a process, so
    15 processes importing it at once kept ``switchboard up`` from being ready for 35 s on
    2 cores; the bench's ``learning`` scenario). A module that does not import is left to
    each process, which reports it (the fork server skips a preload's ImportError)."""
    base = PRELOAD_LITELLM if needs_litellm(topology.model_names(), topology.providers) \
        else PRELOAD
    modules = {target.partition(":")[0] for target in topology.providers.values()}
    return (*sorted(modules - set(PRELOAD_LITELLM) - {"offline_model"}), *base)


OPEN_FILES = 65536
"""The soft limit of open files the supervisor asks for (capped by the hard limit)."""


def raise_open_file_limit(wanted: int = OPEN_FILES) -> int:
    """Raise this process's soft limit of open files towards ``wanted`` (never above the hard
    limit, never lower); the processes it starts inherit it. An actor holds a socket per model
    call in flight, and the common default of 1,024 fails with ``EMFILE`` at about a thousand
    concurrent calls (the bench's ``concurrency`` scenario). Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return int(soft)
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        _log.debug("open files limit raised from %d to %d", soft, new)
    return int(new)


class Supervisor:
    """Starts ``specs``, restarts any that dies (with backoff), stops all on request.

    Args:
        specs: the processes to run.
        preload: the modules a fork server imports before forking every process
            (``preload_modules``; default: the actors and litellm); empty uses plain ``spawn``
            (slower start, more memory; for debugging).
        on_change: called after each start, restart or stop (tests use it to find pids).
    """

    def __init__(
        self,
        specs: list[ProcessSpec],
        *,
        preload: tuple[str, ...] = PRELOAD_LITELLM,
        on_change: Callable[[Supervisor], None] | None = None,
    ) -> None:
        self.specs = specs
        self._stopping = False
        self._on_change = on_change
        self._ctx: BaseContext
        if preload:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(list(preload))
            self._ctx = ctx
        else:
            self._ctx = multiprocessing.get_context("spawn")

    def pids(self) -> dict[str, int]:
        """Name → pid of every live process."""
        return {s.name: s.process.pid for s in self.specs
                if s.process is not None and s.process.pid is not None and s.process.is_alive()}

    def stop(self, *_: object) -> None:
        """Ask the run loop to stop every process (safe from a signal handler)."""
        self._stopping = True

    def run(self, *, install_signals: bool = True, ready: Callable[[], None] | None = None) -> int:
        """Run until ``stop`` (or SIGINT / SIGTERM); returns 0 after a clean stop."""
        raise_open_file_limit()
        if install_signals:
            signal.signal(signal.SIGINT, self.stop)
            signal.signal(signal.SIGTERM, self.stop)
        for spec in self.specs:
            self._start(spec)
        self._changed()
        if ready is not None:
            ready()
        while not self._stopping:
            self._watch()
        self._stop_all()
        return 0

    def _start(self, spec: ProcessSpec) -> None:
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=spec.target, args=spec.args, name=spec.name,
                                    daemon=False)
        process.start()
        spec.process, spec.started_at, spec.restart_at = process, time.monotonic(), None
        spec.started_wall = time.time()
        _log.info("started %s (pid %s)", spec.name, process.pid)

    def _watch(self) -> None:
        now = time.monotonic()
        for spec in self.specs:
            if spec.restart_at is not None and now >= spec.restart_at and not self._stopping:
                spec.restarts += 1
                self._start(spec)
                self._changed()
        sentinels = {s.process.sentinel: s for s in self.specs
                     if s.process is not None and s.restart_at is None}
        ready = multiprocessing.connection.wait(list(sentinels), timeout=0.2)
        for sentinel in ready:
            spec = sentinels[sentinel]  # type: ignore[index]
            if self._stopping or spec.process is None:
                continue
            spec.process.join(timeout=1)
            code = spec.process.exitcode if spec.process.exitcode is not None else -1
            spec.exit_codes.append(code)
            lived = time.monotonic() - spec.started_at
            spec.backoff_s = (RESTART_BACKOFF_S[0] if lived >= HEALTHY_AFTER_S
                              else min(RESTART_BACKOFF_S[1], spec.backoff_s * 2))
            spec.restart_at = time.monotonic() + spec.backoff_s
            _log.warning("%s (pid %s) died with exit code %s after %.1f s; restarting in %.1f s",
                         spec.name, spec.process.pid, code, lived, spec.backoff_s)
            self._changed()

    def _stop_all(self) -> None:
        live = [s.process for s in self.specs if s.process is not None and s.process.is_alive()]
        _log.info("stopping %d processes", len(live))
        for process in live:
            process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for process in live:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        for process in live:
            if process.is_alive():
                _log.warning("%s did not stop within %.0f s; killing it", process.name,
                             STOP_GRACE_S)
                process.kill()
                process.join(timeout=5)
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self)
