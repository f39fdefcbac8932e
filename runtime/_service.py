"""Run one replica of one actor role until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.js import JetStreamContext

from core.config import Settings, Topology
from protocol import ActorId
from runtime._actor import Actor, Closeable, Services
from runtime._dispatch import Dispatcher
from runtime._kv import Bucket
from runtime._publish import Publisher
from runtime._pull import PullConsumer
from runtime._sessions import SessionStore
from runtime._tracing import setup_tracing
from runtime.bus import connect, ensure_consumer, kv_bucket, provision

_log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 10.0
"""A task publish JetStream has not confirmed after this many seconds fails (nak, retry)."""


async def run_actor(
    actor_cls: type[Actor],
    replica: int,
    *,
    settings: Settings,
    topology: Topology,
    nats_url: str,
    stop: asyncio.Event | None = None,
    open_artifacts: Callable[[JetStreamContext], Awaitable[Closeable | None]] | None = None,
) -> None:
    """Connect, provision, consume ``actor_cls.role``'s durable consumer until ``stop`` is set
    (or SIGTERM / SIGINT arrives), then drain for up to 10 s and disconnect.

    ``open_artifacts`` opens the deployment's artifact store once JetStream is reached (the
    composition root's; it returns None when the store is unavailable); without it the
    actors have none, and workspaces stay on this machine.

    Raises:
        BrokerError: NATS cannot be reached or JetStream provisioning fails.
    """
    role = actor_cls.role
    actor_id = ActorId(role, replica)
    stop = stop or stop_on_signals()
    setup_tracing(f"switchboard-{role}", console=settings.trace_console)
    consumer: PullConsumer | None = None

    async def _reconnected() -> None:
        _log.warning("%s reconnected to NATS; re-pulling", actor_id)
        if consumer is not None:
            consumer.reset_requests()

    async with contextlib.AsyncExitStack() as stack:
        nc = await connect(nats_url, name=str(actor_id), settings=settings,
                           reconnected_cb=_reconnected)
        stack.push_async_callback(_close, nc)
        services = await open_services(stack, nc, settings=settings, topology=topology,
                                       open_artifacts=open_artifacts)
        actor = actor_cls(services, actor_id)
        await actor.on_start()
        stack.push_async_callback(actor.on_stop)
        dispatcher = Dispatcher(actor)
        stack.push_async_callback(dispatcher.stop)
        assert services.publisher is not None
        services.publisher.after_settling(dispatcher.flush_acks)
        stream, durable = await ensure_consumer(services.js, topology.subjects, role, actor.spec)
        consumer = PullConsumer(
            nc, stream, durable, dispatcher.deliver,
            max_in_flight=actor.spec.max_in_flight, name=str(actor_id),
        )
        dispatcher.start()
        await consumer.start()
        _log.info("%s consuming %s (max %d in flight)", actor_id, stream,
                  actor.spec.max_in_flight)
        await actor.emit("started", "system", detail=str(actor_id))
        drain_s = DRAIN_TIMEOUT_S
        try:
            await stop.wait()
            _log.info("%s stopping: draining messages in flight", actor_id)
        except asyncio.CancelledError:
            drain_s = 0.0  # cancelled: abandon work in flight; JetStream redelivers it
            raise
        finally:
            await consumer.stop(drain_timeout_s=drain_s)
            await dispatcher.stop()
        await actor.emit("stopped", "system", detail=str(actor_id))


async def open_services(stack: contextlib.AsyncExitStack, nc: Client, *, settings: Settings,
                        topology: Topology,
                        open_artifacts: Callable[[JetStreamContext], Awaitable[Closeable | None]]
                        | None
                        ) -> Services:
    """Everything the actors of one process share, composed in one place: JetStream (its
    streams and consumers provisioned), the session, runs, checkpoints and users buckets, the
    confirmed publisher and the artifact store (``open_artifacts``'s, or None). What must be
    closed is pushed on ``stack`` (the publisher stopped, the artifact store closed).

    Raises:
        BrokerError: JetStream provisioning or a bucket failed.
    """
    js = nc.jetstream(timeout=10.0)
    await provision(js, topology, topology.roles)
    subjects = topology.subjects
    artifacts = await open_artifacts(js) if open_artifacts is not None else None
    if artifacts is not None:
        stack.push_async_callback(artifacts.close)
    publisher = Publisher(nc, timeout_s=PUBLISH_TIMEOUT_S)
    await publisher.start()
    stack.push_async_callback(publisher.stop)
    for bucket in (subjects.sessions_bucket, subjects.users_bucket):
        await kv_bucket(js, bucket)  # created when missing
    return Services(
        nc=nc, js=js, sessions=SessionStore(Bucket(publisher, subjects.sessions_bucket)),
        topology=topology, settings=settings, subjects=subjects,
        runs=await kv_bucket(js, subjects.runs_bucket),
        checkpoints=await kv_bucket(js, subjects.checkpoints_bucket),
        users=SessionStore(Bucket(publisher, subjects.users_bucket)),
        artifacts=artifacts, publisher=publisher,
    )


async def _close(nc: Client) -> None:
    """Drain the connection (bounded: 5 s), else close it."""
    try:
        async with asyncio.timeout(5.0):
            await nc.drain()
    except Exception:  # closing anyway
        await nc.close()


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM in the running loop (left unset where the loop
    cannot take signal handlers: another thread, Windows)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop
