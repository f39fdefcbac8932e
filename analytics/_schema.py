"""The DuckDB file of exported events: the ``events`` table, the ``export_state`` table, and
opening the file.

Table ``events``: one row per execution event of the ``<PREFIX>_EVENTS`` stream, the fields
of ``protocol.ExecutionEvent`` under the names of ``COLUMNS`` (which says what each means; the
file keeps those meanings as column comments: ``SELECT column_name, comment FROM
duckdb_columns() WHERE table_name = 'events'``). A column is NULL where it does not apply to
the event (text left empty, a number the event does not carry: ``_export.event_row``), so
``avg()`` and ``count(column)`` count only the events that measure it. ``seq`` (the stream
sequence) is the primary key, so exporting a sequence twice cannot duplicate a row. Columns:
``seq``, ``time``, ``actor``, ``kind``, ``session``, ``request_id``, ``step``, ``flow``,
``role``, ``user_id``, ``model``, ``tokens_in``, ``tokens_out``, ``cost_usd``, ``latency_ms``
(milliseconds), ``source``, ``value``, ``error``, ``detail``, ``trace_id``, ``span_id``,
``parent_span_id``, ``event_id``, ``pid``, ``subject``, ``raw``.

Table ``export_state``: ``stream`` (the events stream's name, primary key), ``last_seq`` (the
last sequence exported), ``exported_at``, ``stream_created`` (when the server created the
stream: a recreated stream numbers from 1 again); written in the same transaction as each
batch.

The file is written in the storage format of DuckDB ``STORAGE_VERSION`` (1.5), not in the
newest one the ``duckdb`` package could write, so that the DuckDB command-line shell of that
release line (``duckdb-cli`` on PyPI) opens it too. The format is chosen when the file is
created: a file created in a newer format stays in it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path
from typing import NamedTuple

import duckdb

from analytics.errors import AnalyticsError, DatabaseBusyError, NoDatabaseError

_log = logging.getLogger(__name__)

EVENTS_TABLE = "events"

STORAGE_VERSION = "v1.5.0"
"""The DuckDB storage format new files are written in (DuckDB's ``storage_compatibility_version``
setting): the DuckDB 1.5 shell reads it (file version 64-68; DuckDB 2.0's own format, 69, it
refuses), and the ``duckdb`` package pinned in pyproject.toml (2.0) still writes it."""

COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("seq", "BIGINT PRIMARY KEY", "the event's sequence in the events stream"),
    ("time", "TIMESTAMPTZ NOT NULL", "when it happened (ExecutionEvent.at, the emitting "
     "process's clock)"),
    ("actor", "VARCHAR", "the actor role that emitted it (classifier, python_coder, ...)"),
    ("kind", "VARCHAR", "what happened (handled, model_call, classified, escalation, ...)"),
    ("session", "VARCHAR", "the conversation (discord-<channel>, terminal-<user>)"),
    ("request_id", "VARCHAR", "the person's message the step worked for: joins one "
     "request's events"),
    ("step", "VARCHAR", "the message type handled (chat_message, turn_request, ...)"),
    ("flow", "VARCHAR", "classified: the flow chosen; answered: the answer's (simple, "
     "sequential, branch, breakglass)"),
    ("role", "VARCHAR", "classified: the agent role chosen; answered: the role that answered; "
     "feedback: the role rated"),
    ("user_id", "VARCHAR", "classified: who asked; feedback: who reacted"),
    ("model", "VARCHAR", "the litellm model (model_call, turn, escalation, fallback, ...)"),
    ("tokens_in", "INTEGER", "prompt tokens (model_call); NULL when the event reports no "
     "usage"),
    ("tokens_out", "INTEGER", "completion tokens (model_call); NULL when the event reports no "
     "usage"),
    ("cost_usd", "DOUBLE", "cost in US dollars as litellm prices it (model_call; 0 for a "
     "free model); NULL when the event reports no usage"),
    ("latency_ms", "DOUBLE", "duration in milliseconds (handled: the whole step; "
     "model_call, model_error, tool_call: the call); NULL for events that time nothing"),
    ("source", "VARCHAR", "what decided (classified: rule, case, model, keywords, breakglass, "
     "resume; tier_chosen: role, task_type, case, ...; escalation, paused: the cause)"),
    ("value", "INTEGER", "feedback: the confidence change, +15 for thumbs up, -20 for "
     "thumbs down; NULL on other events"),
    ("error", "VARCHAR", "the error text on error kinds (retry, dead_letter, *_error, "
     "*_failed, undecodable); NULL otherwise"),
    ("detail", "VARCHAR", "free text (ExecutionEvent.detail); answered: NULL for an answer, "
     "else the error code or silent"),
    ("trace_id", "VARCHAR", "the OpenTelemetry trace id"),
    ("span_id", "VARCHAR", "the span the event reports (handled, model_call, tool_call)"),
    ("parent_span_id", "VARCHAR", "the span the event happened in"),
    ("event_id", "VARCHAR", "the event's own id"),
    ("pid", "INTEGER", "process id of the emitter (NULL: not known)"),
    ("subject", "VARCHAR", "the NATS subject, <prefix>.event.<actor>.<kind>.<session>"),
    ("raw", "JSON", "the event as published (JSON), so nothing is lost"),
)
"""``events``' columns in order: (name, DuckDB type, meaning)."""

COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _, _ in COLUMNS)

_DDL = (
    f"CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (\n    "
    + ",\n    ".join(f"{name} {kind}" for name, kind, _ in COLUMNS)
    + "\n)",
    """CREATE TABLE IF NOT EXISTS export_state (
    stream VARCHAR PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    exported_at TIMESTAMPTZ NOT NULL,
    stream_created TIMESTAMPTZ
)""",
)


def open_db(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the events database; for writing, create the file and its tables if missing.

    Args:
        path: the DuckDB file.
        read_only: open for queries only (several processes may read at once); else a new
            file is created in the storage format of ``STORAGE_VERSION``.

    Raises:
        NoDatabaseError: ``read_only`` and the file does not exist.
        DatabaseBusyError: another process holds the file's lock.
        AnalyticsError: DuckDB cannot open it (not a DuckDB file, ...).
    """
    if read_only and not path.is_file():
        msg = (f"no events database at {path}: create it with `switchboard events export` "
               "(it copies the events stream of the running Switchboard into that file)")
        raise NoDatabaseError(msg)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    config: dict[str, str | bool | int | float | list[str]] = (
        {} if read_only else {"storage_compatibility_version": STORAGE_VERSION})
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            msg = f"{path} is in use by another process (an export still running?): {exc}"
            raise DatabaseBusyError(msg) from exc
        msg = f"cannot open {path}: {exc}"
        raise AnalyticsError(msg) from exc
    except duckdb.Error as exc:
        msg = f"cannot open {path}: {exc}"
        raise AnalyticsError(msg) from exc
    if not read_only:
        _create(con)
    return con


def _create(con: duckdb.DuckDBPyConnection) -> None:
    """The tables (if missing) and the column comments."""
    for statement in _DDL:
        con.execute(statement)
    con.execute(f"COMMENT ON TABLE {EVENTS_TABLE} IS 'one row per execution event of the "
                "events stream (switchboard events export)'")
    for name, _, meaning in COLUMNS:
        con.execute(f"COMMENT ON COLUMN {EVENTS_TABLE}.{name} IS "
                    + "'" + meaning.replace("'", "''") + "'")


class Exported(NamedTuple):
    """What the file says of the last export: the stream, its last sequence exported, when
    the server created that stream (None if it did not say)."""

    stream: str
    last_seq: int
    stream_created: dt.datetime | None


def last_exported(con: duckdb.DuckDBPyConnection) -> Exported | None:
    """The file's ``export_state``, or None before any export."""
    row = con.execute("SELECT stream, last_seq, stream_created FROM export_state "
                      "ORDER BY exported_at DESC LIMIT 1").fetchone()
    return Exported(str(row[0]), int(row[1]), row[2]) if row else None


def storage_version(con: duckdb.DuckDBPyConnection) -> str:
    """The storage format of the file ``con`` opened, as DuckDB names it (``v1.5.0+``: files
    DuckDB 1.5 and later read); "" when DuckDB does not say."""
    row = con.execute("SELECT tags['storage_version'] FROM duckdb_databases() "
                      "WHERE database_name = current_database()").fetchone()
    return str(row[0]) if row and row[0] else ""


def newer_than_pinned(version: str) -> bool:
    """Whether a file in storage format ``version`` (``storage_version``'s ``v2.0.0+``) is
    newer than ``STORAGE_VERSION``, so that the DuckDB shell of that line cannot open it."""
    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", text)[:3])
    return bool(version) and parts(version) > parts(STORAGE_VERSION)
