"""``switchboard events tail`` and ``switchboard trace``: the commands that watch a running
Switchboard through its execution events (``analytics.events_tail``, ``analytics.trace_view``).
Each imports its own module when it runs, like every command of ``switchboard.cli``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from core.config import Settings, Topology
from runtime.bus import resolve_nats_url


def cmd_events(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    from analytics.events_tail import tail_events

    try:
        return asyncio.run(tail_events(
            settings, topology, resolve_nats_url(settings), session=args.session,
            actor=args.actor, as_json=args.json, last=args.last, limit=args.limit,
        ))
    except KeyboardInterrupt:
        return 0


def cmd_trace(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    from analytics.trace_view import show_trace

    return asyncio.run(show_trace(settings, topology, resolve_nats_url(settings), args.session,
                                  as_json=args.json))


def add_parsers(commands: Any, with_common: Callable[[Any], Any]) -> Any:
    """Add ``events tail`` and ``trace`` to ``commands`` (the ``switchboard`` subparsers,
    whose parsers take the global options); ``with_common`` gives a subparsers object the
    same. Returns ``switchboard events``' subparsers (the analytics add theirs there)."""
    events = commands.add_parser("events", help="observe execution events")
    event_commands = with_common(
        events.add_subparsers(dest="events_command", metavar="SUBCOMMAND", required=True))
    tail = event_commands.add_parser(
        "tail", help="follow execution events, one line each",
        description="Print one line per execution event as it happens (subject "
        "<prefix>.event.<actor>.<kind>.<session>; --session and --actor select by subject).")
    tail.add_argument("--session", help="only this session")
    tail.add_argument("--actor", help="only this actor role")
    tail.add_argument("--json", action="store_true", help="print raw JSON events")
    tail.add_argument("--last", type=int, default=0,
                      help="first replay the last N stored events")
    tail.add_argument("--limit", type=int, default=0,
                      help="exit after N events (default: follow until Ctrl-C)")
    tail.set_defaults(func=cmd_events)

    trace = commands.add_parser(
        "trace", help="the span tree of a session's last request, with durations",
        description="Print the spans of SESSION's last request (each actor's step, model call "
        "and tool call) as a tree with start offsets and durations, read from the execution "
        "events (no trace collector needed). Exit codes: 0 printed, 1 no traced events for "
        "the session, 2 NATS cannot be reached.")
    trace.add_argument("session", help="session id (terminal-<user>, a Discord thread's, ...)")
    trace.add_argument("--json", action="store_true",
                       help="print one JSON object: trace_id, session, services, duration_ms, "
                       "spans (nested children)")
    trace.set_defaults(func=cmd_trace)
    return event_commands
