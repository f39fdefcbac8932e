"""The session store's compare-and-set under contention, on a real nats-server: one key written
by many at once (a person's memory across their conversations) loses no write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import nats
import pytest

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


async def test_a_bucket_no_server_serves_yet_is_read_once_it_is_served(nats_url: str) -> None:
    """A direct get answered "no responders" (the bucket's stream not served yet, as in a
    cluster just after it was made) is asked again until it is served, within the read's
    bound; one never served is a BrokerError after the bound."""
    from nats.js.kv import KeyValue

    from core.errors import BrokerError
    from runtime._cas import KV_TIMEOUT_S, read_entry

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        early = KeyValue(name="TEST_LATE", stream="KV_TEST_LATE", pre="$KV.TEST_LATE.", js=js,
                         direct=True)

        async def make_it() -> None:
            await asyncio.sleep(0.5)
            kv = await kv_bucket(js, "TEST_LATE")
            await kv.put("k", b"there")

        loop = asyncio.get_running_loop()
        maker = asyncio.create_task(make_it())
        started = loop.time()
        got = await read_entry(early, "k", what="late bucket")  # no BrokerError: it waited
        assert loop.time() - started >= 0.4
        await maker
        # Read as soon as the bucket was served: the key is there, or not put yet.
        assert got in {(b"there", 1), (None, None)}
        assert await read_entry(early, "k", what="late bucket") == (b"there", 1)
        never = KeyValue(name="TEST_NEVER", stream="KV_TEST_NEVER", pre="$KV.TEST_NEVER.",
                         js=js, direct=True)
        started = loop.time()
        with pytest.raises(BrokerError):
            await read_entry(never, "k", what="missing bucket")
        assert loop.time() - started <= KV_TIMEOUT_S + 1
    finally:
        await nc.close()
