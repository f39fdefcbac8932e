"""Entry points of the processes the supervisor starts: one actor replica, or the gateway.

The supervisor imports this module in every Switchboard process; each entry point imports
what only its own process runs (the runtime and one actor, or discord.py) inside itself.
"""

from __future__ import annotations

import asyncio
import cProfile
import functools
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import Settings, Topology
from core.errors import SwitchboardError
from core.logs import setup_logging

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from artifacts import ArtifactStore
    from runtime import Actor

_log = logging.getLogger(__name__)


def _install_uvloop() -> None:
    if sys.platform != "win32":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _flush_spans() -> None:
    """Export the spans still queued: a multiprocessing child leaves with ``os._exit``, which
    skips OpenTelemetry's ``atexit`` flush."""
    from runtime import shutdown_tracing

    shutdown_tracing()


def run_actor_process(
    role: str, replica: int, settings: Settings, topology: Topology, nats_url: str,
    actor_cls: type[Actor] | None = None,
) -> None:
    """Run one replica of ``role`` until SIGTERM / SIGINT (a supervisor process target).

    ``actor_cls`` serves the role instead of the registry's class (the bench's actors).
    """
    from runtime import run_actor
    from switchboard.registry import actor_class

    setup_logging(f"{role}/{replica}", level=settings.log_level, as_json=settings.log_json)
    _install_uvloop()
    profiler = _profiler() if settings.profile_dir is not None else None
    try:
        asyncio.run(run_actor(actor_cls or actor_class(role), replica, settings=settings,
                              topology=topology, nats_url=nats_url,
                              open_artifacts=functools.partial(_open_artifacts, settings=settings,
                                                               topology=topology)))
    except KeyboardInterrupt:
        pass
    except Exception:
        _log.exception("%s/%d failed", role, replica)
        sys.exit(1)
    finally:
        _flush_spans()
        if profiler is not None and settings.profile_dir is not None:
            _dump(profiler, settings.profile_dir / f"{role}-{replica}.prof")


def _profiler() -> cProfile.Profile:
    """A running ``cProfile`` profiler of this process (``Settings.profile_dir``), timing with
    the process's CPU clock (the default wall clock would charge the event loop's waits to
    the coroutines that await)."""
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    return profiler


def _dump(profiler: cProfile.Profile, path: Path) -> None:
    """Stop ``profiler`` and write its statistics to ``path`` (``pstats`` reads them)."""
    profiler.disable()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(path)
    except OSError as exc:
        _log.warning("profile not written to %s: %s", path, exc)


async def _open_artifacts(js: JetStreamContext, *, settings: Settings,
                          topology: Topology) -> ArtifactStore | None:
    """The deployment's artifact store, or None (logged) when it cannot be opened: runs then
    keep their workspace on this machine only."""
    from artifacts import open_artifact_store  # like run_actor: only in actor processes

    try:
        return await open_artifact_store(js, settings, topology)
    except SwitchboardError as exc:
        _log.error("artifact store unavailable, workspaces stay local: %s", exc)
        return None


def run_gateway_process(settings: Settings, topology: Topology, nats_url: str) -> None:
    """Run the Discord gateway until SIGTERM / SIGINT (a supervisor process target)."""
    from gateway.discord_bot import run_discord

    setup_logging("gateway", level=settings.log_level, as_json=settings.log_json)
    _install_uvloop()
    try:
        asyncio.run(run_discord(settings, topology, nats_url=nats_url))
    except KeyboardInterrupt:
        pass
    except Exception:
        _log.exception("gateway failed")
        sys.exit(1)
    finally:
        _flush_spans()
