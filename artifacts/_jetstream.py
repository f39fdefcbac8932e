"""Artifacts in a JetStream object store bucket (the default backend,
docs/design.md#workspaces-and-artifacts).

One bucket per deployment, ``<PREFIX>_ARTIFACTS``; one object per workspace file, named
``<session>/<path>``. nats-py (2.16, ``nats/js/object_store.py``) splits an object into 128 KiB
chunks on ``$O.<bucket>.C.<nuid>`` and keeps its metadata (size, SHA-256 digest, headers) on
``$O.<bucket>.M.<base64url(name)>``, so ``/`` in names is fine. A deleted object leaves a
"deleted" metadata record behind; this backend purges that record too, so nothing of a deleted
session remains.

Which files a session has is kept beside the bucket, in the KV bucket
``<PREFIX>_ARTIFACT_INDEX`` (``protocol.ArtifactManifest`` under the session's key, updated
by compare-and-set after each put and before each delete, the changes of concurrent calls
written together): the object store's metadata
subjects carry the whole name base64-encoded in one token, so the store itself can only list
a session by reading the metadata of every object of the bucket — about 33 µs of CPU per
object, which grew with every run ever synced. Objects stored before the index existed are
indexed once, by the first store that opens the bucket (the key ``index.v1`` marks it done);
deleting a session still scans the bucket, to leave nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ObjectInfo, ObjectMeta, ObjectStoreConfig, StorageType
from nats.js.kv import KeyValue
from nats.js.object_store import OBJ_META_PRE_TEMPLATE, ObjectStore

from artifacts._store import (
    ArtifactInfo,
    ArtifactStore,
    check_path,
    check_session,
    sha256_hex,
)
from core.errors import ArtifactError, ArtifactNotFoundError, BrokerError, StoreConflictError
from protocol import ArtifactEntry, ArtifactManifest, encoder, manifest_decoder
from runtime import compare_and_set, read_entry
from runtime.bus import kv_bucket

T = TypeVar("T")

_log = logging.getLogger(__name__)

API_TIMEOUT_S = 10.0
"""Bound of one metadata call (get info, delete, the whole listing), seconds."""
SECONDS_PER_MIB = 1.0
"""Extra time allowed per MiB moved by a put or get, on top of ``API_TIMEOUT_S``."""
_MTIME_HEADER = "Sb-Mtime-Ns"


def transfer_timeout(size: int) -> float:
    """Seconds allowed to move ``size`` bytes: 10 s plus 1 s per MiB."""
    return API_TIMEOUT_S + SECONDS_PER_MIB * size / (1 << 20)


@asynccontextmanager
async def _translated(what: str, timeout_s: float) -> AsyncIterator[None]:
    """Bound a block in time and turn nats errors into ``ArtifactError``."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except TimeoutError as exc:
        msg = f"the JetStream object store did not answer within {timeout_s:.0f} s ({what})"
        raise ArtifactError(msg) from exc
    except nats.errors.Error as exc:
        msg = f"the JetStream object store failed ({what}): {exc or type(exc).__name__}"
        raise ArtifactError(msg) from exc


def _merged(found: dict[str, ArtifactEntry]
            ) -> Callable[[dict[str, ArtifactEntry]], dict[str, ArtifactEntry]]:
    """A manifest change that adds ``found`` (entries written since win)."""
    return lambda current: {**found, **current}


def _files(value: bytes | None) -> dict[str, ArtifactEntry]:
    """The files of a stored manifest (none for a missing key)."""
    return dict(manifest_decoder.decode(value).files) if value else {}


def _applied(files: dict[str, ArtifactEntry], changes: dict[str, ArtifactEntry | None]
             ) -> dict[str, ArtifactEntry]:
    """``files`` with ``changes`` made: an entry sets its path, None removes it."""
    updated = {**files, **{p: e for p, e in changes.items() if e is not None}}
    for path in (p for p, e in changes.items() if e is None):
        updated.pop(path, None)
    return updated


def _entry(info: ObjectInfo) -> ArtifactEntry:
    return ArtifactEntry(size=info.size or 0, sha256=_sha256_hex(info),
                         mtime_ns=_mtime_ns(info))


def _sha256_hex(info: ObjectInfo) -> str:
    digest = (info.digest or "").removeprefix("SHA-256=").removeprefix("sha-256=")
    return base64.urlsafe_b64decode(digest).hex() if digest else ""


def _mtime_ns(info: ObjectInfo) -> int:
    values = (info.headers or {}).get(_MTIME_HEADER) or ["0"]
    value = values[0] if isinstance(values, list) else values
    try:
        return int(value)
    except ValueError:
        return 0


_INDEXED_KEY = "index.v1"
"""Set in the index bucket once the objects stored before the index are indexed (sessions are
subject tokens, so no session key contains a dot)."""


class JetStreamArtifactStore(ArtifactStore):
    """Artifacts as objects of one JetStream object store bucket, listed through a manifest
    per session (module docstring)."""

    def __init__(self, js: JetStreamContext, store: ObjectStore, bucket: str,
                 index: KeyValue) -> None:
        self._js = js
        self._store = store
        self._index = index
        self.bucket = bucket
        self._pending: dict[str, tuple[dict[str, ArtifactEntry | None], asyncio.Future[None]]]
        self._pending = {}
        self._writing = asyncio.Lock()
        self._commits: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, *, replicas: int = 1,
                   index_bucket: str | None = None) -> JetStreamArtifactStore:
        """Bind to ``bucket`` and its index (``index_bucket``, default ``<bucket>_INDEX``),
        creating them (file storage, ``replicas`` copies) when missing; index what the bucket
        held before the index existed.

        Raises:
            ArtifactError: JetStream is unavailable or does not answer within 10 s.
        """
        async with _translated(f"open bucket {bucket}", API_TIMEOUT_S):
            try:
                store = await js.object_store(bucket)
            except nats.js.errors.BucketNotFoundError:
                config = ObjectStoreConfig(bucket=bucket, storage=StorageType.FILE,
                                           replicas=replicas,
                                           description="Switchboard workspaces")
                store = await js.create_object_store(bucket, config=config)
                _log.info("created object store bucket %s (%d replicas)", bucket, replicas)
            index = await kv_bucket(js, index_bucket or f"{bucket}_INDEX", replicas=replicas)
        opened = cls(js, store, bucket, index)
        await opened._index_older_objects()
        return opened

    async def _index_older_objects(self) -> None:
        value, _ = await self._guarded(read_entry(self._index, _INDEXED_KEY, what="index"))
        if value is not None:
            return
        manifests: dict[str, dict[str, ArtifactEntry]] = {}
        for info in await self._infos():
            session, _, path = info.name.partition("/")
            if path and not info.deleted:
                manifests.setdefault(session, {})[path] = _entry(info)
        for session, files in manifests.items():
            await self._change(session, _merged(files))
        async with _translated("index", API_TIMEOUT_S):
            await self._index.put(_INDEXED_KEY, b"1")
        if manifests:
            _log.info("indexed the artifacts of %d sessions in %s", len(manifests), self.bucket)

    async def _guarded(self, call: Awaitable[T]) -> T:
        """``call`` with the index's errors as ``ArtifactError``."""
        try:
            return await call
        except (BrokerError, StoreConflictError) as exc:
            msg = f"the artifact index of {self.bucket} failed: {exc}"
            raise ArtifactError(msg) from exc

    async def _manifest(self, session: str) -> dict[str, ArtifactEntry]:
        value, _ = await self._guarded(read_entry(self._index, session, what="artifact index"))
        return _files(value)

    async def _change(self, session: str,
                      change: Callable[[dict[str, ArtifactEntry]], dict[str, ArtifactEntry]]
                      ) -> None:
        def _next(value: bytes | None) -> bytes:
            return encoder.encode(ArtifactManifest(files=change(_files(value))))

        await self._guarded(compare_and_set(self._index, session, _next,
                                            what="artifact index"))

    async def _record(self, session: str, changes: dict[str, ArtifactEntry | None]) -> None:
        """Apply ``changes`` (path → entry; None removes the path) to the session's manifest.

        Group commit: changes arriving while this process writes a manifest wait and go in
        the next compare-and-set together — a sync uploads its files several at a time, and
        one write per file to one key cost two thirds of a 30-file sync (lost races and
        their backoff).

        Raises:
            ArtifactError: the index failed (the changes of the whole batch are not written).
        """
        batch = self._pending.get(session)
        if batch is None:
            batch = self._pending[session] = ({}, asyncio.get_running_loop().create_future())
            batch[1].add_done_callback(lambda done: done.cancelled() or done.exception())
            task = asyncio.create_task(self._commit(session), name=f"artifact-index:{session}")
            self._commits.add(task)
            task.add_done_callback(self._commits.discard)
        batch[0].update(changes)
        await asyncio.shield(batch[1])

    async def _commit(self, session: str) -> None:
        async with self._writing:  # while one batch is written, the next one fills
            changes, done = self._pending.pop(session)
            try:
                await self._change(session, lambda files: _applied(files, changes))
            except asyncio.CancelledError:
                done.cancel()
                raise
            except Exception as exc:  # handed to every waiting caller
                done.set_exception(exc)
            else:
                done.set_result(None)

    async def put(self, session: str, path: str, data: bytes, *, mtime_ns: int = 0) -> None:
        name = f"{check_session(session)}/{check_path(path)}"
        meta = ObjectMeta(name=name, headers={_MTIME_HEADER: [str(mtime_ns)]})
        async with _translated(f"put {name}", transfer_timeout(len(data))):
            await self._store.put(name, data, meta=meta)
        entry = ArtifactEntry(size=len(data), sha256=sha256_hex(data), mtime_ns=mtime_ns)
        await self._record(session, {path: entry})

    async def get(self, session: str, path: str) -> bytes:
        name = f"{check_session(session)}/{check_path(path)}"
        async with _translated(f"get {name}", API_TIMEOUT_S):
            try:
                info = await self._store.get_info(name)
            except nats.js.errors.ObjectNotFoundError as exc:
                msg = f"no artifact {path!r} for session {session}"
                raise ArtifactNotFoundError(msg) from exc
        buffer = io.BytesIO()
        async with _translated(f"get {name}", transfer_timeout(info.size or 0)):
            try:
                await self._store.get(name, writeinto=buffer)
            except nats.js.errors.ObjectNotFoundError as exc:
                msg = f"artifact {path!r} of session {session} was deleted while reading it"
                raise ArtifactNotFoundError(msg) from exc
        return buffer.getvalue()

    async def _infos(self) -> list[ObjectInfo]:
        """The metadata of every live object of the bucket (one watcher, bounded in time)."""
        infos: list[ObjectInfo] = []
        async with _translated("list", API_TIMEOUT_S):
            watcher = await self._store.watch(ignore_deletes=True)
            try:
                while (entry := await watcher.updates(API_TIMEOUT_S)) is not None:
                    infos.append(entry)
            finally:
                await watcher.stop()
        return infos

    async def stat(self, session: str) -> dict[str, ArtifactInfo]:
        """The session's files from its manifest: one KV read, whatever the bucket holds."""
        return {path: ArtifactInfo(path=path, size=e.size, sha256=e.sha256, mtime_ns=e.mtime_ns)
                for path, e in (await self._manifest(check_session(session))).items()}

    async def _remove(self, name: str) -> bool:
        try:
            await self._store.delete(name)
        except nats.js.errors.ObjectNotFoundError:
            return False
        meta_subject = OBJ_META_PRE_TEMPLATE.format(
            bucket=self.bucket, obj=base64.urlsafe_b64encode(name.encode()).decode())
        # Drop the "deleted" record as well: a removed session leaves nothing behind.
        await self._js.purge_stream(f"OBJ_{self.bucket}", subject=meta_subject)
        return True

    async def delete(self, session: str, path: str) -> bool:
        name = f"{check_session(session)}/{check_path(path)}"
        await self._record(session, {path: None})
        async with _translated(f"delete {name}", API_TIMEOUT_S):
            return await self._remove(name)

    async def delete_session(self, session: str) -> int:
        """Remove every object of ``session``: those of its manifest and, by a scan of the
        bucket, any the manifest missed (a put that failed before its manifest update)."""
        prefix = f"{check_session(session)}/"
        names = {f"{prefix}{path}" for path in await self._manifest(session)}
        names |= {info.name for info in await self._infos()
                  if info.name.startswith(prefix) and not info.deleted}
        removed = 0
        for name in sorted(names):
            async with _translated(f"delete {name}", API_TIMEOUT_S):
                removed += await self._remove(name)
        async with _translated(f"forget {session}", API_TIMEOUT_S):
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                await self._index.purge(session)
        _log.info("deleted %d artifacts of session %s from %s", removed, session, self.bucket)
        return removed

    async def close(self) -> None:
        """Nothing to release: the NATS connection belongs to the caller."""
