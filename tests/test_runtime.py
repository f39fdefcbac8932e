"""The actor runtime against a real nats-server: ack, nak + redelivery, dead letters,
concurrency in flight, de-duplication, and redelivery after a replica dies mid-task."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import msgspec
import nats
import nats.aio.client
import pytest
from waiting import eventually

from core.config import Settings, Topology, load_topology
from core.errors import PermanentError, TransientError
from gateway.bridge import Bridge
from protocol import (
    ChatMessage,
    DeadLetter,
    ExecutionEvent,
    Outbound,
    Reply,
    ReplyTo,
    RequestFacts,
    TurnResult,
    dead_letter_decoder,
    encoder,
    event_decoder,
)
from runtime import Actor, MessageContext, handler, run_actor
from runtime.bus import provision

pytestmark = pytest.mark.timeout(60)


async def _is_zero(count: Any) -> bool:
    return await count == 0


class Probe(Actor):
    """A classifier stand-in whose behaviour is chosen by the message text."""

    role = "classifier"
    inside: ClassVar[int] = 0
    most_inside: ClassVar[int] = 0
    release: ClassVar[asyncio.Event]
    hung: ClassVar[asyncio.Event]
    handled: ClassVar[list[str]] = []

    @handler
    async def on_chat(self, message: ChatMessage, ctx: MessageContext) -> None:
        text = message.text
        if text == "fail-once" and ctx.deliveries == 1:
            raise TransientError("the model hiccuped")
        if text == "always-fail":
            raise TransientError("the model is down")
        if text == "permanent":
            raise PermanentError("this request can never work")
        if text.startswith("block"):
            Probe.inside += 1
            Probe.most_inside = max(Probe.most_inside, Probe.inside)
            try:
                await Probe.release.wait()
            finally:
                Probe.inside -= 1
        if text == "time-out-once" and ctx.deliveries == 1:
            # A bounded wait that runs out in the handler's first step, as a KV call does
            # when the broker restarts (asyncio.timeout binds to the current task).
            async with asyncio.timeout(0.2):
                await asyncio.sleep(5)
        if text == "hang" and ctx.deliveries == 1:
            Probe.hung.set()
            await asyncio.Event().wait()
        if text.startswith("store:"):
            # "store:<bucket>": a KV put confirmed before the ack.
            await ctx.store(text.removeprefix("store:"), f"probe-{message.message_id}",
                            message.text.encode())
        Probe.handled.append(text)
        await ctx.reply(message.origin, ReplyTo.of(message).build(Reply, text=f"ok:{text}"))


def _topology(**classifier: Any) -> Topology:
    base = load_topology()
    spec = {"ack_wait_s": 2.0, "max_deliveries": 3, "nak_delay_s": 0.05,
            "max_in_flight": 8, **classifier}
    return base.model_copy(update={"actors": {**base.actors, "classifier":
                                               base.actor("classifier").model_copy(update=spec)}})


class Harness:
    def __init__(self, url: str, topology: Topology) -> None:
        self.url, self.topology = url, topology
        self.replies: dict[str, Reply] = {}
        self.arrived = asyncio.Condition()
        self.nc: nats.aio.client.Client
        self.bridge: Bridge
        self._actors: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def __aenter__(self) -> Harness:
        self.nc = await nats.connect(self.url)
        await provision(self.nc.jetstream(), self.topology, self.topology.roles)
        self.bridge = Bridge(self.nc, self.topology.subjects, "test-origin")
        await self.bridge.start(self._on_outbound)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for stop, task in self._actors:
            stop.set()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 15)
        await self.bridge.stop()
        await self.nc.close()

    async def _on_outbound(self, message: Outbound) -> None:
        if isinstance(message, Reply):
            async with self.arrived:
                self.replies[message.in_reply_to] = message
                self.arrived.notify_all()

    def start_actor(self, replica: int = 0) -> tuple[asyncio.Event, asyncio.Task[None]]:
        stop = asyncio.Event()
        task = asyncio.create_task(run_actor(Probe, replica, settings=Settings(),
                                             topology=self.topology, nats_url=self.url,
                                             stop=stop))
        self._actors.append((stop, task))
        return stop, task

    async def send(self, text: str, message_id: str | None = None) -> str:
        message_id = message_id or uuid.uuid4().hex
        await self.bridge.send(ChatMessage(message_id=message_id, session="terminal-test",
                                           origin="test-origin", user_id="u1", text=text))
        return message_id

    async def reply_to(self, message_id: str, wait_s: float = 20) -> Reply:
        async with asyncio.timeout(wait_s), self.arrived:
            await self.arrived.wait_for(lambda: message_id in self.replies)
        return self.replies[message_id]

    async def stream_messages(self, stream: str) -> int:
        info = await self.nc.jetstream().stream_info(stream)
        return info.state.messages

    async def dead_letters(self, count: int, wait_s: float = 20) -> list[DeadLetter]:
        js = self.nc.jetstream()
        sub = await js.subscribe(self.topology.subjects.dead_letter("classifier"),
                                 ordered_consumer=True)
        letters: list[DeadLetter] = []
        async with asyncio.timeout(wait_s):
            while len(letters) < count:
                msg = await sub.next_msg(timeout=wait_s)
                letters.append(dead_letter_decoder.decode(msg.data))
        await sub.unsubscribe()
        return letters


@pytest.fixture
async def harness(nats_url: str) -> AsyncIterator[Harness]:
    Probe.inside = Probe.most_inside = 0
    Probe.release = asyncio.Event()
    Probe.hung = asyncio.Event()
    Probe.handled = []
    async with Harness(nats_url, _topology()) as h:
        yield h


async def test_handled_message_is_acked_and_answered(harness: Harness) -> None:
    harness.start_actor()
    reply = await harness.reply_to(await harness.send("hello"))
    assert reply.text == "ok:hello"
    # Work-queue retention: an acked task leaves the stream.
    subjects = harness.topology.subjects
    stream = subjects.task_stream("classifier")
    await eventually(lambda: _is_zero(harness.stream_messages(stream)), within_s=5,
                     what="the acked task leaves the work-queue stream")


async def test_transient_failure_is_redelivered_and_then_answered(harness: Harness) -> None:
    events: list[ExecutionEvent] = []

    async def _append(msg: Any) -> None:
        events.append(event_decoder.decode(msg.data))

    sub = await harness.nc.subscribe(harness.topology.subjects.event("classifier", "retry"),
                                     cb=_append)
    harness.start_actor()
    reply = await harness.reply_to(await harness.send("fail-once"))
    assert reply.text == "ok:fail-once"
    assert reply.error is None
    assert any("the model hiccuped" in e.detail for e in events)
    await sub.unsubscribe()


async def test_repeated_failure_goes_to_dead_letter_and_user_is_told(harness: Harness) -> None:
    answered: asyncio.Queue[ExecutionEvent] = asyncio.Queue()

    async def _put(msg: Any) -> None:
        await answered.put(event_decoder.decode(msg.data))

    sub = await harness.nc.subscribe(harness.topology.subjects.event("classifier", "answered"),
                                     cb=_put)
    harness.start_actor()
    message_id = await harness.send("always-fail")
    reply = await harness.reply_to(message_id)
    assert reply.error == "dead_letter"
    assert "the model is down" in reply.text
    # The failure's answer is an ``answered`` event like any other (the report's outcomes).
    event = await asyncio.wait_for(answered.get(), 10)
    assert (event.request_id, event.detail) == (message_id, "dead_letter")
    await sub.unsubscribe()
    [letter] = await harness.dead_letters(1)
    assert letter.deliveries == 3
    original = msgspec.json.decode(letter.data)
    assert original["message_id"] == message_id  # the original bytes are kept


async def test_permanent_error_dead_letters_without_retry(harness: Harness) -> None:
    harness.start_actor()
    reply = await harness.reply_to(await harness.send("permanent"))
    assert reply.error is not None
    [letter] = await harness.dead_letters(1)
    assert letter.deliveries == 1
    assert "can never work" in letter.reason


async def test_a_timeout_in_a_handler_leaves_the_actor_receiving(harness: Harness) -> None:
    """The first step of a handler must run as its own task: an ``asyncio.timeout`` it
    enters, when it fires, once cancelled nats-py's message loop of the pull inbox instead,
    and the actor never received another message (found by tests/test_faults.py)."""
    harness.start_actor()
    first = await harness.send("time-out-once")
    assert (await harness.reply_to(first)).text == "ok:time-out-once"  # retried after it
    later = await harness.send("hello")
    assert (await harness.reply_to(later)).text == "ok:hello"


async def test_malformed_and_unhandled_messages_are_dead_lettered(harness: Harness) -> None:
    harness.start_actor()
    js = harness.nc.jetstream()
    subject = harness.topology.subjects.task("classifier")
    await js.publish(subject, b"{not json")
    await js.publish(subject, b'{"type":"evaluation","nonsense":1}')
    # Invalid UTF-8 inside a string: msgspec raises UnicodeDecodeError, protocol's decoders
    # a DecodeError (found by tests/test_fuzz.py).
    await js.publish(subject, b'{"type":"chat_message","message_id":"\x80"}')
    await js.publish(subject, encoder.encode(TurnResult(
        reply_to=ReplyTo(session="terminal-x", origin="test-origin", in_reply_to="m"),
        request_id="m", role="python_coder", request=RequestFacts(text="t", user_id="u"))))
    letters = await harness.dead_letters(4)
    errors = {bytes(letter.data): letter.error for letter in letters}
    assert sorted(errors.values()) == ["MalformedMessageError"] * 3 + ["UnhandledMessageError"]
    assert errors[b"{not json"] == "MalformedMessageError"
    assert errors[b'{"type":"chat_message","message_id":"\x80"}'] == "MalformedMessageError"
    unhandled = next(letter for letter in letters if letter.error == "UnhandledMessageError")
    assert unhandled.reason.startswith("UnhandledMessageError: ")
    assert "turn_result" in unhandled.reason  # the message type it had no handler for


async def test_a_stored_value_is_in_the_bucket_when_the_task_is_acked(harness: Harness) -> None:
    harness.start_actor()
    bucket = harness.topology.subjects.runs_bucket
    message_id = await harness.send(f"store:{bucket}")
    assert (await harness.reply_to(message_id)).text == f"ok:store:{bucket}"
    kv = await harness.nc.jetstream().key_value(bucket)
    assert (await kv.get(f"probe-{message_id}")).value == f"store:{bucket}".encode()


async def test_a_put_no_bucket_stores_fails_the_task_until_it_is_dead_lettered(
        harness: Harness) -> None:
    """The Reply published in the same delivery is already out (JetStream drops its copies
    on redelivery); the put that cannot be stored fails the delivery each time."""
    harness.start_actor()
    await harness.send("store:NO_SUCH_BUCKET")
    [letter] = await harness.dead_letters(1)
    assert letter.deliveries == 3
    assert "no stream stores $KV.NO_SUCH_BUCKET" in letter.reason


async def test_the_trace_continues_through_a_delivery(harness: Harness) -> None:
    """The Reply's ``traceparent`` and the ``handled`` event carry the request's trace id
    under a new span id (no exporter configured: the delivery makes no span object)."""
    subjects = harness.topology.subjects
    outbound: list[Any] = []
    handled: list[ExecutionEvent] = []

    async def _outbound(msg: Any) -> None:
        outbound.append(msg)

    async def _handled(msg: Any) -> None:
        handled.append(event_decoder.decode(msg.data))

    await harness.nc.subscribe(subjects.outbox("test-origin"), cb=_outbound)
    await harness.nc.subscribe(subjects.event("classifier", "handled"), cb=_handled)
    harness.start_actor()
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    message_id = uuid.uuid4().hex
    message = ChatMessage(message_id=message_id, session="terminal-trace",
                          origin="test-origin", user_id="u1", text="traced")
    await harness.nc.jetstream().publish(
        subjects.task("classifier"), msgspec.json.encode(message),
        headers={"traceparent": f"00-{trace_id}-{parent}-01", "Sb-Session": message.session})
    await harness.reply_to(message_id)
    await eventually(lambda: bool(handled) and bool(outbound), within_s=5,
                     what="the reply and the handled event")
    version, reply_trace, span_id, flags = outbound[-1].headers["traceparent"].split("-")
    assert (version, reply_trace, flags) == ("00", trace_id, "01")
    assert span_id != parent and len(span_id) == 16
    assert handled[-1].trace_id == trace_id


async def test_a_waiting_handler_does_not_block_the_inbox(harness: Harness) -> None:
    harness.start_actor()
    ids = [await harness.send(f"block-{i}") for i in range(3)]
    quick = await harness.send("quick")
    assert (await harness.reply_to(quick)).text == "ok:quick"  # answered while 3 wait
    await eventually(lambda: Probe.inside == 3, within_s=10, what="3 handlers waiting at once")
    Probe.release.set()
    for message_id in ids:
        await harness.reply_to(message_id)
    assert Probe.most_inside == 3


async def test_a_duplicate_publish_is_handled_once(harness: Harness) -> None:
    harness.start_actor()
    message_id = uuid.uuid4().hex
    await harness.send("once", message_id)
    await harness.send("once", message_id)  # same Nats-Msg-Id: de-duplicated by JetStream
    await harness.reply_to(message_id)
    marker = await harness.send("after")
    await harness.reply_to(marker)
    assert Probe.handled.count("once") == 1


async def test_task_of_a_dead_replica_is_redelivered_to_another(harness: Harness) -> None:
    _stop, first = harness.start_actor(replica=0)
    message_id = await harness.send("hang")
    async with asyncio.timeout(10):
        await Probe.hung.wait()
    # The replica dies without acking (its task is cancelled mid-handler, its connection
    # closes): JetStream redelivers after ack_wait to the replica that is still alive.
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await first
    harness.start_actor(replica=1)
    reply = await harness.reply_to(message_id, wait_s=30)
    assert reply.text == "ok:hang"
