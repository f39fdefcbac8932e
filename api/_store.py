"""The API's JetStream state: run records and session queues in the ``<PREFIX>_API_RUNS`` KV
bucket, the files each run answered with in the ``<PREFIX>_API_FILES`` object store, and the
actors' checkpoints (read only: is a run paused?). Every call is bounded; failures are
``StoreError``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from actors.run_control import paused_run
from actors.runs import CheckpointStore
from api._index import same_summary
from api._records import RunRecord, SessionQueue
from api._run_index import RunIndex
from api.errors import StoreError
from core.errors import BrokerError, StoreConflictError
from protocol import Decoder, FileBlob, Subjects
from runtime import compare_and_set, read_entry
from runtime.bus import kv_bucket

_log = logging.getLogger(__name__)

TIMEOUT_S = 5.0
"""Bound on one KV call; a file transfer gets ``TIMEOUT_S`` plus one second per MiB."""
RUN_TTL_S = 30 * 86400.0
"""How long a run's record and files are kept after their last change: 30 days."""

_record_decoder: Decoder[RunRecord] = Decoder(RunRecord)
_queue_decoder: Decoder[SessionQueue] = Decoder(SessionQueue)
_encoder = msgspec.json.Encoder()


def decode_record(value: bytes) -> RunRecord:
    """A stored run record."""
    return _record_decoder.decode(value)


class _Missing(Exception):
    """Raised inside a compare-and-set change: the record is not there."""


@contextlib.asynccontextmanager
async def _bounded(what: str, timeout_s: float = TIMEOUT_S) -> AsyncIterator[None]:
    """Run the block within ``timeout_s`` seconds, turning NATS failures into StoreError."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except (TimeoutError, nats.errors.Error, BrokerError, StoreConflictError) as exc:
        msg = f"{what}: {exc or type(exc).__name__}"
        raise StoreError(msg) from exc


def _transfer_s(size: int) -> float:
    return TIMEOUT_S + size / (1 << 20)


SettledHook = Callable[[RunRecord], None]
"""Told of each run the moment a write settles it (once per run: the write that wins)."""


class RunStore:
    """Runs, session queues and run files of one deployment (``RunStore.open``).

    Args:
        runs: the runs bucket (keys ``run.<run id>``, ``queue.<session>``, the index's
            ``idx.<hour>.<session>.<run id>`` and ``hours``, ``idem.<digest>``).
        files: the run files object store (names ``<run id>/<path>``).
        checkpoints: the actors' checkpoints bucket.
        ttl_s: how long the runs bucket keeps a value after its last write (seconds).
    """

    def __init__(self, runs: KeyValue, files: ObjectStore, checkpoints: KeyValue, *,
                 ttl_s: float = RUN_TTL_S) -> None:
        self._runs = runs
        self._files = files
        self._checkpoints = CheckpointStore(checkpoints)
        self.index = RunIndex(runs, ttl_s)
        self.settled_hooks: list[SettledHook] = []

    @property
    def bucket(self) -> KeyValue:
        """The runs bucket (for the modules that keep their own keys in it)."""
        return self._runs

    @classmethod
    async def open(cls, js: JetStreamContext, subjects: Subjects, *, replicas: int = 1,
                   ttl_s: float = RUN_TTL_S) -> RunStore:
        """Bind to the buckets, creating the API's own when missing (file storage, ``replicas``
        copies, values expire ``ttl_s`` seconds after their last write).

        Raises:
            StoreError: JetStream does not answer within 5 s or refuses a bucket.
        """
        async with _bounded("opening the API's buckets", 2 * TIMEOUT_S):
            try:
                runs = await js.key_value(subjects.api_runs_bucket)
            except nats.js.errors.BucketNotFoundError:
                runs = await js.create_key_value(KeyValueConfig(
                    bucket=subjects.api_runs_bucket, history=1, storage=StorageType.FILE,
                    direct=True, ttl=ttl_s, replicas=replicas))
            try:
                files = await js.object_store(subjects.api_files_bucket)
            except nats.js.errors.BucketNotFoundError:
                files = await js.create_object_store(
                    subjects.api_files_bucket, config=ObjectStoreConfig(
                        bucket=subjects.api_files_bucket, storage=StorageType.FILE,
                        ttl=ttl_s, replicas=replicas,
                        description="Files the HTTP API's runs answered with"))
            checkpoints = await kv_bucket(js, subjects.checkpoints_bucket, replicas=replicas)
        return cls(runs, files, checkpoints, ttl_s=ttl_s)

    # ------------------------------------------------------------------ runs

    async def create(self, record: RunRecord) -> None:
        """Store a new run.

        Raises:
            StoreError: the bucket did not take it.
        """
        async with _bounded(f"storing run {record.run_id}"):
            await self._runs.create(f"run.{record.run_id}", _encoder.encode(record))
        try:
            await self.index.put(record)
        except StoreError as exc:  # listed once its status changes (the next index write)
            _log.warning("run %s not indexed yet: %s", record.run_id, exc)

    async def discard(self, record: RunRecord) -> None:
        """Remove a run that was never queued (refused: its session was busy).

        Raises:
            StoreError: the bucket did not answer.
        """
        await self.index.remove(record)
        async with _bounded(f"removing run {record.run_id}"):
            await self._runs.delete(f"run.{record.run_id}")

    async def get(self, run_id: str) -> RunRecord | None:
        """The run, or None when there is none with this id (or it expired).

        Raises:
            StoreError: the bucket did not answer.
        """
        async with _bounded(f"reading run {run_id}"):
            value, _ = await read_entry(self._runs, f"run.{run_id}", what="API runs bucket")
        return _record_decoder.decode(value) if value else None

    async def update(self, run_id: str, change: Callable[[RunRecord], RunRecord]
                     ) -> tuple[RunRecord, RunRecord] | None:
        """Apply ``change`` to the stored run with compare-and-set (``change`` may run more
        than once, on the newest value each time); count the write in ``version``, keep the
        index's summary up to date and tell ``settled_hooks`` when this write settled the run.

        Returns:
            ``(before, after)`` of the write that won, or None when there is no such run.

        Raises:
            StoreError: the bucket did not answer, or other writers kept winning.
        """
        seen: list[RunRecord] = []

        def _next(value: bytes | None) -> bytes:
            if not value:
                raise _Missing
            before = _record_decoder.decode(value)
            after = change(before)
            if after is not before:
                after = msgspec.structs.replace(after, version=before.version + 1)
            seen[:] = [before, after]
            return _encoder.encode(after)

        try:
            async with _bounded(f"updating run {run_id}"):
                await compare_and_set(self._runs, f"run.{run_id}", _next, what="API runs bucket")
        except _Missing:
            return None
        before, after = seen
        if not same_summary(before, after):
            try:
                await self.index.put(after)
            except StoreError as exc:  # the next change of the summary writes it again
                _log.warning("index of run %s not updated: %s", run_id, exc)
        if after.settled and not before.settled:
            for hook in self.settled_hooks:
                hook(after)
        return before, after

    async def watch(self, run_id: str) -> KeyValue.KeyWatcher:
        """A watcher of the run's record: its current value, then every change (entries whose
        ``value`` decodes with ``decode_record``). The caller stops it.

        Raises:
            StoreError: the bucket did not answer.
        """
        async with _bounded(f"watching run {run_id}"):
            return await self._runs.watch(f"run.{run_id}")

    async def queue(self, session: str) -> SessionQueue:
        """``session``'s queue as stored (empty when it has none).

        Raises:
            StoreError: the bucket did not answer.
        """
        async with _bounded(f"reading the queue of session {session}"):
            value, _ = await read_entry(self._runs, f"queue.{session}", what="API runs bucket")
        return _queue_decoder.decode(value) if value else SessionQueue()

    async def change_queue(self, session: str, change: Callable[[SessionQueue], SessionQueue]
                           ) -> SessionQueue:
        """Apply ``change`` to ``session``'s queue with compare-and-set; returns the new queue.

        Raises:
            StoreError: the bucket did not answer, or other writers kept winning.
        """
        result: list[SessionQueue] = []

        def _next(value: bytes | None) -> bytes:
            queue = _queue_decoder.decode(value) if value else SessionQueue()
            result[:] = [change(queue)]
            return _encoder.encode(result[0])

        async with _bounded(f"updating the queue of session {session}"):
            await compare_and_set(self._runs, f"queue.{session}", _next,
                                  what="API runs bucket")
        return result[0]

    # ------------------------------------------------------------------ files

    async def put_files(self, run_id: str, files: Iterable[FileBlob]) -> None:
        """Keep the files a run answered with, under ``<run id>/<name>``.

        Raises:
            StoreError: the object store did not take one.
        """
        for blob in files:
            async with _bounded(f"storing file {blob.name} of run {run_id}",
                                _transfer_s(len(blob.data))):
                await self._files.put(f"{run_id}/{blob.name}", blob.data)

    async def get_file(self, run_id: str, path: str) -> bytes | None:
        """A file run ``run_id`` answered with, or None.

        Raises:
            StoreError: the object store did not answer.
        """
        try:
            async with _bounded(f"reading file {path} of run {run_id}", _transfer_s(8 << 20)):
                result = await self._files.get(f"{run_id}/{path}")
        except StoreError as exc:
            if isinstance(exc.__cause__, nats.js.errors.NotFoundError):
                return None
            raise
        return bytes(result.data or b"")

    # ------------------------------------------------------------------ checkpoints

    async def paused(self, session: str, run_id: str) -> bool:
        """Whether ``run_id`` is the paused run of ``session`` (the agentic loop asked a
        question and waits for the next message of the session).

        Raises:
            StoreError: the checkpoints bucket did not answer.
        """
        async with _bounded(f"reading the checkpoint of session {session}"):
            checkpoint = await paused_run(self._checkpoints, session)
        return checkpoint is not None and checkpoint.request_id == run_id
