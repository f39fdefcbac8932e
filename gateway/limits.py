"""Per-user and per-guild rate limits and per-user daily token quotas
(docs/design.md#safety-and-limits), kept in
the limits KV bucket so every gateway replica shares them.

Keys (``w`` is the window number, ``floor(now / window)``; ``day`` is ``YYYYMMDD`` UTC)::

    rate.user.<user id>.<w>     requests of one person in one window
    rate.guild.<guild id>.<w>   requests of one guild in one window
    tokens.<user id>.<day>      model tokens (prompt + completion) one person used that day

Counters are fixed windows updated with compare-and-set; the bucket expires keys after two
days. A bucket that does not answer lets the request through (logged): limits protect cost,
they must not take the bot down.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nats.js.kv import KeyValue

from core.errors import BrokerError, StoreConflictError
from gateway.config import GatewaySettings
from gateway.errors import StoreError
from runtime import compare_and_set, read_entry

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused and when to try again (``retry_after_s`` seconds from now)."""

    reason: str
    retry_after_s: float

    @property
    def text(self) -> str:
        """The message for the person, saying when to try again."""
        return f"⏳ {self.reason} Try again {when(self.retry_after_s)}."


def when(seconds: float) -> str:
    """``in 42 s``, ``in 3 min``, ``in 5 h 12 min``."""
    s = max(1, math.ceil(seconds))
    if s < 120:
        return f"in {s} s"
    minutes = math.ceil(s / 60)
    if minutes < 60:
        return f"in {minutes} min"
    return f"in {minutes // 60} h {minutes % 60} min"


class Limiter:
    """Checks and counts requests and tokens.

    Args:
        kv: the limits bucket (``gateway.kv.limits_bucket``).
        settings: ``user_rate``, ``guild_rate`` per ``rate_window_s``; ``daily_tokens``.
        clock: Unix seconds now (tests pass their own).
    """

    def __init__(self, kv: KeyValue, settings: GatewaySettings,
                 clock: Callable[[], float] = time.time) -> None:
        self.kv = kv
        self.settings = settings
        self.clock = clock

    async def admit(self, user_id: str, guild_id: str = "") -> Refusal | None:
        """Count one request of ``user_id`` (in ``guild_id``, empty for a DM); return why it is
        refused, or None when it may go ahead."""
        s = self.settings
        now = self.clock()
        try:
            if s.daily_tokens and await self.tokens_today(user_id) >= s.daily_tokens:
                midnight = _next_midnight(now)
                return Refusal(f"You have used your {s.daily_tokens:,} model tokens for today "
                               "(UTC).", midnight - now)
            window = int(now // s.rate_window_s)
            retry = (window + 1) * s.rate_window_s - now
            if s.user_rate and await self._incr(f"rate.user.{user_id}.{window}") > s.user_rate:
                return Refusal(f"You have sent {s.user_rate} requests in the last "
                               f"{s.rate_window_s:.0f} s, the most allowed.", retry)
            if guild_id and s.guild_rate and \
                    await self._incr(f"rate.guild.{guild_id}.{window}") > s.guild_rate:
                return Refusal(f"This server has sent {s.guild_rate} requests in the last "
                               f"{s.rate_window_s:.0f} s, the most allowed.", retry)
        except StoreError as exc:
            _log.warning("limits not checked for user %s: %s", user_id, exc)
        return None

    async def add_tokens(self, user_id: str, tokens: int) -> None:
        """Count ``tokens`` model tokens against ``user_id``'s quota for today (UTC)."""
        if tokens <= 0 or not user_id:
            return
        try:
            await self._incr(self._tokens_key(user_id), tokens)
        except StoreError as exc:
            _log.warning("tokens of user %s not counted: %s", user_id, exc)

    async def tokens_today(self, user_id: str) -> int:
        """Model tokens ``user_id`` used today (UTC).

        Raises:
            StoreError: the bucket did not answer within 5 s.
        """
        value, _ = await self._read(self._tokens_key(user_id))
        return value

    def _tokens_key(self, user_id: str) -> str:
        day = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%d")
        return f"tokens.{user_id}.{day}"

    async def _read(self, key: str) -> tuple[int, int | None]:
        try:
            value, revision = await read_entry(self.kv, key, what="limits bucket")
        except BrokerError as exc:
            raise StoreError(str(exc)) from exc
        return int(value or b"0"), revision

    async def _incr(self, key: str, by: int = 1) -> int:
        """Add ``by`` to the counter ``key`` with compare-and-set (``runtime._cas``:
        retried with jittered backoff); returns the new value.

        Raises:
            StoreError: the bucket did not answer, or lost the race 8 times in a row.
        """
        written: list[int] = []

        def _next(value: bytes | None) -> bytes:
            written[:] = [int(value or b"0") + by]
            return str(written[0]).encode()

        try:
            await compare_and_set(self.kv, key, _next, what="limits counter")
        except (BrokerError, StoreConflictError) as exc:
            raise StoreError(str(exc)) from exc
        return written[0]


def _next_midnight(now: float) -> float:
    day = datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
