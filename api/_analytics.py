"""``GET /v1/analytics/report?since=24h``: the events report (``analytics._report``) as JSON,
for the browser console's charts. Each request first brings the API's own DuckDB file
(``<data-dir>/api-events.duckdb``, apart from the ``events.duckdb`` of ``switchboard events
export``, so the two never wait on each other's lock) up to date from the events stream,
incrementally (``analytics.export_events``: only what is new), one export at a time per
process. DuckDB is imported on the first request, not when the API starts."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from nats.js import JetStreamContext

from api._schema_console import AnalyticsReport, ExportState, ReportSection
from api.errors import ApiError, BadRequestError, UnavailableError
from core.errors import BrokerError
from protocol import Subjects

if TYPE_CHECKING:
    from analytics import ExportResult, Table

_log = logging.getLogger(__name__)

DB_NAME = "api-events.duckdb"
"""The API's events file, in its data directory."""
DEFAULT_SINCE = "24h"
SINCE_PATTERN = r"^[1-9][0-9]{0,4}[mhd]$"
"""``since``: a whole number of minutes, hours or days (``30m``, ``24h``, ``7d``), at most
99999 of them."""
TIMEOUT_S = 60.0
"""Bound on one request: waiting for the lock, the export and the report, in seconds."""
_SINCE = re.compile(SINCE_PATTERN)
_encoder = msgspec.json.Encoder(enc_hook=str, decimal_format="number")


def _sections(report: dict[str, Table]) -> list[ReportSection]:
    from analytics import SECTIONS

    titles = {section.key: section.title for section in SECTIONS}
    return [ReportSection(key=key, title=titles.get(key, key), columns=list(table.columns),
                          rows=[list(row) for row in table.rows])
            for key, table in report.items()]


def _report_of(db: Path, start: dt.datetime) -> list[ReportSection]:
    """The report over ``db``'s events since ``start`` (blocking: run in a thread). The file
    is opened as the export opens it: DuckDB refuses two configurations of one file in a
    process."""
    from analytics import build_report, open_db

    con = open_db(db, read_only=False)
    try:
        return _sections(build_report(con, start))
    finally:
        con.close()


class AnalyticsRoutes:
    """The handler of ``GET /v1/analytics/report``.

    Args:
        js: JetStream of the deployment (the events stream is read from it).
        subjects: the deployment's names.
        db: the API's DuckDB file (created on the first request).
    """

    def __init__(self, js: JetStreamContext, subjects: Subjects, db: Path) -> None:
        self._js, self._subjects, self._db = js, subjects, db
        self._lock = asyncio.Lock()

    async def report(self, request: web.Request) -> web.Response:
        """``GET /v1/analytics/report?since=`` → ``AnalyticsReport`` (``since`` default
        ``24h``).

        Raises:
            BadRequestError: ``since`` is not ``<1-99999><m|h|d>``.
            UnavailableError: NATS or the events stream do not answer, the file is held by
                another process, or it all took longer than 60 s.
            ApiError: DuckDB failed on the file (500).
        """
        since = request.query.get("since", DEFAULT_SINCE)
        if not _SINCE.match(since):
            msg = f"`since` must be a number of minutes, hours or days (30m, 24h, 7d), " \
                  f"not {since[:32]!r}"
            raise BadRequestError(msg)
        from analytics import parse_since

        now = time.time()
        start = dt.datetime.fromtimestamp(now, dt.UTC) - parse_since(since)
        try:
            async with asyncio.timeout(TIMEOUT_S), self._lock:
                exported = await self._export()
                sections = await asyncio.to_thread(_report_of, self._db, start)
        except TimeoutError as exc:
            msg = f"the analytics report took longer than {TIMEOUT_S:.0f} s"
            raise UnavailableError(msg) from exc
        body = AnalyticsReport(
            since=since, from_time=start.timestamp(), generated_at=now,
            export=ExportState(added=exported.added, last_seq=exported.last_seq,
                               total=exported.total), sections=sections)
        return web.Response(body=_encoder.encode(body), content_type="application/json")

    async def _export(self) -> ExportResult:
        """Bring the file up to date; a file of an earlier events stream (a new NATS store)
        is the API's cache only: it is replaced.

        Raises:
            UnavailableError: NATS failed, or the file is held by another process.
            ApiError: DuckDB cannot use the file.
        """
        from analytics.errors import AnalyticsError, DatabaseBusyError, ExportError

        try:
            try:
                return await self._export_once()
            except ExportError as exc:
                _log.warning("analytics: %s; starting %s afresh", exc, self._db)
                for path in (self._db, self._db.with_name(self._db.name + ".wal")):
                    path.unlink(missing_ok=True)
                return await self._export_once()
        except (BrokerError, DatabaseBusyError) as exc:
            raise UnavailableError(str(exc)) from exc
        except AnalyticsError as exc:
            msg = f"the events file {self._db} cannot be used: {exc}"
            raise ApiError(msg) from exc

    async def _export_once(self) -> ExportResult:
        from analytics import export_events, open_db

        con: Any = open_db(self._db, read_only=False)
        try:
            return await export_events(self._js, con, self._subjects)
        finally:
            con.close()
