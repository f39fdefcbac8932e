"""Artifacts in a JetStream object store bucket (the default backend, SPEC.md §6).

One bucket per deployment, ``<PREFIX>_ARTIFACTS``; one object per workspace file, named
``<session>/<path>``. nats-py (2.16, ``nats/js/object_store.py``) splits an object into 128 KiB
chunks on ``$O.<bucket>.C.<nuid>`` and keeps its metadata (size, SHA-256 digest, headers) on
``$O.<bucket>.M.<base64url(name)>``, so ``/`` in names is fine. A deleted object leaves a
"deleted" metadata record behind; this backend purges that record too, so nothing of a deleted
session remains.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ObjectInfo, ObjectMeta, ObjectStoreConfig, StorageType
from nats.js.object_store import OBJ_META_PRE_TEMPLATE, ObjectStore

from actors.artifacts._store import ArtifactInfo, ArtifactStore, check_path, check_session
from actors.errors import ArtifactError, ArtifactNotFoundError

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


class JetStreamArtifactStore(ArtifactStore):
    """Artifacts as objects of one JetStream object store bucket."""

    def __init__(self, js: JetStreamContext, store: ObjectStore, bucket: str) -> None:
        self._js = js
        self._store = store
        self.bucket = bucket

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, *, replicas: int = 1
                   ) -> JetStreamArtifactStore:
        """Bind to ``bucket``, creating it (file storage, ``replicas`` copies) when missing.

        Raises:
            ArtifactError: JetStream is unavailable or does not answer within 10 s.
        """
        async with _translated(f"open bucket {bucket}", API_TIMEOUT_S):
            try:
                store = await js.object_store(bucket)
            except nats.js.errors.BucketNotFoundError:
                config = ObjectStoreConfig(bucket=bucket, storage=StorageType.FILE,
                                           replicas=replicas,
                                           description="Switchboard workspaces (SPEC.md §6)")
                store = await js.create_object_store(bucket, config=config)
                _log.info("created object store bucket %s (%d replicas)", bucket, replicas)
        return cls(js, store, bucket)

    async def put(self, session: str, path: str, data: bytes, *, mtime_ns: int = 0) -> None:
        name = f"{check_session(session)}/{check_path(path)}"
        meta = ObjectMeta(name=name, headers={_MTIME_HEADER: [str(mtime_ns)]})
        async with _translated(f"put {name}", transfer_timeout(len(data))):
            await self._store.put(name, data, meta=meta)

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
                await self._store.get(name, writeinto=buffer)  # type: ignore[arg-type]
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
        prefix = f"{check_session(session)}/"
        return {
            info.name[len(prefix):]: ArtifactInfo(
                path=info.name[len(prefix):], size=info.size or 0, sha256=_sha256_hex(info),
                mtime_ns=_mtime_ns(info))
            for info in await self._infos()
            if info.name.startswith(prefix) and not info.deleted
        }

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
        async with _translated(f"delete {name}", API_TIMEOUT_S):
            return await self._remove(name)

    async def delete_session(self, session: str) -> int:
        paths = await self.list(session)
        removed = 0
        for path in paths:
            async with _translated(f"delete {session}/{path}", API_TIMEOUT_S):
                removed += await self._remove(f"{session}/{path}")
        _log.info("deleted %d artifacts of session %s from %s", removed, session, self.bucket)
        return removed

    async def close(self) -> None:
        """Nothing to release: the NATS connection belongs to the caller."""
