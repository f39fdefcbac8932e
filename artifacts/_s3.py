"""Artifacts in an S3 bucket through aioboto3 (docs/design.md#workspaces-and-artifacts).

Keys are ``<prefix><session>/<path>`` (``threads/discord-1234/src/app.py``); each object carries
user metadata ``sha256`` (hex) and ``mtime-ns`` (``x-amz-meta-*`` headers). Credentials and the
region come from the standard AWS environment variables and files; ``endpoint_url`` points at an
S3-compatible server (MinIO, moto) instead of AWS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from artifacts._jetstream import API_TIMEOUT_S, transfer_timeout
from artifacts._store import (
    ArtifactInfo,
    ArtifactStore,
    check_path,
    check_session,
    sha256_hex,
)
from core.errors import ArtifactError, ArtifactNotFoundError

_log = logging.getLogger(__name__)

_HEAD_CONCURRENCY = 16
"""HEAD requests in flight while listing a session (metadata is not in ListObjectsV2)."""
_DELETE_BATCH = 1000
"""Most keys one DeleteObjects call accepts (S3 API reference, DeleteObjects)."""
_MISSING = {"NoSuchKey", "404", "NotFound"}


@asynccontextmanager
async def _translated(what: str, timeout_s: float) -> AsyncIterator[None]:
    """Bound a block in time and turn botocore errors into ``ArtifactError``."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except TimeoutError as exc:
        msg = f"S3 did not answer within {timeout_s:.0f} s ({what})"
        raise ArtifactError(msg) from exc
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        msg = f"S3 refused {what}: {code or exc}"
        raise ArtifactError(msg) from exc
    except BotoCoreError as exc:
        msg = f"S3 failed ({what}): {exc}"
        raise ArtifactError(msg) from exc


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING


class S3ArtifactStore(ArtifactStore):
    """Artifacts as objects under one key prefix of one S3 bucket."""

    def __init__(self, client: Any, exits: AsyncExitStack, bucket: str, prefix: str) -> None:
        self._client = client
        self._exits = exits
        self.bucket = bucket
        self.prefix = prefix

    @classmethod
    async def open(cls, bucket: str, *, prefix: str = "threads/",
                   endpoint_url: str | None = None) -> S3ArtifactStore:
        """Connect and check that ``bucket`` exists (it is not created here).

        Raises:
            ArtifactError: the bucket is missing, access is denied, or S3 is unreachable.
        """
        exits = AsyncExitStack()
        config = Config(connect_timeout=API_TIMEOUT_S, read_timeout=API_TIMEOUT_S,
                        retries={"max_attempts": 3, "mode": "standard"})
        try:
            client = await exits.enter_async_context(aioboto3.Session().client(
                "s3", endpoint_url=endpoint_url, config=config))
            async with _translated(f"check bucket {bucket}", API_TIMEOUT_S):
                await client.head_bucket(Bucket=bucket)
        except BaseException:
            await exits.aclose()
            raise
        _log.info("artifacts in s3://%s/%s", bucket, prefix)
        return cls(client, exits, bucket, prefix)

    def _key(self, session: str, path: str) -> str:
        return f"{self.prefix}{check_session(session)}/{check_path(path)}"

    async def put(self, session: str, path: str, data: bytes, *, mtime_ns: int = 0) -> None:
        key = self._key(session, path)
        async with _translated(f"put {key}", transfer_timeout(len(data))):
            await self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data,
                Metadata={"sha256": sha256_hex(data), "mtime-ns": str(mtime_ns)})

    async def get(self, session: str, path: str) -> bytes:
        key = self._key(session, path)
        try:
            async with _translated(f"get {key}", API_TIMEOUT_S):
                response = await self._client.get_object(Bucket=self.bucket, Key=key)
        except ArtifactError as exc:
            if isinstance(exc.__cause__, ClientError) and _missing(exc.__cause__):
                msg = f"no artifact {path!r} for session {session}"
                raise ArtifactNotFoundError(msg) from exc.__cause__
            raise
        timeout_s = transfer_timeout(response["ContentLength"])
        async with _translated(f"get {key}", timeout_s), response["Body"] as body:
            data: bytes = await body.read()
        return data

    async def _keys(self, session: str) -> list[tuple[str, int]]:
        """``(key, size)`` of every object of ``session``."""
        prefix = f"{self.prefix}{check_session(session)}/"
        keys: list[tuple[str, int]] = []
        async with _translated(f"list {prefix}", API_TIMEOUT_S * 6):
            paginator = self._client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend((item["Key"], item["Size"]) for item in page.get("Contents", []))
        return keys

    async def stat(self, session: str) -> dict[str, ArtifactInfo]:
        prefix = f"{self.prefix}{check_session(session)}/"
        limit = asyncio.Semaphore(_HEAD_CONCURRENCY)

        async def head(key: str, size: int) -> ArtifactInfo:
            async with limit, _translated(f"head {key}", API_TIMEOUT_S):
                response = await self._client.head_object(Bucket=self.bucket, Key=key)
            meta = response.get("Metadata", {})
            try:
                mtime_ns = int(meta.get("mtime-ns", "0"))
            except ValueError:
                mtime_ns = 0
            return ArtifactInfo(path=key[len(prefix):], size=size,
                                sha256=meta.get("sha256", ""), mtime_ns=mtime_ns)

        infos = await asyncio.gather(*(head(key, size) for key, size in await self._keys(session)))
        return {info.path: info for info in infos}

    async def delete(self, session: str, path: str) -> bool:
        key = self._key(session, path)
        async with _translated(f"delete {key}", API_TIMEOUT_S):
            try:
                await self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _missing(exc):
                    return False
                raise
            await self._client.delete_object(Bucket=self.bucket, Key=key)
        return True

    async def delete_session(self, session: str) -> int:
        keys = [key for key, _ in await self._keys(session)]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start:start + _DELETE_BATCH]]
            async with _translated(f"delete {len(batch)} objects", API_TIMEOUT_S * 3):
                response = await self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if errors := response.get("Errors"):
                msg = f"S3 kept {len(errors)} objects of session {session}: {errors[0]}"
                raise ArtifactError(msg)
        _log.info("deleted %d artifacts of session %s from s3://%s", len(keys), session,
                  self.bucket)
        return len(keys)

    async def close(self) -> None:
        await self._exits.aclose()
