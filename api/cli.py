"""``switchboard api [--listen HOST:PORT]``: the HTTP API as a command, and as a process that
``switchboard up`` supervises when ``SB_API_TOKEN`` is set.

Imports are light at module level: the ``switchboard`` parser is built on every call.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.console import say

if TYPE_CHECKING:
    from core.config import Settings, Topology

_log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

DESCRIPTION = """\
Serve Switchboard's HTTP API: submit requests to the same actors as Discord and the terminal,
read a run's status and answer, follow its events (Server-Sent Events), stop it, fetch its
files, see what runs and the dead letters; a console for people in the browser at /. Every
route but /healthz, /readyz and the console's own files (/, /console/*) needs
`Authorization: Bearer $SB_API_TOKEN` (/metrics included); without
SB_API_TOKEN the API refuses to start. `switchboard up` starts it too when SB_API_TOKEN is set.

  POST /v1/runs                        {"message", "session", "user", "tags", "metadata",
                                       "multitask_strategy", "webhook"}; Idempotency-Key
  GET  /v1/runs?status=&user=&tag=...  runs, newest first, a page and its next_cursor
  GET  /v1/runs/{run_id}               status, flow, role, turn, model, answer, files, error
  GET  /v1/runs/{run_id}/wait          the run once it ends (or at ?timeout_s=)
  GET  /v1/sessions/{session}[/runs]   a session's active and queued runs; its history
  GET  /v1/runs/{run_id}/events        text/event-stream until the run ends
  POST /v1/runs/{run_id}/stop          the run stops at its next turn
  GET  /v1/runs/{run_id}/files/{path}  a workspace file
  GET  /healthz                        liveness: each role's consumer (no token)
  GET  /readyz                         readiness: 503 while a role has no replica (no token)
  GET  /metrics                        Prometheus metrics
  GET  /v1/dead-letters[/{seq}]        dead letters; POST .../{seq}/replay, DELETE .../{seq}
  GET  /v1/roles                       each role's lag and replicas, the role to scale
  GET  /v1/analytics/report?since=24h  `switchboard report` as JSON (the API's events copy)
  GET  /                               the browser console (asks for the key)
  GET  /openapi.json                   OpenAPI 3.1
"""

EPILOG = """\
environment:
  SB_API_TOKEN    the bearer token (required)
  SB_API_LISTEN   HOST:PORT when --listen is not given (default 127.0.0.1:8080)
  SB_API_WEBHOOK_SECRET       signs webhooks (Standard Webhooks); none: webhooks are off
  SB_API_WEBHOOK_URL          the webhook of runs that name none
  SB_API_WEBHOOK_ALLOW_HOSTS  hosts a webhook may reach although not public (a,b,...)
  SB_API_WEBHOOK_ATTEMPTS, SB_API_WEBHOOK_BACKOFF_S   retries (5; 2 s, doubling)
exit codes: 0 stopped cleanly, 2 no token, a bad --listen, or Switchboard not running
"""


def add_parser(commands: Any, *, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Add ``api`` to the ``switchboard`` parser's subparsers (``commands`` adds the global
    options to it; ``parents`` is taken for symmetry with ``gateway.bots_cli``)."""
    del parents  # `api` has no subcommands of its own
    api = commands.add_parser(
        "api", help="serve the HTTP API (needs SB_API_TOKEN)", description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    api.add_argument("--listen", metavar="HOST:PORT",
                     help="address to listen on (default: SB_API_LISTEN or 127.0.0.1:8080)")
    api.set_defaults(func=cmd_api)


def cmd_api(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    """Run the API until SIGTERM / SIGINT; returns the exit code."""
    from api._server import run_api
    from api.errors import ApiConfigError, UnavailableError
    from core.logs import setup_logging
    from natsauth import API, settings_for
    from runtime.bus import resolve_nats_url

    settings = settings_for(settings, API)  # its own NATS identity with SB_NATS_CREDS_DIR
    setup_logging("api", level=settings.log_level, as_json=settings.log_json)
    try:
        asyncio.run(run_api(settings, topology, nats_url=resolve_nats_url(settings),
                            listen=args.listen or settings.api_listen))
    except (ApiConfigError, UnavailableError) as exc:
        say(f"❌ {exc}")
        return EXIT_CONFIG
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def run_api_process(settings: Settings, topology: Topology, nats_url: str) -> None:
    """Run the API until SIGTERM / SIGINT (a supervisor process target: ``switchboard up``
    with ``SB_API_TOKEN`` set); exits 1 when it cannot serve, so the supervisor restarts it."""
    from api._server import run_api
    from core.logs import setup_logging

    setup_logging("api", level=settings.log_level, as_json=settings.log_json)
    try:
        asyncio.run(run_api(settings, topology, nats_url=nats_url, listen=settings.api_listen))
    except KeyboardInterrupt:
        pass
    except Exception:
        _log.exception("the HTTP API failed")
        sys.exit(EXIT_FAILED)
    finally:
        from runtime import shutdown_tracing

        shutdown_tracing()  # a supervised child leaves with os._exit: export what is queued
