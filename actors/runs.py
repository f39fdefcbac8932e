"""The stores of SEQUENTIAL runs (docs/design.md#the-agentic-loop): the run lock (one execution per
session), the abort flag, checkpoints. When to take the lock, read the flag or write which
checkpoint status is ``actors.run_control``'s.

- **Lock**: the session's key in the runs bucket, created with compare-and-set (``create``
  fails when the key exists) and a per-key TTL (``Nats-TTL``, NATS 2.11+) that the holder
  renews every third of the TTL. A crashed holder stops renewing and its lock expires, so the
  redelivered task can take it on any replica. A replica restarted under the same name takes
  its predecessor's lease on the same request at once; a delivery of a request that this very
  process is still running (the broker redelivers it after a restart that lost the consumer's
  state) waits for that run like any other, and then finds it finished in its checkpoint. The
  value is the ``RunState`` ``/status`` reads.
- **Abort**: a ``Control(action=abort)`` on ``<prefix>.control.<session>`` (the control stream
  keeps it); the loop checks the subject's last message at the start of each turn, so anyone —
  a gateway, any replica, ``nats pub`` — can set the flag.
- **Checkpoints**: ``Checkpoint`` values in the checkpoints bucket, one per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from core.errors import BrokerError, LockLostError, TransientError
from modelcall import without_images
from protocol import (
    Checkpoint,
    ControlAction,
    RunState,
    Subjects,
    checkpoint_decoder,
    control_decoder,
    encoder,
    run_decoder,
)

_log = logging.getLogger(__name__)

KV_TIMEOUT_S = 5.0
LOCK_POLL_S = 1.0
CHECKPOINT_EVERY = 5
"""Turns between two checkpoints (docs/design.md#the-agentic-loop)."""

_HELD_HERE: set[tuple[str, str]] = set()
"""(session, request id) of the leases this process holds: a lease of the same holder and
request that is not in it was left by a predecessor of this replica, and is taken over."""


class RunLock:
    """The lease on one session's run, renewed in the background while held.

    Args:
        js: JetStream context.
        kv: the runs bucket.
        state: the run's state; ``state.holder`` names this replica.
        ttl_s: lease time in seconds; renewed every ``ttl_s / 3``.
    """

    def __init__(self, js: JetStreamContext, kv: KeyValue, bucket: str, state: RunState, *,
                 ttl_s: float) -> None:
        self._js = js
        self._kv = kv
        self._subject = f"$KV.{bucket}.{state.session}"
        self.state = state
        self._ttl_s = ttl_s
        self._revision = 0
        self._renewer: asyncio.Task[None] | None = None
        self._released = asyncio.Event()
        self._writing = asyncio.Lock()
        self.lost = asyncio.Event()
        self._key = (state.session, state.request_id)

    async def acquire(self, *, wait_s: float, on_wait: Any = None) -> None:
        """Take the lock, waiting up to ``wait_s`` seconds while another run holds it.

        ``on_wait`` (an async callable taking the holder's RunState) is awaited once when the
        lock is busy, to tell the person their request is queued.

        Raises:
            TransientError: still held by another run after ``wait_s`` (the task is retried).
            BrokerError: the bucket does not answer.
        """
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            now = time.time()
            self.state.started_at = self.state.started_at or now
            self.state.updated_at = now
            try:
                self._revision = await self._put(await self._last_revision())
                break
            except nats.js.errors.KeyWrongLastSequenceError:
                holder = await self.current()
                same_run = holder is not None and holder.request_id == self.state.request_id
                if same_run and holder is not None and holder.holder == self.state.holder and (
                        self._key not in _HELD_HERE):
                    await self._kv.delete(self.state.session)  # our predecessor's lease
                    continue
                if not told and on_wait is not None and holder is not None and not same_run:
                    told = True
                    await on_wait(holder)
            except (TimeoutError, nats.errors.Error) as exc:
                msg = f"runs bucket did not answer for {self.state.session}: {exc!r}"
                raise BrokerError(msg) from exc
            if time.monotonic() > deadline:
                msg = f"session {self.state.session} is busy with another run"
                raise TransientError(msg)
            await asyncio.sleep(LOCK_POLL_S)
        _HELD_HERE.add(self._key)
        self._renewer = asyncio.create_task(self._renew_loop(),
                                            name=f"lease:{self.state.session}")

    async def _last_revision(self) -> int:
        """0 when the key is absent or deleted (so ``create`` semantics), else -1 (busy)."""
        try:
            async with asyncio.timeout(KV_TIMEOUT_S):
                entry = await self._kv.get(self.state.session)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError) as exc:
            # A deleted key still has a last revision (its delete marker) to compare with.
            marker = getattr(exc, "entry", None)
            return int(marker.revision or 0) if marker is not None else 0
        return -1 if entry.value else int(entry.revision or 0)

    async def _put(self, last: int) -> int:
        """Write the state if the key's last revision is ``last``, with the lease TTL.

        The KV client's ``update`` takes no TTL, so this publishes the KV message itself:
        ``Nats-Expected-Last-Subject-Sequence`` for compare-and-set and ``Nats-TTL`` for the
        lease (ADR-8 "JetStream based Key-Value Stores", ADR-43 per-message TTL).
        """
        if last < 0:
            raise nats.js.errors.KeyWrongLastSequenceError(description="busy")
        headers = {"Nats-Expected-Last-Subject-Sequence": str(last)}
        try:
            async with asyncio.timeout(KV_TIMEOUT_S):
                ack = await self._js.publish(self._subject, encoder.encode(self.state),
                                             headers=headers, msg_ttl=self._ttl_s)
        except nats.js.errors.APIError as exc:
            if exc.err_code in (10071, 10164):  # wrong last sequence
                raise nats.js.errors.KeyWrongLastSequenceError(
                    description=exc.description) from exc
            raise
        return int(ack.seq)

    async def current(self) -> RunState | None:
        """The state stored under the session's key, or None when no run holds it."""
        try:
            async with asyncio.timeout(KV_TIMEOUT_S):
                entry = await self._kv.get(self.state.session)
        except nats.js.errors.KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return run_decoder.decode(entry.value)

    async def update(self, **changes: Any) -> None:
        """Change the stored state (turn, model, confidence, status) and renew the lease.

        Raises:
            LockLostError: another holder took the lock.
        """
        for key, value in changes.items():
            setattr(self.state, key, value)
        await self._write()

    async def _write(self) -> None:
        async with self._writing:  # a renewal and an update must not race on one revision
            self.state.updated_at = time.time()
            await self._write_locked()

    async def _write_locked(self) -> None:
        try:
            self._revision = await self._put(self._revision)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            self.lost.set()
            msg = f"lost the run lock of {self.state.session}"
            raise LockLostError(msg) from exc

    async def _renew_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ttl_s / 3):
                    await self._released.wait()
                return  # released: never cut a renewal short (its revision would be lost)
            try:
                await self._write()
            except LockLostError:
                _log.error("session %s: run lock lost", self.state.session)
                return
            except (TimeoutError, nats.errors.Error) as exc:
                _log.warning("session %s: lease renewal failed: %s", self.state.session, exc)

    async def release(self) -> None:
        """Stop renewing and delete the lock (when still ours)."""
        self._released.set()
        _HELD_HERE.discard(self._key)
        if self._renewer is not None:
            try:
                async with asyncio.timeout(KV_TIMEOUT_S + 1):
                    await self._renewer
            except TimeoutError:
                self._renewer.cancel()
        if self.lost.is_set():
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(KV_TIMEOUT_S):
                await self._kv.delete(self.state.session, last=self._revision)


async def control_sequence(js: JetStreamContext, subjects: Subjects, session: str) -> int:
    """The sequence of the session's last control message (0 when there is none)."""
    try:
        async with asyncio.timeout(KV_TIMEOUT_S):
            msg = await js.get_last_msg(subjects.control_stream, subjects.control(session))
    except nats.js.errors.NotFoundError:
        return 0
    except (TimeoutError, nats.errors.Error) as exc:
        _log.warning("session %s: control stream did not answer: %s", session, exc)
        return 0
    return msg.seq or 0


async def abort_requested(js: JetStreamContext, subjects: Subjects, session: str,
                          after_seq: int) -> bool:
    """Whether an abort for ``session`` was published after stream sequence ``after_seq``."""
    try:
        async with asyncio.timeout(KV_TIMEOUT_S):
            msg = await js.get_last_msg(subjects.control_stream, subjects.control(session))
    except nats.js.errors.NotFoundError:
        return False
    except (TimeoutError, nats.errors.Error) as exc:
        _log.warning("session %s: control stream did not answer: %s", session, exc)
        return False
    if (msg.seq or 0) <= after_seq or not msg.data:
        return False
    try:
        return control_decoder.decode(msg.data).action is ControlAction.ABORT
    except msgspec.DecodeError:
        return False


class CheckpointStore:
    """Checkpoints of runs, one per session, in the checkpoints bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def load(self, session: str) -> Checkpoint | None:
        try:
            async with asyncio.timeout(KV_TIMEOUT_S):
                entry = await self._kv.get(session)
        except nats.js.errors.KeyNotFoundError:
            return None
        except (TimeoutError, nats.errors.Error) as exc:
            msg = f"checkpoints bucket did not answer for {session}: {exc!r}"
            raise BrokerError(msg) from exc
        if not entry.value:
            return None
        try:
            return checkpoint_decoder.decode(entry.value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            _log.error("session %s: unreadable checkpoint ignored: %s", session, exc)
            return None

    async def save(self, checkpoint: Checkpoint) -> None:
        checkpoint.at = time.time()
        try:
            async with asyncio.timeout(KV_TIMEOUT_S):
                await self._kv.put(checkpoint.session, encoder.encode(checkpoint))
        except (TimeoutError, nats.errors.Error) as exc:
            msg = f"checkpoint of {checkpoint.session} not saved: {exc!r}"
            raise BrokerError(msg) from exc

    async def delete(self, session: str) -> None:
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            async with asyncio.timeout(KV_TIMEOUT_S):
                await self._kv.delete(session)


def pack_messages(messages: list[dict[str, Any]]) -> bytes:
    """The model conversation, compressed for a checkpoint (zlib over compact JSON). Image
    parts are left out (a checkpoint is a KV value, and the images stay in the workspace):
    their messages keep the text parts, whose lines name each image's workspace path."""
    return zlib.compress(json.dumps(without_images(messages), separators=(",", ":")).encode(), 6)


def unpack_messages(data: bytes) -> list[dict[str, Any]]:
    return list(json.loads(zlib.decompress(data))) if data else []
