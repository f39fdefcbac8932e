"""The bot pool (docs/design.md#gateways): up to ``max_bots`` bots in one process, configured in
the bots KV
bucket and reconfigured by watching it — a new bot starts, a removed one stops, a changed token
restarts that bot only, any other change applies in place. A bot that fails (a bad token) is
reported in its status key and the others keep running."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from core.tasks import cancel_and_wait
from gateway.config import BotConfig, GatewaySettings
from gateway.discord._runner import BotRunner, BridgeFactory
from gateway.errors import GatewayError, NotRunningError
from gateway.pool._store import BotStatus, BotStore

_log = logging.getLogger(__name__)

RunnerFactory = Callable[[BotConfig], BotRunner]
FOLLOW_STOP_TIMEOUT_S = 5.0
"""How long stopping the pool waits for the bucket watcher to end (seconds)."""


class BotPool:
    """Runs the bots of the bots bucket (plus an optional default bot).

    Args:
        store: the bots bucket.
        bridge_for: makes the bridge of a bot's origin.
        settings: gateway settings (``max_bots``, timeouts).
        default: the bot made from ``DISCORD_TOKEN``; a stored bot of the same name wins.
        durable: bots read their outbox through durable consumers.
        **bot_options: passed to every ``SwitchboardBot``.
    """

    def __init__(self, store: BotStore, bridge_for: BridgeFactory, settings: GatewaySettings,
                 *, default: BotConfig | None = None, durable: bool = True,
                 **bot_options: Any) -> None:
        self.store = store
        self.settings = settings
        self.default = default
        self.runners: dict[str, BotRunner] = {}
        self.configs: dict[str, BotConfig] = {}
        self._bridge_for = bridge_for
        self._durable = durable
        self._bot_options = bot_options
        self._ops: dict[str, asyncio.Task[None]] = {}
        self.changed = asyncio.Condition()

    async def run(self) -> None:
        """Start the default bot and every stored bot, then follow the bucket until cancelled;
        on the way out every bot is stopped (each within the shutdown timeout).

        The bucket is followed in a task of its own, ended with ``cancel_and_wait``: the KV
        watcher waits in nats-py's ``wait_for``, which can lose a cancellation on Python 3.11
        (``core.tasks``), and the bots must still be stopped."""
        following = asyncio.create_task(self._follow(), name="pool:follow")
        try:
            await asyncio.wait({following})  # a cancellation of run() does not reach it
            following.result()  # the watcher's own failure, raised
        finally:
            await cancel_and_wait(following, timeout_s=FOLLOW_STOP_TIMEOUT_S,
                                  what="bots bucket watcher")
            await self.close()

    async def _follow(self) -> None:
        if self.default is not None and self.default.name not in await self.store.names():
            self._schedule(self.default.name, self.default)
        async for name, config in self.store.watch():
            if config is None and self.default is not None and name == self.default.name:
                config = self.default
            self._schedule(name, config)

    def _schedule(self, name: str, config: BotConfig | None) -> None:
        """Queue the change for ``name`` after the bot's previous change (per-bot order)."""
        previous = self._ops.get(name)
        self._ops[name] = asyncio.create_task(self._change(name, config, previous),
                                              name=f"pool:{name}")

    async def _change(self, name: str, config: BotConfig | None,
                      previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            with contextlib.suppress(BaseException):
                await previous
        current = self.configs.get(name)
        try:
            if config is None:
                if current is not None:
                    await self._stop(name)
            elif current is None or name not in self.runners:
                await self._start(name, config)
            elif config.token != current.token:
                _log.info("bot %s: token changed, restarting it", name)
                await self._stop(name)
                await self._start(name, config)
            elif config != current:
                runner = self.runners[name]
                runner.apply(config)
                self.configs[name] = config
                await self.store.set_status(name, self._running(runner))
                _log.info("bot %s: configuration applied without restart", name)
        finally:
            async with self.changed:
                self.changed.notify_all()

    async def _start(self, name: str, config: BotConfig) -> None:
        self.configs[name] = config
        if len(self.runners) >= self.settings.max_bots:
            error = f"the pool is full ({self.settings.max_bots} bots, SB_GATEWAY_MAX_BOTS)"
            _log.error("bot %s not started: %s", name, error)
            await self.store.set_status(name, BotStatus("failed", error))
            return
        await self.store.set_status(name, BotStatus("starting"))
        runner = BotRunner(config, self._bridge_for, self.settings, durable=self._durable,
                           **self._bot_options)
        try:
            await runner.start()
        except (GatewayError, NotRunningError) as exc:
            _log.error("bot %s failed: %s", name, exc)
            await runner.stop()
            await self.store.set_status(name, BotStatus("failed", str(exc)))
            return
        except BaseException:
            await runner.stop()
            raise
        self.runners[name] = runner
        await self.store.set_status(name, self._running(runner))

    @staticmethod
    def _running(runner: BotRunner) -> BotStatus:
        user_id = str(runner.bot.user.id) if runner.bot.user else ""
        return BotStatus("running", user_id=user_id, applied=runner.config.fingerprint())

    async def _stop(self, name: str) -> None:
        self.configs.pop(name, None)
        runner = self.runners.pop(name, None)
        if runner is not None:
            await runner.stop()
        await self.store.set_status(name, BotStatus("stopped"))

    async def wait_for(self, predicate: Callable[[], bool], *, timeout_s: float) -> None:
        """Wait until ``predicate()`` holds after a change (tests and tools).

        Raises:
            TimeoutError: it did not within ``timeout_s`` seconds.
        """
        async with asyncio.timeout(timeout_s), self.changed:
            await self.changed.wait_for(predicate)

    async def close(self) -> None:
        """Stop every bot, concurrently, each within the shutdown timeout."""
        for task in self._ops.values():
            task.cancel()
        for task in self._ops.values():
            with contextlib.suppress(BaseException):
                await task
        self._ops.clear()
        runners = list(self.runners.values())
        self.runners.clear()
        self.configs.clear()
        await asyncio.gather(*(r.stop() for r in runners), return_exceptions=True)
