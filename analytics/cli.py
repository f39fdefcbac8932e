"""``switchboard events export``, ``switchboard events query`` and ``switchboard report``.

Exit codes: 0 done; 1 DuckDB rejected the query; 2 no database yet, the file is busy or
unusable, or NATS cannot be reached. Errors go to stderr, results to stdout. Imports are light
at module level: the ``switchboard`` parser is built on every call.

Each command imports what only it runs (DuckDB and NATS) inside its own function: the
``switchboard`` command's ``--help`` and its other commands do not load them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.console import say, warn

if TYPE_CHECKING:
    from core.config import Settings, Topology

EXIT_OK, EXIT_QUERY, EXIT_CONFIG = 0, 1, 2
DB_NAME = "events.duckdb"

_COLUMNS_HELP = """\
The table `events` has one row per execution event:
  seq (stream sequence, primary key), time (TIMESTAMPTZ), actor, kind, session, request_id,
  step, flow, role, user_id, model, tokens_in, tokens_out, cost_usd, latency_ms, source,
  value, error, detail, trace_id, span_id, parent_span_id, event_id, pid, subject,
  raw (the event as JSON).
What each column means: SELECT column_name, comment FROM duckdb_columns()
  WHERE table_name = 'events'   (or README, "Event analytics").

examples:
  switchboard events query "SELECT kind, count(*) FROM events GROUP BY ALL ORDER BY 2 DESC"
  switchboard events query --json "SELECT * FROM events WHERE session = 'terminal-ann'"
"""


def _since(text: str) -> dt.timedelta:
    from analytics._report import parse_since

    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _out(text: str) -> None:
    """``say`` for text that may already end with its newline (a rendered table)."""
    say(text.removesuffix("\n"))


def add_parsers(commands: Any, events: Any) -> None:
    """Add ``report`` to ``commands`` (the ``switchboard`` subparsers) and ``export`` and
    ``query`` to ``events`` (``switchboard events``' subparsers); both add the global
    options to each parser they make."""
    db_help = f"the DuckDB file (default: <data-dir>/{DB_NAME})"
    export = events.add_parser(
        "export", help="copy the events stream into a DuckDB file (only what is new)",
        description="Copy the execution events stream into a DuckDB file, from the sequence "
        "after the last one exported: rerunning adds only new events. Needs the NATS server "
        "of a Switchboard (running, or its NATS_URL). Exit codes: 0 done, 2 NATS or the file "
        "cannot be used.")
    export.add_argument("--db", type=Path, help=db_help)
    export.set_defaults(func=cmd_export)

    query = events.add_parser(
        "query", help="run SQL over the exported events",
        description="Run any SQL over the DuckDB file of `switchboard events export` (opened "
        "read-only) and print the rows. Exit codes: 0 done, 1 DuckDB rejected the query, "
        "2 no such file.", epilog=_COLUMNS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    query.add_argument("sql", metavar="SQL", help="the query; the table is `events`")
    query.add_argument("--db", type=Path, help=db_help)
    query.add_argument("--json", action="store_true",
                       help="print the rows as a JSON array of objects")
    query.set_defaults(func=cmd_query, needs_topology=False)

    report = commands.add_parser(
        "report", help="outcomes, latency, tokens, cost, escalations, feedback, errors, routing",
        description="Summarise the exported events (run `switchboard events export` first): "
        "how each request ended per flow (answered, paused, refused, aborted, failed), "
        "latency per actor and per flow (p50/p95/p99), tokens and cost per model and per "
        "user, escalation rate and causes, 👍/👎 per role, errors and dead letters, router "
        "decisions by source. Exit codes: 0 done, 2 no such file.")
    report.add_argument("--db", type=Path, help=db_help)
    report.add_argument("--since", type=_since, metavar="AGE",
                        help="only events of the last 30m, 12h, 1d, 7d... (default: all)")
    report.add_argument("--json", action="store_true",
                        help="print one JSON object: section name → array of rows")
    report.set_defaults(func=cmd_report, needs_topology=False)


def db_path(args: argparse.Namespace, settings: Settings) -> Path:
    """``--db``, else ``<data-dir>/events.duckdb``."""
    return Path(args.db) if args.db else Path(settings.data_dir) / DB_NAME


def cmd_export(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    from analytics._export import export_to_file
    from analytics._schema import STORAGE_VERSION, newer_than_pinned
    from analytics.errors import AnalyticsError
    from core.errors import BrokerError
    from runtime.bus import resolve_nats_url

    db = db_path(args, settings)
    url = resolve_nats_url(settings)
    try:
        result = asyncio.run(export_to_file(settings, topology.subjects, url, db))
    except BrokerError as exc:
        warn(f"❌ {exc}. Is Switchboard running? Start it with `switchboard up`, or give "
             "its server with NATS_URL / --nats-url.")
        return EXIT_CONFIG
    except AnalyticsError as exc:
        warn(f"❌ {exc}")
        return EXIT_CONFIG
    if result.added:
        _out(f"Exported {result.added} new events (sequences {result.first_seq}-"
             f"{result.last_seq}) into {db} in {result.seconds:.1f} s; it holds "
             f"{result.total} events.")
    else:
        _out(f"Exported 0 new events: {db} is up to date (sequence {result.last_seq}, "
             f"{result.total} events).")
    if newer_than_pinned(result.storage_version):
        _out(f"⚠️ {db} is in DuckDB's {result.storage_version} storage format, which the "
             f"DuckDB shell of the {STORAGE_VERSION} line cannot open (it was created by an "
             "earlier Switchboard): copy it into a new file as docs/analytics.md shows.")
    if result.skipped:
        _out(f"⚠️ {result.skipped} events had left the stream (its age or size limit) "
             "before they could be exported.")
    return EXIT_OK


def cmd_query(args: argparse.Namespace, settings: Settings, topology: Topology | None) -> int:
    from analytics._schema import open_db
    from analytics._table import render, run_query, to_json
    from analytics.errors import AnalyticsError, QueryError

    try:
        con = open_db(db_path(args, settings), read_only=True)
    except AnalyticsError as exc:
        warn(f"❌ {exc}")
        return EXIT_CONFIG
    try:
        table = run_query(con, args.sql)
    except QueryError as exc:
        warn(f"❌ DuckDB rejected the query:\n{exc}")
        return EXIT_QUERY
    finally:
        con.close()
    _out(to_json(table.records()) if args.json else render(table, width=100))
    return EXIT_OK


def cmd_report(args: argparse.Namespace, settings: Settings, topology: Topology | None
               ) -> int:
    from analytics._report import build_report, render_report
    from analytics._schema import open_db
    from analytics._table import cell, to_json
    from analytics.errors import AnalyticsError

    db = db_path(args, settings)
    since = dt.datetime.now(dt.UTC) - args.since if args.since else None
    try:
        con = open_db(db, read_only=True)
        try:
            report = build_report(con, since)
        finally:
            con.close()
    except AnalyticsError as exc:
        warn(f"❌ {exc}")
        return EXIT_CONFIG
    if args.json:
        _out(to_json({key: table.records() for key, table in report.items()}))
        return EXIT_OK
    window = f"since {cell(since)}" if since else "all events"
    _out(render_report(report, heading=f"Switchboard report · {db} · {window}"))
    return EXIT_OK
