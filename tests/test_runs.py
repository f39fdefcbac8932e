"""Run control on a real nats-server: the lock with its lease, abort flag, checkpoints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext

from actors import runs
from actors.run_control import Resume, answered, resume_from
from actors.runs import (
    CheckpointStore,
    LockLostError,
    RunLock,
    abort_requested,
    control_sequence,
    pack_messages,
    unpack_messages,
)
from core.config import Settings, load_topology
from core.errors import TransientError
from protocol import (
    ActorId,
    Checkpoint,
    CheckpointStatus,
    Control,
    ControlAction,
    Reply,
    RequestFacts,
    RunState,
    Subjects,
    encoder,
)
from runtime import Services, SessionStore
from runtime.bus import kv_bucket, provision

pytestmark = pytest.mark.timeout(60)
SUBJECTS = Subjects()


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    topology = load_topology()
    await provision(nc.jetstream(), topology, ["classifier"])
    yield nc.jetstream()
    await nc.close()


async def _lock(js: JetStreamContext, holder: str, request: str = "r1", ttl: float = 1.5
                ) -> RunLock:
    kv = await kv_bucket(js, SUBJECTS.runs_bucket)
    state = RunState(session="discord-1", role="python_coder", holder=holder,
                     request_id=request)
    return RunLock(js, kv, SUBJECTS.runs_bucket, state, ttl_s=ttl)


async def test_one_run_per_session_and_the_lease_is_renewed(js: JetStreamContext) -> None:
    first = await _lock(js, "python_coder/0")
    await first.acquire(wait_s=0)
    second = await _lock(js, "python_coder/1", request="r2")
    with pytest.raises(TransientError, match="busy"):
        await second.acquire(wait_s=0)
    await asyncio.sleep(2.5)  # longer than the TTL: renewals keep it
    assert (await second.current()) is not None
    await first.update(turn=3, model="m")
    assert (await second.current()).turn == 3  # type: ignore[union-attr]
    await first.release()
    await second.acquire(wait_s=0)
    await second.release()


async def test_a_dead_holders_lock_expires(js: JetStreamContext) -> None:
    dead = await _lock(js, "python_coder/0")
    await dead.acquire(wait_s=0)
    dead._released.set()  # the holder dies: no more renewals (and no release)
    waiting: list[RunState] = []

    async def told(holder: RunState) -> None:
        waiting.append(holder)

    heir = await _lock(js, "python_coder/1", request="r2")
    started = time.monotonic()
    await heir.acquire(wait_s=10, on_wait=told)
    assert time.monotonic() - started < 6
    assert waiting and waiting[0].holder == "python_coder/0"
    with pytest.raises(LockLostError):
        await dead.update(turn=9)
    await heir.release()


async def test_a_redelivery_waits_for_the_run_this_process_still_holds(
        js: JetStreamContext) -> None:
    """The broker restarted and lost the consumer's state: the same request is delivered
    again to the replica still running it. The copy waits (it must not take the lease and run
    the same turns beside the first, found by tests/test_faults.py: two commits raced in one
    workspace); a replica restarted under the same name takes its predecessor's lease at
    once."""
    running = await _lock(js, "python_coder/0")
    await running.acquire(wait_s=0)
    told: list[RunState] = []

    async def on_wait(holder: RunState) -> None:
        told.append(holder)

    copy = await _lock(js, "python_coder/0")
    with pytest.raises(TransientError, match="busy"):
        await copy.acquire(wait_s=1.5, on_wait=on_wait)
    assert not told, "a copy of the same request is not told it is queued behind itself"
    await running.update(turn=2)  # still the holder
    await running.release()
    await copy.acquire(wait_s=0)

    copy._released.set()  # the process dies holding it: no renewal, no release
    runs._HELD_HERE.clear()  # ... and the restarted replica holds nothing yet
    heir = await _lock(js, "python_coder/0")
    started = time.monotonic()
    await heir.acquire(wait_s=10)
    assert time.monotonic() - started < 1.0, "took over at once, without waiting for the TTL"
    await heir.release()


async def test_abort_is_a_flag_anyone_can_set(js: JetStreamContext) -> None:
    start = await control_sequence(js, SUBJECTS, "discord-7")
    assert not await abort_requested(js, SUBJECTS, "discord-7", start)
    control = Control(session="discord-7", action=ControlAction.ABORT, user_id="u")
    await js.publish(SUBJECTS.control("discord-7"), encoder.encode(control))
    assert await abort_requested(js, SUBJECTS, "discord-7", start)
    later = await control_sequence(js, SUBJECTS, "discord-7")
    assert not await abort_requested(js, SUBJECTS, "discord-7", later)  # only newer ones count


async def test_checkpoints_round_trip(js: JetStreamContext) -> None:
    store = CheckpointStore(await kv_bucket(js, SUBJECTS.checkpoints_bucket))
    assert await store.load("discord-1") is None
    messages = [{"role": "user", "content": "x" * 100_000}]
    checkpoint = Checkpoint(session="discord-1", request_id="m", role="python_coder",
                            request=RequestFacts(text="t"), turn=5,
                            messages=pack_messages(messages))
    await store.save(checkpoint)
    loaded = await store.load("discord-1")
    assert loaded is not None and loaded.turn == 5
    assert unpack_messages(loaded.messages) == messages
    assert len(loaded.messages) < 2_000  # compressed
    await store.delete("discord-1")
    assert await store.load("discord-1") is None


async def test_a_run_checkpoint_reads_back_whole_and_an_unreadable_one_is_ignored(
        js: JetStreamContext) -> None:
    from bench._wire_bytes import flat_messages

    kv = await kv_bucket(js, SUBJECTS.checkpoints_bucket)
    done = flat_messages()["sequential"]["checkpoint"]
    await kv.put("discord-1311874512996454400", encoder.encode(done))
    loaded = await CheckpointStore(kv).load("discord-1311874512996454400")
    assert loaded == done
    assert loaded is not None and loaded.role == "python_coder" and loaded.turn == 4
    await kv.put("discord-2", b'{"session": "discord-2"}')  # not a checkpoint: ignored, logged
    assert await CheckpointStore(kv).load("discord-2") is None
    for key in ("discord-1311874512996454400", "discord-2"):
        await CheckpointStore(kv).delete(key)


def test_how_a_delivery_goes_on_from_the_sessions_checkpoint() -> None:
    def checkpoint(status: CheckpointStatus, *, reply: bool = False) -> Checkpoint:
        return Checkpoint(session="s", request_id="r1", role="python_coder",
                          request=RequestFacts(text="t"), turn=3, status=status,
                          reply=Reply(origin="o", session="s", in_reply_to="r1", text="a")
                          if reply else None)

    assert resume_from(None, "r1", answering=False) is Resume.FRESH
    assert resume_from(None, "r1", answering=True) is Resume.SKIP  # no longer paused
    other = checkpoint(CheckpointStatus.PAUSED)
    assert resume_from(other, "r2", answering=False) is Resume.FRESH
    assert resume_from(checkpoint(CheckpointStatus.RUNNING), "r1",
                       answering=False) is Resume.CONTINUE  # a redelivery after a crash
    assert resume_from(checkpoint(CheckpointStatus.PAUSED), "r1",
                       answering=True) is Resume.CONTINUE  # the person's answer
    assert resume_from(checkpoint(CheckpointStatus.PAUSED), "r1",
                       answering=False) is Resume.SKIP  # a duplicate of the request
    for status in (CheckpointStatus.DONE, CheckpointStatus.ABORTED):
        assert resume_from(checkpoint(status, reply=True), "r1",
                           answering=False) is Resume.REPEAT
        assert resume_from(checkpoint(status), "r1", answering=False) is Resume.SKIP
    assert answered(checkpoint(CheckpointStatus.DONE, reply=True))
    assert not answered(checkpoint(CheckpointStatus.ABORTED, reply=True))
    assert encoder.encode(checkpoint(CheckpointStatus.PAUSED)).count(b'"status":"paused"') == 1


@pytest.fixture
async def services(nats_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    """An actor process's services whose run lock waits 1 s for a run that holds it."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    topology = load_topology().model_copy(update={"lock_wait_s": 1.0})
    await provision(js, topology, ["classifier"])
    sessions = SessionStore(await kv_bucket(js, SUBJECTS.sessions_bucket))
    yield Services(nc=nc, js=js, sessions=sessions, topology=topology,
                   settings=Settings(data_dir=tmp_path), subjects=SUBJECTS,
                   runs=await kv_bucket(js, SUBJECTS.runs_bucket),
                   checkpoints=await kv_bucket(js, SUBJECTS.checkpoints_bucket), users=sessions)
    await nc.close()


class _Delivery:
    """The MessageContext part a control handler uses before it acts: its events."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def emit(self, kind: str, **fields: object) -> None:
        self.events.append(kind)


@pytest.mark.parametrize("action", [ControlAction.MERGE, ControlAction.DISCARD,
                                    ControlAction.DELETE_SESSION])
async def test_merge_discard_and_delete_wait_for_the_run_that_holds_the_session(
        services: Services, action: ControlAction) -> None:
    """A control on a session whose run holds the lock (still committing, syncing its
    workspace) waits for it up to ``lock_wait_s``, then is delivered again later
    (TransientError) having changed nothing: a deleted thread's session as a merge or a
    discard of its branch."""
    from actors.agent import agent_class
    from actors.reflector import Reflector
    from artifacts import Workspace

    session = f"discord-held-{action}"
    store = CheckpointStore(services.checkpoints)
    await store.save(Checkpoint(session=session, request_id="r1", role="python_coder",
                                request=RequestFacts(text="t"), turn=2))
    workspace = Workspace.for_session(services.settings.workspace_root, session)
    workspace.root.mkdir(parents=True, exist_ok=True)
    (workspace.root / "kept.txt").write_text("mine")
    run = RunLock(services.js, services.runs, SUBJECTS.runs_bucket,
                  RunState(session=session, role="python_coder", holder="python_coder/1",
                           request_id="r1"), ttl_s=5.0)
    await run.acquire(wait_s=0)
    control = Control(session=session, action=action, role="python_coder", branch="sb/x",
                      message_id="m1")
    actor = (Reflector(services, ActorId("reflector")) if action is ControlAction.DELETE_SESSION
             else agent_class("python_coder")(services, ActorId("python_coder")))
    delivery = _Delivery()
    try:
        started = time.monotonic()
        with pytest.raises(TransientError, match="busy"):
            await actor.on_control(control, delivery)
        assert time.monotonic() - started >= 0.9, "waited for the run first"
        holder = await run.current()
        assert holder is not None and holder.holder == "python_coder/1"
        assert await store.load(session) is not None
        assert (workspace.root / "kept.txt").read_text() == "mine"
        assert not delivery.events
    finally:
        await run.release()
    if action is ControlAction.DELETE_SESSION:  # the run ended: now the session goes
        await actor.on_control(control, delivery)
        assert delivery.events == ["session_deleted"]
        assert await store.load(session) is None
        assert not workspace.root.exists()
    await store.delete(session)
