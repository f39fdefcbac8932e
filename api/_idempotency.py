"""``Idempotency-Key`` on ``POST /v1/runs`` (draft-ietf-httpapi-idempotency-key-header): the
first request with a key stores ``idem.<sha256 of the key>`` → its run id and the fingerprint
of its body in the runs bucket (a KV create: of two requests at once, one wins); a later
request with the key and the same body gets that run, with another body 422; a key is
honoured for ``ttl_s`` (24 h), after which it starts a new run (the entry itself goes with
the bucket's 30-day expiry)."""

from __future__ import annotations

import asyncio
import hashlib
import re

import msgspec
import nats.errors
from nats.js.kv import KeyValue

from api._schema import RunRequest
from api.errors import BadHeaderError, IdempotencyKeyReusedError, StoreError
from core.errors import BrokerError, StoreConflictError
from runtime import compare_and_set

TTL_S = 86400.0
"""How long a key is honoured after its first request (seconds)."""
HEADER = "Idempotency-Key"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
TIMEOUT_S = 10.0

_fingerprinter = msgspec.json.Encoder(order="sorted")


class KeyEntry(msgspec.Struct, kw_only=True):
    """What a key holds: the run its first request created, that request's fingerprint, and
    when (Unix seconds)."""

    run_id: str
    fingerprint: str
    created_at: float


_decoder = msgspec.json.Decoder(KeyEntry)


class _Earlier(Exception):
    def __init__(self, entry: KeyEntry) -> None:
        self.entry = entry


def parse_key(value: str) -> str:
    """The key of an ``Idempotency-Key`` field (a Structured Field string: quotes are
    optional here), 1-255 visible ASCII characters.

    Raises:
        BadHeaderError: an empty, too long or non-ASCII key.
    """
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not _KEY.match(key):
        msg = f"{HEADER} must be 1-255 visible ASCII characters"
        raise BadHeaderError(msg)
    return key


def fingerprint(request: RunRequest) -> str:
    """The SHA-256 of ``request`` as canonical JSON (object keys sorted): two bodies that
    decode the same have the same fingerprint, whatever their spacing or key order."""
    return hashlib.sha256(_fingerprinter.encode(request)).hexdigest()


class Idempotency:
    """The keys kept in the runs bucket ``kv`` (see the module docstring)."""

    def __init__(self, kv: KeyValue, ttl_s: float = TTL_S) -> None:
        self._kv = kv
        self.ttl_s = ttl_s

    @staticmethod
    def _name(key: str) -> str:
        return "idem." + hashlib.sha256(key.encode()).hexdigest()

    async def claim(self, key: str, entry: KeyEntry) -> str | None:
        """Keep ``entry`` under ``key`` unless a request within ``ttl_s`` has it.

        Returns:
            None when ``entry`` is kept (go on with its run); else the earlier run's id.

        Raises:
            IdempotencyKeyReusedError: the earlier request had another body.
            StoreError: the bucket did not answer.
        """
        def _change(value: bytes | None) -> bytes:
            if value:
                earlier = _decoder.decode(value)
                if entry.created_at - earlier.created_at < self.ttl_s:
                    raise _Earlier(earlier)
            return msgspec.json.encode(entry)

        try:
            async with asyncio.timeout(TIMEOUT_S):
                await compare_and_set(self._kv, self._name(key), _change,
                                      what="API runs bucket")
        except _Earlier as found:
            if found.entry.fingerprint != entry.fingerprint:
                msg = (f"{HEADER} was used with another body (for run "
                       f"{found.entry.run_id}): use a new key for a new request")
                raise IdempotencyKeyReusedError(msg) from None
            return found.entry.run_id
        except (TimeoutError, nats.errors.Error, BrokerError, StoreConflictError) as exc:
            msg = f"keeping {HEADER}: {exc or type(exc).__name__}"
            raise StoreError(msg) from exc
        return None

    async def forget(self, key: str) -> None:
        """Drop ``key`` (its request failed: a retry with it starts afresh); best effort."""
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await self._kv.delete(self._name(key))
        except (TimeoutError, nats.errors.Error):
            return
