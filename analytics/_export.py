"""``switchboard events export``: copy the events stream into the DuckDB file, incrementally.

An export reads the ``<PREFIX>_EVENTS`` stream from the sequence after the last one exported
(``export_state``) with an ephemeral pull consumer (no acks, in memory, deleted at the end and
by the server after a minute without use), decodes each message with the protocol's decoder,
and inserts it in batches, each batch in one transaction with the new last sequence. It
stops once it has caught up with the stream's last sequence as it was when it began (or the
consumer says nothing is pending), so it ends while Switchboard keeps publishing; the next
export takes what came since. The stream sequence is the primary key: an export cut short
(a crash between a batch's insert and the next) cannot duplicate a row.

DuckDB inserts a batch from a newline-delimited JSON file it reads itself (``read_json``),
about 400 000 rows a second here against about 1 200 with ``executemany``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from analytics._schema import (
    COLUMNS,
    EVENTS_TABLE,
    last_exported,
    open_db,
    storage_version,
)
from analytics.errors import ExportError
from core.errors import BrokerError, NotRunningError
from protocol import ExecutionEvent, Subjects, event_decoder
from runtime.bus import connect

if TYPE_CHECKING:
    from core.config import Settings

_log = logging.getLogger(__name__)

BATCH = 1000
"""Messages per pull request and per insert."""
FETCH_TIMEOUT_S = 5.0
"""Longest wait for one batch; nothing within it ends the export."""
CONSUMER_INACTIVE_S = 60.0
"""The server deletes the export's consumer after this long without a pull (if the export
died before deleting it)."""

_ERROR_KINDS = frozenset({"retry", "dead_letter", "undecodable"})


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What one export did.

    Attributes:
        added: rows inserted by this export.
        first_seq: first stream sequence inserted (0 when none).
        last_seq: the last exported sequence now recorded in the file (0: none yet).
        total: rows in the ``events`` table afterwards.
        skipped: sequences after the previous export the stream no longer held (removed by
            its age or size limits, 7 days / 1 GiB by default) and so could not be exported.
        seconds: how long the export took.
        storage_version: the file's DuckDB storage format (``_schema.storage_version``).
    """

    added: int
    first_seq: int
    last_seq: int
    total: int
    skipped: int
    seconds: float
    storage_version: str = ""


class _Row(msgspec.Struct, kw_only=True):
    """One ``events`` row as written to the batch file; ``time`` in Unix seconds."""

    seq: int
    time: float
    actor: str | None
    kind: str | None
    session: str | None
    request_id: str | None
    step: str | None
    flow: str | None
    role: str | None
    user_id: str | None
    model: str | None
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None
    latency_ms: float | None
    source: str | None
    value: int | None
    error: str | None
    detail: str | None
    trace_id: str | None
    span_id: str | None
    parent_span_id: str | None
    event_id: str | None
    pid: int | None
    subject: str
    raw: str


_AS_READ = {"time": ("DOUBLE", "to_timestamp(time)"), "raw": ("VARCHAR", "CAST(raw AS JSON)")}
"""Columns read from a batch file as another type than their own, and the conversion."""


def _insert_sql() -> str:
    """``INSERT OR IGNORE`` of the rows of a batch file (its path is the one parameter)."""
    read, select = [], []
    for name, kind, _ in COLUMNS:
        read_type, expression = _AS_READ.get(name, (kind.split()[0], name))
        read.append(f"{name}: '{read_type}'")
        select.append(expression)
    return (f"INSERT OR IGNORE INTO {EVENTS_TABLE} SELECT {', '.join(select)} "
            f"FROM read_json(?, format = 'newline_delimited', columns = {{{', '.join(read)}}})")


_INSERT = _insert_sql()
_encoder = msgspec.json.Encoder()


def _text(value: str) -> str | None:
    return value or None


def _usage(event: ExecutionEvent) -> tuple[int | None, int | None, float | None]:
    """Tokens in, out and cost: NULL all three unless the event reports a usage (a model
    call whose provider counted; an embedding call reports none)."""
    if event.prompt_tokens or event.completion_tokens or event.cost_usd:
        return event.prompt_tokens, event.completion_tokens, event.cost_usd
    return None, None, None


def event_row(seq: int, subject: str, data: bytes, stored_at: float) -> _Row:
    """The ``events`` row of one stream message.

    Args:
        seq: its stream sequence.
        subject: its subject (``<prefix>.event.<actor>.<kind>.<session>``).
        data: its bytes, an ExecutionEvent in JSON.
        stored_at: when the stream stored it (Unix seconds): the time of an event that does
            not say (``at`` 0) or cannot be decoded.

    Returns:
        The row; bytes that are not an ExecutionEvent give kind ``undecodable`` with the
        decoder's error, actor and session from the subject, and the bytes in ``raw``.
        Empty text is NULL, and so is a number the event does not carry (the wire leaves
        it 0): tokens and cost unless the event reports a usage, a duration of 0 (a
        measured one never is), ``value`` but on ``feedback``, ``pid`` 0.
    """
    text = data.decode("utf-8", errors="replace")
    try:
        event = event_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return _undecodable(seq, subject, text, stored_at, exc)
    kind = event.kind
    failed = kind in _ERROR_KINDS or kind.endswith(("_error", "_failed"))
    error = (event.detail or kind) if failed else None
    tokens_in, tokens_out, cost_usd = _usage(event)
    return _Row(
        seq=seq, time=event.at or stored_at, actor=_text(event.actor), kind=_text(kind),
        session=_text(event.session), request_id=_text(event.request_id),
        step=_text(event.step), flow=_text(event.flow), role=_text(event.role),
        user_id=_text(event.user_id), model=_text(event.model),
        tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost_usd,
        latency_ms=event.duration_ms or None, source=_text(event.source),
        value=event.value if event.value or kind == "feedback" else None, error=error,
        detail=_text(event.detail), trace_id=_text(event.trace_id),
        span_id=_text(event.span_id), parent_span_id=_text(event.parent_span_id),
        event_id=_text(event.event_id), pid=event.pid or None, subject=subject, raw=text,
    )


def _undecodable(seq: int, subject: str, text: str, stored_at: float,
                 exc: Exception) -> _Row:
    tokens = subject.split(".")
    actor, session = (tokens[2], ".".join(tokens[4:])) if len(tokens) >= 5 else ("", "")
    try:
        msgspec.json.decode(text)
    except msgspec.DecodeError:
        text = _encoder.encode(text).decode()  # not JSON at all: kept as a JSON string
    return _Row(
        seq=seq, time=stored_at, actor=_text(actor), kind="undecodable",
        session=_text(session), request_id=None, step=None, flow=None, role=None,
        user_id=None, model=None, tokens_in=None, tokens_out=None, cost_usd=None,
        latency_ms=None, source=None, value=None, error=f"not an ExecutionEvent: {exc}"[:500],
        detail=None, trace_id=None, span_id=None, parent_span_id=None, event_id=None, pid=None,
        subject=subject, raw=text,
    )


class _Batches:
    """Writes batches of rows, each in one transaction with the new last sequence."""

    def __init__(self, con: duckdb.DuckDBPyConnection, stream: str,
                 created: dt.datetime | None, workdir: Path) -> None:
        self.con, self.stream, self.created = con, stream, created
        self.file = workdir / "batch.ndjson"
        self.added = 0

    def write(self, rows: list[_Row], last_seq: int) -> None:
        """Insert ``rows`` (none: only record ``last_seq``) and record ``last_seq``."""
        con = self.con
        result = None
        if rows:
            self.file.write_bytes(b"\n".join(_encoder.encode(row) for row in rows))
        con.execute("BEGIN TRANSACTION")
        try:
            if rows:
                result = con.execute(_INSERT, [str(self.file)]).fetchone()
            con.execute("INSERT OR REPLACE INTO export_state VALUES (?, ?, now(), ?)",
                        [self.stream, last_seq, self.created])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self.added += int(result[0]) if result else 0


async def export_events(js: JetStreamContext, con: duckdb.DuckDBPyConnection,
                        subjects: Subjects, *, batch: int = BATCH,
                        fetch_timeout_s: float = FETCH_TIMEOUT_S) -> ExportResult:
    """Copy the events stream's messages after the last exported sequence into ``con``.

    Args:
        js: JetStream of the server that holds the ``<PREFIX>_EVENTS`` stream.
        con: the events database, open for writing (``open_db``).
        subjects: names of the stream and its subjects (``Topology.subjects``).
        batch: messages per pull request and per insert transaction.
        fetch_timeout_s: longest wait, in seconds, for one batch.

    Returns:
        What was exported (``ExportResult``).

    Raises:
        NotRunningError: the server has no events stream (Switchboard never ran on it).
        BrokerError: NATS failed or timed out.
        ExportError: the file holds another stream's events, or those of an earlier stream of
            that name (the stream was recreated: a new NATS store): export into a new file.
    """
    started = time.monotonic()
    stream = subjects.events_stream
    recorded = last_exported(con)
    if recorded is not None and recorded.stream != stream:
        msg = (f"this file holds the events of stream {recorded.stream}, not {stream}: "
               "export into another file (--db)")
        raise ExportError(msg)
    last = recorded.last_seq if recorded is not None else 0
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError as exc:
        msg = f"no {stream} stream on this server: has Switchboard run against it?"
        raise NotRunningError(msg) from exc
    except (TimeoutError, nats.errors.Error) as exc:
        msg = f"cannot read the {stream} stream: {exc or type(exc).__name__}"
        raise BrokerError(msg) from exc
    state = info.state
    if recorded is not None and (state.last_seq < last
                                 or _recreated(recorded.stream_created, info.created)):
        msg = (f"this file holds events of an earlier {stream} stream (up to sequence {last}): "
               "the stream was recreated since (a new NATS store?). Export into a new file "
               "(--db)")
        raise ExportError(msg)
    first_added = 0
    with tempfile.TemporaryDirectory(prefix="sb-export-") as workdir:
        batches = _Batches(con, stream, info.created, Path(workdir))
        if state.last_seq > last and state.messages:
            first_added, last = await _copy(js, subjects, batches, start=last + 1,
                                            target=state.last_seq, batch=batch,
                                            timeout_s=fetch_timeout_s)
        elif state.last_seq > last:  # everything after ``last`` has aged out
            batches.write([], state.last_seq)
            last = state.last_seq
    total_row = con.execute(f"SELECT count(*) FROM {EVENTS_TABLE}").fetchone()
    previous = recorded.last_seq if recorded is not None else 0
    return ExportResult(
        added=batches.added, first_seq=first_added, last_seq=last,
        total=int(total_row[0]) if total_row else 0,
        skipped=max(0, last - previous - batches.added), seconds=time.monotonic() - started,
        storage_version=storage_version(con),
    )


def _recreated(recorded: dt.datetime | None, created: dt.datetime | None) -> bool:
    """Whether the stream's creation time differs from the one recorded (to the millisecond:
    the file keeps microseconds, the server says nanoseconds)."""
    if recorded is None or created is None:
        return False
    return abs((recorded - created).total_seconds()) > 0.001


async def _copy(js: JetStreamContext, subjects: Subjects, batches: _Batches, *, start: int,
                target: int, batch: int, timeout_s: float) -> tuple[int, int]:
    """Pull from ``start`` until ``target`` (or nothing is pending); returns the first
    sequence written and the last one recorded."""
    stream = subjects.events_stream
    name = f"sb-export-{uuid.uuid4().hex[:12]}"
    config = ConsumerConfig(
        name=name, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
        ack_policy=AckPolicy.NONE, filter_subject=subjects.events_all,
        inactive_threshold=CONSUMER_INACTIVE_S, mem_storage=True, num_replicas=1,
    )
    first, last = 0, start - 1
    try:
        await js.add_consumer(stream, config=config)
        sub = await js.pull_subscribe_bind(consumer=name, stream=stream)
    except (TimeoutError, nats.errors.Error) as exc:
        msg = f"cannot read the {stream} stream: {exc or type(exc).__name__}"
        raise BrokerError(msg) from exc
    try:
        while last < target:
            try:
                msgs: list[Msg] = await sub.fetch(batch, timeout=timeout_s)
            except TimeoutError:
                _log.info("nothing more delivered after sequence %d (target %d)", last, target)
                break
            rows = []
            pending = 1
            for message in msgs:
                meta = message.metadata
                seq, pending = meta.sequence.stream, meta.num_pending
                rows.append(event_row(seq, message.subject, message.data,
                                      meta.timestamp.timestamp()))
            if not rows:
                continue
            first = first or rows[0].seq
            last = rows[-1].seq
            batches.write(rows, last)
            if pending == 0:
                break
    except nats.errors.Error as exc:
        msg = f"reading the {stream} stream failed after sequence {last}: {exc}"
        raise BrokerError(msg) from exc
    finally:
        await _drop(js, sub, stream, name)
    return first, last


async def _drop(js: JetStreamContext, sub: JetStreamContext.PullSubscription, stream: str,
                name: str) -> None:
    try:
        await sub.unsubscribe()
        await js.delete_consumer(stream, name)
    except (TimeoutError, nats.errors.Error) as exc:  # it expires on its own
        _log.info("export consumer %s not deleted (%s); the server drops it after %.0f s",
                  name, exc, CONSUMER_INACTIVE_S)


async def export_to_file(settings: Settings, subjects: Subjects, nats_url: str,
                         db: Path) -> ExportResult:
    """``export_events`` from the server at ``nats_url`` into the DuckDB file ``db`` (created
    with its tables when missing, once the server answers: a failed export leaves no empty
    database behind for ``report`` to read as "no events").

    Raises:
        BrokerError: NATS cannot be reached within 3 s, or failed.
        NotRunningError, ExportError: as ``export_events``.
        DatabaseBusyError, AnalyticsError: as ``open_db``.
    """
    nc = await connect(nats_url, name="events-export", settings=settings, reconnect=False,
                       timeout_s=3.0)
    new = not await asyncio.to_thread(db.exists)
    try:
        con = open_db(db, read_only=False)
        try:
            return await export_events(nc.jetstream(timeout=10), con, subjects)
        finally:
            con.close()
    except BaseException:
        if new:  # nothing was exported into it: no database rather than an empty one
            for path in (db, db.with_name(db.name + ".wal")):
                path.unlink(missing_ok=True)
        raise
    finally:
        await nc.close()
