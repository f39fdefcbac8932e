"""Compare-and-set on one JetStream KV key, retried with jittered backoff: the one way every
store here updates a shared value (session memory, a session's artifact manifest)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from core.errors import BrokerError, StoreConflictError
from runtime._kv import Bucket, _Unserved

KV_TIMEOUT_S = 5.0
NO_RESPONDERS_WAIT_S = 0.1
"""Seconds between two reads of a bucket no server serves yet (``read_entry``)."""
MAX_CAS_ATTEMPTS = 8
CAS_BACKOFF_S = 0.002
"""After the n-th lost compare-and-set, wait a random 0 to ``CAS_BACKOFF_S * 2**n`` seconds
(full jitter) before reading again, so writers of one key spread out instead of colliding
again: at most about 0.5 s over all attempts."""


async def read_entry(kv: KeyValue | Bucket, key: str, *, what: str
                     ) -> tuple[bytes | None, int | None]:
    """The value and revision of ``key``; ``(None, None)`` when it does not exist (a
    ``Bucket`` gives a deleted key's revision: ``(None, revision)``).

    A direct get answered "no responders" is asked again (every ``NO_RESPONDERS_WAIT_S``)
    until ``KV_TIMEOUT_S``: no server serves the bucket's reads yet, as happens in a cluster
    just after the bucket was made or while its stream elects a leader (found on a 3-node
    cluster: ``switchboard up`` stopped when the artifact index, created a moment before,
    answered so).

    Raises:
        BrokerError: the bucket does not answer within 5 s.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + KV_TIMEOUT_S
    while True:
        try:
            return await _get_once(kv, key, max(0.001, deadline - loop.time()))
        except _Unserved as exc:
            if loop.time() + NO_RESPONDERS_WAIT_S < deadline:
                await asyncio.sleep(NO_RESPONDERS_WAIT_S)
                continue
            msg = f"{what} did not answer for {key}: {exc}"
            raise BrokerError(msg) from exc
        except BrokerError as exc:
            msg = f"{what} did not answer for {key}: {exc}"
            raise BrokerError(msg) from exc


async def _get_once(kv: KeyValue | Bucket, key: str, timeout_s: float
                    ) -> tuple[bytes | None, int | None]:
    """One read of ``key`` from either kind of bucket (``read_entry``'s value and revision).

    Raises:
        _Unserved: "no responders" (no server serves the bucket's reads yet).
        BrokerError: no answer within ``timeout_s`` seconds, or another failure.
    """
    if isinstance(kv, Bucket):
        return await kv.get(key, timeout_s=timeout_s)
    try:
        async with asyncio.timeout(timeout_s):
            entry = await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return None, None
    except nats.errors.NoRespondersError as exc:
        raise _Unserved(str(exc) or type(exc).__name__) from exc
    except (TimeoutError, nats.errors.Error) as exc:
        raise BrokerError(str(exc) or type(exc).__name__) from exc
    return entry.value or None, entry.revision


async def compare_and_set(kv: KeyValue | Bucket, key: str,
                          change: Callable[[bytes | None], bytes], *, what: str,
                          known: tuple[bytes | None, int | None] | None = None
                          ) -> tuple[bytes, int]:
    """Store ``change(current value)`` under ``key`` if nobody wrote it meanwhile; else read
    again and retry (up to 8 attempts, jittered backoff between them).

    Args:
        kv: the bucket.
        key: the key.
        change: the new value from the current one (None when the key is missing); it may
            run more than once.
        what: the store's name, for error messages.
        known: a value and revision of ``key`` read earlier ((None, None): it was missing):
            the first attempt starts from it instead of reading. Compare-and-set makes a
            stale one safe: it loses the race, and the next attempt reads.

    Returns:
        The value stored and its revision.

    Raises:
        StoreConflictError: lost the race ``MAX_CAS_ATTEMPTS`` times in a row.
        BrokerError: the bucket does not answer.
    """
    for attempt in range(MAX_CAS_ATTEMPTS):
        if attempt:
            await asyncio.sleep(random.uniform(0, CAS_BACKOFF_S * 2 ** attempt))
        if attempt == 0 and known is not None:
            value, revision = known
        else:
            value, revision = await read_entry(kv, key, what=what)
        data = change(value)
        try:
            stored = await _put_once(kv, key, data, revision)
        except BrokerError as exc:
            msg = f"{what} did not answer for {key}: {exc}"
            raise BrokerError(msg) from exc
        if stored is not None:
            return data, stored
    msg = f"{what} {key}: {MAX_CAS_ATTEMPTS} concurrent writers in a row, giving up"
    raise StoreConflictError(msg)


async def _put_once(kv: KeyValue | Bucket, key: str, data: bytes, revision: int | None
                    ) -> int | None:
    """Store ``data`` under ``key`` if ``revision`` is still its last (None: if it has none),
    in either kind of bucket; the new revision, or None when another writer came first.

    Raises:
        BrokerError: no answer within ``KV_TIMEOUT_S``, or another failure.
    """
    if isinstance(kv, Bucket):
        return await kv.put_if(key, data, revision, timeout_s=KV_TIMEOUT_S)
    try:
        async with asyncio.timeout(KV_TIMEOUT_S):
            if revision is None:
                return await kv.create(key, data)
            return await kv.update(key, data, last=revision)
    except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyValueError,
            nats.js.errors.BadRequestError):
        return None
    except (TimeoutError, nats.errors.Error) as exc:
        raise BrokerError(str(exc) or type(exc).__name__) from exc
