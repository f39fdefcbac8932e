"""The runs index, without I/O: which KV key holds a run's summary, and the order, cursor and
filters of a listing.

A run's summary lives under ``idx.<hour>.<session>.<run_id>`` in the runs bucket, ``<hour>``
being the UTC hour it was created in (``YYYYMMDDHH``): the runs of one hour are one KV watch
(``idx.<hour>.*.*``), those of one session another (``idx.*.<session>.*``), and the hours that
have runs are listed under ``hours``, so a listing newest first reads the hours it needs and
no more. Runs are ordered by ``(created_at, run_id)``, newest first; a cursor is the position
of the last run of a page.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import msgspec

from api._records import MEMORY_OWNER, RunRecord
from api._schema import RunStatus
from api._schema_query import RunSummary
from api.errors import BadRequestError

HOURS_KEY = "hours"
"""The key of the list of hours that have runs (``HourList``)."""


class IndexEntry(RunSummary, kw_only=True):
    """A run's summary as the index keeps it, with the run record's ``version`` it was taken
    from (a write of an older version never replaces a newer one)."""

    version: int = 0


class HourList(msgspec.Struct, kw_only=True):
    """The UTC hours (``YYYYMMDDHH``) that have runs, newest first."""

    hours: list[str] = []


def hour_of(moment: float) -> str:
    """The UTC hour of ``moment`` (Unix seconds) as ``YYYYMMDDHH``."""
    return time.strftime("%Y%m%d%H", time.gmtime(max(moment, 0.0)))


def index_key(record: RunRecord | RunSummary) -> str:
    """``idx.<hour>.<session>.<run_id>``: where the run's summary is kept."""
    return f"idx.{hour_of(record.created_at)}.{record.session}.{record.run_id}"


def entry_of(record: RunRecord) -> IndexEntry:
    """The summary of ``record`` (as stored: a paused run reads ``paused``)."""
    return IndexEntry(run_id=record.run_id, session=record.session, user=record.user,
                      status=record.status, flow=record.flow or None,
                      role=record.role or None, tags=list(record.tags),
                      created_at=record.created_at, client=record.client or None,
                      version=record.version)


def summary_of(entry: IndexEntry, status: RunStatus | None = None) -> RunSummary:
    """The public summary of ``entry`` (``status`` overrides the stored one)."""
    return RunSummary(run_id=entry.run_id, session=entry.session, user=entry.user,
                      status=status or entry.status, flow=entry.flow, role=entry.role,
                      tags=entry.tags, created_at=entry.created_at, client=entry.client)


def same_summary(a: RunRecord, b: RunRecord) -> bool:
    """Whether ``a`` and ``b`` have the same summary (the index needs no write)."""
    return (a.status, a.flow, a.role) == (b.status, b.flow, b.role)


def order_key(summary: RunSummary) -> tuple[float, str]:
    """The listing order, newest first when sorted in reverse."""
    return summary.created_at, summary.run_id


def with_hour(hours: HourList, hour: str, oldest: str) -> HourList:
    """``hours`` with ``hour`` added and every hour before ``oldest`` dropped (expired)."""
    kept = {h for h in hours.hours if h >= oldest} | {hour}
    return HourList(hours=sorted(kept, reverse=True))


CURSOR_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,20})?_[0-9a-f]{32}$"
"""Every cursor: ``<created_at>_<run_id>`` (Unix seconds, exactly as stored). Clients should
treat it as opaque; the OpenAPI document gives the pattern so that any cursor a client can
form is one the API takes (a position, valid whether or not a run is there)."""
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(summary: RunSummary) -> str:
    """The cursor after ``summary`` (its creation time as ``repr`` writes it, which reads
    back to the same float, and its run id)."""
    return f"{summary.created_at!r}_{summary.run_id}"


def decode_cursor(text: str) -> tuple[float, str]:
    """The position named by a cursor.

    Raises:
        BadRequestError: ``text`` does not have the form of a cursor.
    """
    if not _CURSOR.match(text):
        msg = f"cursor {text[:40]!r} is not a cursor of this API: pass `next_cursor` as it came"
        raise BadRequestError(msg)
    at, _, run_id = text.partition("_")
    return float(at), run_id


@dataclass(frozen=True, slots=True)
class RunFilter:
    """What a listing keeps: runs with one of ``statuses`` (empty: any), of ``session``,
    ``user``, ``role``, ``flow``, ``client`` (the API key's name) and ``bot`` when given
    (every API run's bot is ``api``, ``api._records.MEMORY_OWNER``), with every tag of
    ``tags``, created in ``[since, until)`` (Unix seconds), strictly after ``after`` in the
    listing order (the cursor's position)."""

    statuses: frozenset[RunStatus] = frozenset()
    session: str | None = None
    user: str | None = None
    role: str | None = None
    flow: str | None = None
    client: str | None = None
    bot: str | None = None
    tags: frozenset[str] = frozenset()
    since: float = 0.0
    until: float = float("inf")
    after: tuple[float, str] | None = None

    def keeps(self, summary: RunSummary) -> bool:
        """Whether ``summary`` belongs in the listing (``status`` included)."""
        return (self.in_window(summary)
                and (not self.statuses or summary.status in self.statuses)
                and self.session in (None, summary.session)
                and self.user in (None, summary.user)
                and self.role in (None, summary.role)
                and self.flow in (None, summary.flow)
                and self.client in (None, summary.client)
                and self.bot in (None, MEMORY_OWNER)
                and self.tags <= set(summary.tags))

    def in_window(self, summary: RunSummary) -> bool:
        """Whether ``summary`` is in the time window and after the cursor."""
        return (self.since <= summary.created_at < self.until
                and (self.after is None or order_key(summary) < self.after))

    def hours(self, known: list[str]) -> list[str]:
        """The hours of ``known`` (newest first) that may hold runs of the window."""
        newest = self.until if self.after is None else min(self.until, self.after[0])
        last = hour_of(newest) if newest != float("inf") else "9999999999"
        first = hour_of(self.since)
        return [h for h in known if first <= h <= last]
