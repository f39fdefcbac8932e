"""The session store's compare-and-set under contention, on a real nats-server: one key written
by many at once (a person's memory across their conversations) loses no write."""

from __future__ import annotations

import asyncio

import nats

from protocol import HistoryEntry
from runtime import SessionStore
from runtime.bus import kv_bucket


async def test_many_concurrent_writers_of_one_key_all_land(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        store = SessionStore(await kv_bucket(nc.jetstream(), "TEST_CAS"))

        async def add(i: int) -> None:
            await store.update("user.bot.alice", lambda state: state.history.append(
                HistoryEntry(role="user", text=f"message {i}")))

        async with asyncio.timeout(60):
            await asyncio.gather(*(add(i) for i in range(16)))
        state = await store.get("user.bot.alice")
        assert sorted(e.text for e in state.history) == sorted(f"message {i}" for i in range(16))
    finally:
        await nc.close()
