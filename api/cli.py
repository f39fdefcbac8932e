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
`Authorization: Bearer <key>` (/metrics included): SB_API_TOKEN (every scope) or a key of
SB_API_KEYS_FILE (`switchboard api key NAME` makes one, with its scopes, rate and quota);
with neither the API refuses to start. `switchboard up` starts it too when one is set.

  POST /v1/runs                        {"message", "session", "user", "tags", "metadata",
                                       "multitask_strategy", "webhook"}; Idempotency-Key
  GET  /v1/runs?status=&user=&tag=...  runs, newest first, a page and its next_cursor
  GET  /v1/runs/{run_id}               status, flow, role, turn, model, answer, files, error
  GET  /v1/runs/{run_id}/wait          the run once it ends (or at ?timeout_s=)
  GET  /v1/sessions/{session}[/runs]   a session's active and queued runs; its history
  GET  /v1/runs/{run_id}/events        text/event-stream until the run ends
  POST /v1/runs/{run_id}/stop          the run stops at its next turn
  POST /v1/runs/{run_id}/terminate     the run ends now (the actors lost it, or not)
  POST /v1/runs/{run_id}/retry         a failed run goes on from its checkpoint
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
  SB_API_TOKEN    a bearer key with every scope (named "default")
  SB_API_KEYS_FILE  YAML of named keys by SHA-256, with scopes, rate and runs_per_day
  SB_API_LISTEN   HOST:PORT when --listen is not given (default 127.0.0.1:8080)
  SB_API_WEBHOOK_SECRET       signs webhooks (Standard Webhooks); none: webhooks are off
  SB_API_WEBHOOK_URL          the webhook of runs that name none
  SB_API_WEBHOOK_ALLOW_HOSTS  hosts a webhook may reach although not public (a,b,...)
  SB_API_WEBHOOK_ATTEMPTS, SB_API_WEBHOOK_BACKOFF_S   retries (5; 2 s, doubling)
exit codes: 0 stopped cleanly, 2 no key, a bad keys file, a bad --listen, or Switchboard
not running
"""

KEY_DESCRIPTION = """\
Make a new API key: print the key once (keep it: only its SHA-256 is stored) and the entry
to add to the keys file (SB_API_KEYS_FILE) under `keys:`. Scopes: read (GET routes), submit
(POST /v1/runs), control (stop, terminate, retry, approvals), admin (every key's runs and
the dead letters). A key without admin sees only the runs and sessions it started.

  switchboard api key ci --scopes read,submit --rate 60/minute --runs-per-day 500
"""


def add_parser(commands: Any, *, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Add ``api`` to the ``switchboard`` parser's subparsers (``commands`` adds the global
    options to it; ``parents`` is taken for symmetry with ``gateway.bots_cli``)."""
    api = commands.add_parser(
        "api", help="serve the HTTP API (needs SB_API_TOKEN or SB_API_KEYS_FILE)",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    api.add_argument("--listen", metavar="HOST:PORT",
                     help="address to listen on (default: SB_API_LISTEN or 127.0.0.1:8080)")
    api.set_defaults(func=cmd_api)
    sub = api.add_subparsers(dest="api_command", metavar="{key}")
    key = sub.add_parser("key", parents=list(parents), help="make a new API key",
                         description=KEY_DESCRIPTION,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    key.add_argument("name", help="the key's name: 1-32 of a-z 0-9 _ -")
    key.add_argument("--scopes", default="read,submit,control",
                     help="comma-separated: read, submit, control, admin "
                     "(default: read,submit,control)")
    key.add_argument("--rate", help="requests per window per API process, e.g. 60/minute")
    key.add_argument("--runs-per-day", type=int, metavar="N",
                     help="runs it may start per UTC day")
    key.set_defaults(func=cmd_key, needs_topology=False)


def cmd_key(args: argparse.Namespace, settings: Settings, topology: Topology | None) -> int:
    """Print a new key and its keys-file entry; 2 for a bad name, scope, rate or count."""
    from api._keys import Scope, key_entry, new_key
    from api.errors import ApiConfigError

    try:
        scopes = frozenset(Scope(s.strip()) for s in args.scopes.split(",") if s.strip())
    except ValueError:
        say(f"❌ --scopes takes {', '.join(Scope)}, not {args.scopes!r}")
        return EXIT_CONFIG
    if not scopes:
        say("❌ a key needs one scope at least (--scopes)")
        return EXIT_CONFIG
    key = new_key()
    try:
        entry = key_entry(args.name, key, scopes, args.rate, args.runs_per_day)
    except ApiConfigError as exc:
        say(f"❌ {exc}")
        return EXIT_CONFIG
    say(f"API key {args.name} (shown once; send it as Authorization: Bearer <key>):\n{key}\n")
    where = settings.api_keys_file or "the file SB_API_KEYS_FILE names"
    say(f"Add this under `keys:` in {where}, then restart the API:\n{entry}")
    return EXIT_OK


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
