"""The gateway's JetStream KV buckets: opened, created when missing, every call bounded.

- ``<PREFIX>_BOTS``: bot configurations (``bot.<name>``) and their status (``status.<name>``);
- ``<PREFIX>_LIMITS``: rate-limit windows and daily token counts (keys expire after 2 days);
- ``<PREFIX>_MESSAGES``: what each bot message is, for its reactions (30 days);
- ``<PREFIX>_RUNS``: read only here (``/status``); the agent actors write it.
"""

from __future__ import annotations

import asyncio
import logging

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from gateway.errors import StoreError
from protocol import Subjects

_log = logging.getLogger(__name__)

KV_TIMEOUT_S = 5.0
"""Bound on one KV call."""
LIMITS_TTL_S = 2 * 86400.0
"""Age after which a limits key expires: a rate window or a UTC day is long over by then."""


async def open_bucket(js: JetStreamContext, name: str, *, create: bool = True,
                      ttl_s: float | None = None, replicas: int = 1) -> KeyValue | None:
    """The KV bucket ``name``; created when missing and ``create`` (else None).

    Raises:
        StoreError: JetStream did not answer within 5 s or refused the bucket.
    """
    try:
        async with asyncio.timeout(KV_TIMEOUT_S):
            try:
                return await js.key_value(name)
            except nats.js.errors.BucketNotFoundError:
                if not create:
                    return None
                _log.info("creating KV bucket %s", name)
                return await js.create_key_value(KeyValueConfig(
                    bucket=name, history=1, storage=StorageType.FILE, direct=True,
                    ttl=ttl_s, replicas=replicas))
    except (TimeoutError, nats.errors.Error) as exc:
        msg = f"KV bucket {name} did not open: {exc or type(exc).__name__}"
        raise StoreError(msg) from exc


async def bots_bucket(js: JetStreamContext, subjects: Subjects, *, replicas: int = 1
                      ) -> KeyValue:
    """The bots bucket (created when missing)."""
    kv = await open_bucket(js, subjects.bots_bucket, replicas=replicas)
    assert kv is not None
    return kv


MESSAGES_TTL_S = 30 * 86400.0
"""How long a bot message's meaning is kept for its reactions."""


async def messages_bucket(js: JetStreamContext, subjects: Subjects, *, replicas: int = 1
                          ) -> KeyValue:
    """The bucket of what each bot message is (created when missing; keys expire after 30
    days)."""
    kv = await open_bucket(js, subjects.messages_bucket, ttl_s=MESSAGES_TTL_S,
                           replicas=replicas)
    assert kv is not None
    return kv


async def limits_bucket(js: JetStreamContext, subjects: Subjects, *, replicas: int = 1
                        ) -> KeyValue:
    """The limits bucket (created when missing; keys expire after two days)."""
    kv = await open_bucket(js, subjects.limits_bucket, ttl_s=LIMITS_TTL_S, replicas=replicas)
    assert kv is not None
    return kv
