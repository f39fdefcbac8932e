"""Reading runs back: lists of runs newest first through the runs index (``api._index``), a
session's state, and waiting for a run to settle."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
import nats.errors

from api import _records as rec
from api._index import IndexEntry, RunFilter, encode_cursor, order_key, summary_of
from api._runs import RunService
from api._schema import RunStatus, RunView
from api._schema_query import RunPage, RunSummary, SessionView
from api._store import decode_record
from api.errors import NotFoundError

_log = logging.getLogger(__name__)

MAX_WAIT_S = 120.0
"""Longest ``GET /v1/runs/{run_id}/wait`` holds a request (seconds)."""


class RunQuery:
    """Lists, session states and waits over ``runs``' store."""

    def __init__(self, runs: RunService) -> None:
        self.runs = runs
        self.store = runs.store

    async def page(self, keep: RunFilter, limit: int) -> RunPage:
        """Up to ``limit`` runs that ``keep`` keeps, newest first, and the cursor of the
        next page (None: no more). Visits the hours of the window newest first and stops
        once the page is full (``api._run_index`` gives the cost).

        Raises:
            StoreError: the runs bucket did not answer.
        """
        found: list[RunSummary] = []
        if keep.session is not None:
            found = await self._take(await self.store.index.of_session(keep.session), keep,
                                     limit + 1)
        else:
            for hour in keep.hours(await self.store.index.hours()):
                found += await self._take(await self.store.index.of_hour(hour), keep,
                                          limit + 1 - len(found))
                if len(found) > limit:
                    break
        more = len(found) > limit
        return RunPage(runs=found[:limit],
                       next_cursor=encode_cursor(found[limit - 1]) if more else None)

    async def _take(self, entries: list[IndexEntry], keep: RunFilter, wanted: int
                    ) -> list[RunSummary]:
        """The first ``wanted`` of ``entries`` (newest first) that ``keep`` keeps; a paused
        run whose question was answered counts as ``done`` (as ``GET /v1/runs/{run_id}``)."""
        taken: list[RunSummary] = []
        for entry in sorted(entries, key=order_key, reverse=True):
            if len(taken) >= wanted:
                break
            if not keep.in_window(entry):
                continue
            summary = summary_of(entry, await self._status(entry))
            if keep.keeps(summary):
                taken.append(summary)
        return taken

    async def _status(self, entry: IndexEntry) -> RunStatus:
        if entry.status is RunStatus.PAUSED and not await self.store.paused(
                entry.session, entry.run_id):
            return RunStatus.DONE
        return entry.status

    async def session(self, session: str, owner: str | None = None) -> SessionView:
        """``session``'s state: its active run, the runs waiting, its newest run; with
        ``owner``, only a session API key ``owner`` started.

        Raises:
            NotFoundError: the session has no run kept (or it is another key's).
            StoreError: the runs bucket did not answer.
        """
        queue = await self.store.queue(session)
        entries = await self.store.index.of_session(session)
        if owner is not None and queue.client != owner:
            entries = []
            queue = rec.SessionQueue()
        if not entries and not queue.active and not queue.waiting:
            msg = f"no session {session}"
            raise NotFoundError(msg)
        last = max(entries, key=order_key) if entries else None
        busy = rec.busy(queue, self.runs.clock(), self.runs.stale_s)
        return SessionView(
            session=session, busy=busy, active=queue.active if busy else None,
            queued=list(queue.waiting),
            last=summary_of(last, await self._status(last)) if last else None)

    async def wait(self, run_id: str, timeout_s: float, owner: str | None = None) -> RunView:
        """The run once it settles (``done``, ``failed``, ``aborted``, ``paused``), or as it
        is after ``timeout_s`` seconds (at most ``MAX_WAIT_S``).

        Raises:
            NotFoundError: no such run (of ``owner``).
            StoreError: the runs bucket did not answer.
        """
        record = await self.runs.get(run_id, owner)
        if not record.settled and timeout_s > 0:
            watcher = await self.store.watch(run_id)
            try:
                async with asyncio.timeout(min(timeout_s, MAX_WAIT_S)):
                    async for entry in watcher:
                        if entry is None or not entry.value:
                            continue
                        with contextlib.suppress(msgspec.DecodeError,
                                                 msgspec.ValidationError):
                            record = decode_record(entry.value)
                        if record.settled:
                            break
            except TimeoutError:
                _log.debug("wait for run %s: timed out", run_id)
            finally:
                with contextlib.suppress(nats.errors.Error):
                    await watcher.stop()
        return record.view(await self.runs.current_status(record))
