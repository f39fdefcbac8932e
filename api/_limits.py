"""Per-key limits (docs/http-api.md#api-keys): a request rate per API process (``limits``'
moving window, in memory) and a quota of runs per UTC day shared by every API process (a
counter per key and day in the runs bucket, changed by compare-and-set)."""

from __future__ import annotations

import time
from collections.abc import Callable

from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from nats.js.kv import KeyValue

from api._keys import ApiKey
from api.errors import QuotaExceededError, RateLimitedError, StoreError
from core.errors import BrokerError, StoreConflictError
from runtime import compare_and_set

DAY_S = 86400


class RateLimits:
    """Each key's request rate, counted in this process (a moving window: ``limits``)."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def hit(self, key: ApiKey) -> None:
        """Count one request of ``key``.

        Raises:
            RateLimitedError: the key's rate is spent; ``retry_after_s`` says when the
                window has room again.
        """
        if key.rate is None or await self._limiter.hit(key.rate, key.name):
            return
        stats = await self._limiter.get_window_stats(key.rate, key.name)
        msg = (f"API key {key.name} is limited to {key.rate.amount} requests per "
               f"{key.rate.get_expiry()} s")
        raise RateLimitedError(msg, max(stats.reset_time - time.time(), 1.0))


def quota_key(name: str, now: float) -> str:
    """``quota.<key name>.<YYYYMMDD>``: the runs bucket's key of ``name``'s count that day."""
    return f"quota.{name}.{time.strftime('%Y%m%d', time.gmtime(now))}"


class Quotas:
    """Runs per UTC day per key, in the runs bucket (every API process counts in it).

    Args:
        bucket: the runs bucket (its TTL removes the counts of past days).
        clock: Unix seconds now.
    """

    def __init__(self, bucket: KeyValue, clock: Callable[[], float] = time.time) -> None:
        self.bucket, self.clock = bucket, clock

    async def take(self, key: ApiKey) -> None:
        """Count one run started by ``key`` today.

        Raises:
            QuotaExceededError: ``key.runs_per_day`` runs were started today (nothing is
                counted); ``retry_after_s`` is the time to the next UTC midnight.
            StoreError: the bucket did not answer.
        """
        if key.runs_per_day is None:
            return
        limit, now = key.runs_per_day, self.clock()

        def _plus_one(current: bytes | None) -> bytes:
            count = int(current or b"0")
            if count >= limit:
                raise _Spent
            return str(count + 1).encode()

        try:
            await compare_and_set(self.bucket, quota_key(key.name, now), _plus_one,
                                  what="the API's runs bucket")
        except _Spent:
            msg = f"API key {key.name} started its {limit} runs of the day (UTC)"
            raise QuotaExceededError(msg, DAY_S - now % DAY_S) from None
        except (BrokerError, StoreConflictError) as exc:
            raise StoreError(str(exc)) from exc

    async def give_back(self, key: ApiKey) -> None:
        """Uncount one run of ``key`` today (it was refused after ``take``); a failure is
        left (the count errs on the safe side).

        Raises:
            StoreError: the bucket did not answer.
        """
        if key.runs_per_day is None:
            return
        try:
            await compare_and_set(
                self.bucket, quota_key(key.name, self.clock()),
                lambda current: str(max(int(current or b"0") - 1, 0)).encode(),
                what="the API's runs bucket")
        except (BrokerError, StoreConflictError) as exc:
            raise StoreError(str(exc)) from exc


class _Spent(Exception):
    """The day's quota is used up (raised inside the compare-and-set's change)."""
