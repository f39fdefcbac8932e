"""The runs index in the runs bucket (keys and order: ``api._index``): each run's summary kept
up to date as its status, flow or role change, the list of hours that have runs, and the
reads a listing makes. Every call is bounded; failures are ``StoreError``.

Cost: a run's summary is written when the run is created and each time its status, flow or
role changes (three to six writes of about 200 bytes per run); a run created in an hour that
has none yet also rewrites ``hours`` (once per hour per API process). A listing reads
``hours`` (one get), then one KV watch per hour it visits, which delivers every summary of
that hour; a session's runs are one watch (``idx.*.<session>.*``) that delivers that
session's summaries only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import msgspec
import nats.errors
from nats.js.kv import KeyValue

from api._index import (
    HOURS_KEY,
    HourList,
    IndexEntry,
    entry_of,
    hour_of,
    index_key,
    with_hour,
)
from api._records import RunRecord
from api.errors import StoreError
from core.errors import BrokerError, StoreConflictError
from runtime import compare_and_set, read_entry

_log = logging.getLogger(__name__)

TIMEOUT_S = 5.0
"""Bound on one write, and on the first answer of a watch (seconds)."""
READ_TIMEOUT_S = 20.0
"""Bound on reading every summary of one hour or one session (seconds)."""

_entry_decoder = msgspec.json.Decoder(IndexEntry)
_hours_decoder = msgspec.json.Decoder(HourList)
_encoder = msgspec.json.Encoder()


class RunIndex:
    """The index of the runs in ``kv`` (the API's runs bucket).

    Args:
        kv: the runs bucket.
        ttl_s: how long the bucket keeps a value after its last write (seconds): older hours
            are dropped from ``hours``.
    """

    def __init__(self, kv: KeyValue, ttl_s: float) -> None:
        self._kv = kv
        self.ttl_s = ttl_s
        self._known_hours: set[str] = set()

    async def put(self, record: RunRecord) -> None:
        """Keep ``record``'s summary, unless a newer version of it is kept already; add the
        hour it was created in to ``hours``.

        Raises:
            StoreError: the bucket did not answer, or other writers kept winning.
        """
        entry = entry_of(record)

        def _newer(value: bytes | None) -> bytes:
            if value:
                kept = _entry_decoder.decode(value)
                if kept.version > entry.version:
                    return value
            return _encoder.encode(entry)

        await _cas(self._kv, index_key(record), _newer, f"indexing run {record.run_id}")
        hour = hour_of(record.created_at)
        if hour not in self._known_hours:
            oldest = hour_of(time.time() - self.ttl_s)
            await _cas(self._kv, HOURS_KEY, lambda v: _encoder.encode(with_hour(
                _hours_decoder.decode(v) if v else HourList(), hour, oldest)),
                "listing the hours that have runs")
            self._known_hours.add(hour)

    async def remove(self, record: RunRecord) -> None:
        """Forget ``record``'s summary (a run refused before it was queued).

        Raises:
            StoreError: the bucket did not answer.
        """
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await self._kv.delete(index_key(record))
        except (TimeoutError, nats.errors.Error) as exc:
            msg = f"removing run {record.run_id} from the index: {exc or type(exc).__name__}"
            raise StoreError(msg) from exc

    async def hours(self) -> list[str]:
        """The hours that have runs (``YYYYMMDDHH``, UTC), newest first.

        Raises:
            StoreError: the bucket did not answer.
        """
        try:
            value, _ = await read_entry(self._kv, HOURS_KEY, what="API runs bucket")
        except BrokerError as exc:
            raise StoreError(str(exc)) from exc
        return _hours_decoder.decode(value).hours if value else []

    async def of_hour(self, hour: str) -> list[IndexEntry]:
        """The summaries of the runs created in ``hour``, in no order.

        Raises:
            StoreError: the bucket did not answer.
        """
        return await self._read(f"idx.{hour}.*.*", f"the runs of hour {hour}")

    async def of_session(self, session: str) -> list[IndexEntry]:
        """The summaries of ``session``'s runs, in no order.

        Raises:
            StoreError: the bucket did not answer.
        """
        return await self._read(f"idx.*.{session}.*", f"the runs of session {session}")

    async def _read(self, keys: str, what: str) -> list[IndexEntry]:
        """Every summary under ``keys`` (a KV watch, stopped once it delivered them all)."""
        found: list[IndexEntry] = []
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                watcher = await self._kv.watch(keys, ignore_deletes=True)
                try:
                    async for entry in watcher:
                        if entry is None:
                            break  # everything stored was delivered
                        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                            found.append(_entry_decoder.decode(entry.value))
                finally:
                    with contextlib.suppress(nats.errors.Error):
                        await watcher.stop()
        except (TimeoutError, nats.errors.Error) as exc:
            msg = f"reading {what}: {exc or type(exc).__name__}"
            raise StoreError(msg) from exc
        return found


async def _cas(kv: KeyValue, key: str, change: Callable[[bytes | None], bytes],
               what: str) -> None:
    try:
        async with asyncio.timeout(4 * TIMEOUT_S):
            await compare_and_set(kv, key, change, what="API runs bucket")
    except (TimeoutError, nats.errors.Error, BrokerError, StoreConflictError) as exc:
        msg = f"{what}: {exc or type(exc).__name__}"
        raise StoreError(msg) from exc
