"""The session store's compare-and-set under contention, on a real nats-server: one key written
by many at once (a person's memory across their conversations) loses no write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import nats

from protocol import HistoryEntry, SessionState
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


async def test_an_update_after_a_kept_read_skips_its_read_and_a_stale_one_loses_nothing(
        nats_url: str) -> None:
    """``get(keep=True)`` then ``update``: the update reads nothing; when another process
    wrote the key between the two, the compare-and-set from the kept read loses, reads, and
    both writes are kept."""
    nc = await nats.connect(nats_url)
    try:
        kv = await kv_bucket(nc.jetstream(), "TEST_KEPT")
        store, other = SessionStore(kv), SessionStore(kv)
        reads = 0
        real_get = kv.get

        async def counted_get(key: str, *args: object, **kwargs: object) -> object:
            nonlocal reads
            reads += 1
            return await real_get(key, *args, **kwargs)  # type: ignore[arg-type]

        kv.get = counted_get  # type: ignore[method-assign,assignment]

        def add(text: str) -> Callable[[SessionState], None]:
            return lambda state: state.history.append(HistoryEntry(role="user", text=text))

        await store.get("s1", keep=True)
        reads = 0
        await store.update("s1", add("first"))
        assert reads == 0
        await store.get("s1", keep=True)
        await other.update("s1", add("from another process"))
        reads = 0
        await store.update("s1", add("second"))
        assert reads == 1  # the kept read was stale: read again
        texts = [e.text for e in (await store.get("s1")).history]
        assert texts == ["first", "from another process", "second"]
        reads = 0
        await store.update("s1", add("third"))  # nothing kept: reads as before
        assert reads == 1
    finally:
        await nc.close()
