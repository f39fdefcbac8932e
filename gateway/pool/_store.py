"""Bot configurations in the bots KV bucket: ``bot.<name>`` holds a ``BotConfig`` (JSON),
``status.<name>`` what the gateway last reported about that bot (``BotStatus``)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import asdict, dataclass
from typing import TypeVar

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from gateway.config import BotConfig, parse_bot
from gateway.errors import BotConfigError, StoreError
from gateway.kv import KV_TIMEOUT_S, bots_bucket
from protocol import Subjects

_log = logging.getLogger(__name__)

CONFIG_PREFIX = "bot."
STATUS_PREFIX = "status."
T = TypeVar("T")


@dataclass(frozen=True)
class BotStatus:
    """What the gateway reports about one bot: ``state`` is ``starting``, ``running``,
    ``failed`` or ``stopped``; ``applied`` the ``BotConfig.fingerprint`` in effect; ``at`` Unix
    seconds."""

    state: str
    error: str = ""
    user_id: str = ""
    applied: str = ""
    at: float = 0.0


class BotStore:
    """Reads, writes and watches bot configurations.

    Args:
        kv: the bots bucket (``BotStore.open`` finds or creates it).
    """

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, subjects: Subjects, *, replicas: int = 1
                   ) -> BotStore:
        return cls(await bots_bucket(js, subjects, replicas=replicas))

    async def put(self, config: BotConfig) -> None:
        """Store ``config`` (a new bot, or a change to an existing one).

        Raises:
            StoreError: the bucket did not answer within 5 s.
        """
        await self._call(self.kv.put(CONFIG_PREFIX + config.name,
                                     config.model_dump_json().encode()), config.name)

    async def get(self, name: str) -> BotConfig:
        """The configuration of ``name``.

        Raises:
            BotConfigError: there is no such bot, or its stored value does not validate.
            StoreError: the bucket did not answer.
        """
        try:
            entry = await self._call(self.kv.get(CONFIG_PREFIX + name), name)
        except nats.js.errors.KeyNotFoundError:
            msg = f"no bot named {name!r} (see `switchboard bots list`)"
            raise BotConfigError(msg) from None
        return parse_bot(json.loads(entry.value or b"{}"), where=f"bot {name}")

    async def remove(self, name: str) -> None:
        """Delete bot ``name`` (the gateway stops it).

        Raises:
            BotConfigError: there is no such bot.
            StoreError: the bucket did not answer.
        """
        await self.get(name)
        await self._call(self.kv.delete(CONFIG_PREFIX + name), name)
        await self._call(self.kv.delete(STATUS_PREFIX + name), name)

    async def names(self) -> list[str]:
        """Names of the stored bots, sorted."""
        try:
            keys = await self._call(self.kv.keys(), "keys")
        except nats.js.errors.NoKeysError:
            return []
        return sorted(k[len(CONFIG_PREFIX):] for k in keys if k.startswith(CONFIG_PREFIX))

    async def all(self) -> list[BotConfig]:
        """Every stored bot that validates (an invalid one is logged and skipped)."""
        configs = []
        for name in await self.names():
            try:
                configs.append(await self.get(name))
            except BotConfigError as exc:
                _log.error("%s", exc)
        return configs

    async def set_status(self, name: str, status: BotStatus) -> None:
        """Record ``status`` for bot ``name`` (best effort: a failure is logged)."""
        value = json.dumps(asdict(status) | {"at": status.at or time.time()}).encode()
        try:
            await self._call(self.kv.put(STATUS_PREFIX + name, value), name)
        except StoreError as exc:
            _log.warning("bot %s: status not recorded: %s", name, exc)

    async def status(self, name: str) -> BotStatus | None:
        """The last status recorded for ``name``, if any."""
        try:
            entry = await self._call(self.kv.get(STATUS_PREFIX + name), name)
        except nats.js.errors.KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return BotStatus(**json.loads(entry.value))

    async def watch(self) -> AsyncIterator[tuple[str, BotConfig | None]]:
        """Every configuration now, then every change: ``(name, config)``, ``config`` None
        when the bot was removed or its value does not validate. Runs until cancelled."""
        watcher = await self._call(self.kv.watch(CONFIG_PREFIX + "*"), "watch")
        try:
            async for entry in watcher:
                if entry is None:
                    continue
                name = entry.key[len(CONFIG_PREFIX):]
                if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                    yield name, None
                    continue
                try:
                    yield name, parse_bot(json.loads(entry.value), where=f"bot {name}")
                except (BotConfigError, ValueError) as exc:
                    _log.error("bot %s: ignoring invalid configuration: %s", name, exc)
                    yield name, None
        finally:
            try:
                async with asyncio.timeout(KV_TIMEOUT_S):
                    await watcher.stop()
            except (TimeoutError, nats.errors.Error) as exc:
                _log.debug("stopping the bots watcher: %s", exc)

    async def _call(self, awaitable: Awaitable[T], what: str) -> T:
        try:
            async with asyncio.timeout(KV_TIMEOUT_S):
                return await awaitable
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.NoKeysError):
            raise
        except (TimeoutError, nats.errors.Error) as exc:
            msg = f"bots bucket did not answer ({what}): {exc or type(exc).__name__}"
            raise StoreError(msg) from exc
