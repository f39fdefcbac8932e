"""The session store's compare-and-set under contention, on a real nats-server: one key written
by many at once (a person's memory across their conversations) loses no write. Each test runs
on both kinds of bucket: nats-py's ``KeyValue`` and the runtime's own ``runtime._kv.Bucket``
(the actors' hot path)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js.kv import KeyValue

from protocol import HistoryEntry, SessionState
from runtime import SessionStore
from runtime._kv import Bucket
from runtime._publish import Publisher
from runtime.bus import kv_bucket

KINDS = ["nats-py", "bucket"]


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    try:
        yield client
    finally:
        await client.close()


async def _bucket(nc: Client, name: str, kind: str, *, create: bool = True) -> Any:
    """The bucket ``name`` as nats-py's KeyValue or as a runtime Bucket (created first)."""
    js = nc.jetstream()
    if create:
        await kv_bucket(js, name)
    if kind == "nats-py":
        return KeyValue(name=name, stream=f"KV_{name}", pre=f"$KV.{name}.", js=js, direct=True)
    publisher = Publisher(nc)
    await publisher.start()
    return Bucket(publisher, name)


@pytest.mark.parametrize("kind", KINDS)
async def test_many_concurrent_writers_of_one_key_all_land(nc: Client, kind: str) -> None:
    store = SessionStore(await _bucket(nc, "TEST_CAS", kind))

    async def add(i: int) -> None:
        await store.update("user.bot.alice", lambda state: state.history.append(
            HistoryEntry(role="user", text=f"message {i}")))

    async with asyncio.timeout(60):
        await asyncio.gather(*(add(i) for i in range(16)))
    state = await store.get("user.bot.alice")
    assert sorted(e.text for e in state.history) == sorted(f"message {i}" for i in range(16))


@pytest.mark.parametrize("kind", KINDS)
async def test_an_update_after_a_kept_read_skips_its_read_and_a_stale_one_loses_nothing(
        nc: Client, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``get(keep=True)`` then ``update``: the update reads nothing; when another process
    wrote the key between the two, the compare-and-set from the kept read loses, reads, and
    both writes are kept."""
    kv = await _bucket(nc, "TEST_KEPT", kind)
    store, other = SessionStore(kv), SessionStore(kv)
    reads = 0
    owner = type(kv)
    real_get = owner.get

    async def counted_get(self: Any, key: str, *args: object, **kwargs: object) -> object:
        nonlocal reads
        reads += 1
        return await real_get(self, key, *args, **kwargs)

    monkeypatch.setattr(owner, "get", counted_get)

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


@pytest.mark.parametrize("kind", KINDS)
async def test_a_bucket_no_server_serves_yet_is_read_once_it_is_served(nc: Client,
                                                                   kind: str) -> None:
    """A direct get answered "no responders" (the bucket's stream not served yet, as in a
    cluster just after it was made) is asked again until it is served, within the read's
    bound; one never served is a BrokerError after the bound."""
    from core.errors import BrokerError
    from runtime._cas import KV_TIMEOUT_S, read_entry

    js = nc.jetstream()
    early = await _bucket(nc, "TEST_LATE", kind, create=False)

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
    never = await _bucket(nc, "TEST_NEVER", kind, create=False)
    started = loop.time()
    with pytest.raises(BrokerError):
        await read_entry(never, "k", what="missing bucket")
    assert loop.time() - started <= KV_TIMEOUT_S + 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_deleted_key_is_missing_and_can_be_written_again(nc: Client, kind: str) -> None:
    """A key deleted (or purged) reads as missing, and a compare-and-set from that read
    stores a new value (from the delete marker's revision on a Bucket)."""
    from runtime._cas import compare_and_set, read_entry

    kv = await _bucket(nc, "TEST_DELETED", kind)
    plain = await kv_bucket(nc.jetstream(), "TEST_DELETED")
    await plain.put("gone", b"v1")
    await plain.delete("gone")
    value, _revision = await read_entry(kv, "gone", what="test")
    assert value is None
    stored, revision = await compare_and_set(kv, "gone", lambda old: b"v2", what="test")
    assert stored == b"v2" and (await plain.get("gone")).revision == revision
    await plain.purge("gone")
    assert (await read_entry(kv, "gone", what="test"))[0] is None
    await compare_and_set(kv, "gone", lambda old: (old or b"") + b"v3", what="test")
    assert (await plain.get("gone")).value == b"v3"
