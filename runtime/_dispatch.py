"""One delivery's life: decode, route to the handler, then ack, nak or terminate it.

Outcomes (explicit, decided here and nowhere else):

- handler returned: **ack**.
- ``TransientError`` (model error, KV race, broker hiccup) or an unexpected exception:
  **nak** with a delay of ``nak_delay_s * 2**(deliveries-1)`` seconds (at most 30), so
  JetStream redelivers it; on the last allowed delivery, dead-letter instead.
- ``NotDueError`` (a deadline not reached yet): **nak** with its ``due_in_s`` delay; not a
  failure.
- ``PermanentError`` (malformed bytes, no handler, a model request no retry fixes: bad key,
  unknown model, bad request): **term** and dead-letter.
- delivered more than ``max_deliveries`` times (a replica crashed on it each time): dead-letter
  without running the handler.

Dead-lettering publishes a ``DeadLetter`` with the original bytes and headers to
``<prefix>.dlq.<role>`` and, when the person is still waiting for an answer, a ``Reply`` that
says what went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sys
import time
import typing
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import nats.errors
from nats.aio.msg import Msg

from core.errors import (
    BrokerError,
    HandlerError,
    MalformedMessageError,
    ModelError,
    ModelRejectedError,
    ModelTimeoutError,
    NotDueError,
    PermanentError,
    TransientError,
    UnhandledMessageError,
)
from protocol import (
    HEADER_SESSION,
    DeadLetter,
    ErrorCode,
    Reply,
    ReplyTo,
    TaskMessage,
    task_decoder,
    type_tag,
)
from runtime._actor import Actor, Confirmations, MessageContext, _js_publish
from runtime._addressing import request_of, session_of, waiting_request
from runtime._tracing import DeliveryTrace, begin_delivery, record_error

_NO_TRACE = DeliveryTrace("", "", None)
_EAGER_TASKS = sys.version_info >= (3, 12)
"""``asyncio.Task(..., eager_start=True)``: the first step runs at once, as the new task."""
_Task: Any = asyncio.Task
_log = logging.getLogger(__name__)

MAX_NAK_DELAY_S = 30.0


def _error_code(exc: BaseException) -> ErrorCode:
    if isinstance(exc, ModelTimeoutError):
        return ErrorCode.MODEL_TIMEOUT
    if isinstance(exc, ModelError):
        return ErrorCode.MODEL_ERROR
    if isinstance(exc, MalformedMessageError):
        return ErrorCode.MALFORMED
    if isinstance(exc, TimeoutError):
        return ErrorCode.TIMEOUT
    return ErrorCode.DEAD_LETTER


class _Delivery(Confirmations):
    """One delivery being handled: the message, its trace and context, and (as
    ``Confirmations``) its publishes JetStream has not confirmed yet."""

    __slots__ = ("context", "ctx", "deliveries", "dispatcher", "done", "handler_done",
                 "message", "msg", "request", "seq", "session", "decided", "started", "step",
                 "trace")

    def __init__(self, dispatcher: Dispatcher, msg: Msg, message: TaskMessage, session: str,
                 step: str, deliveries: int, seq: int, started: float,
                 done: Callable[[], None]) -> None:
        super().__init__()
        self.dispatcher = dispatcher
        self.msg, self.message, self.session, self.step = msg, message, session, step
        self.request = request_of(message)
        self.deliveries, self.seq, self.started, self.done = deliveries, seq, started, done
        self.context = contextvars.copy_context()
        self.trace: DeliveryTrace | None = None
        self.ctx: MessageContext | None = None
        self.handler_done = False
        self.decided = False

    def idle(self) -> None:
        self.dispatcher._confirmed(self)


def _ack_info(msg: Msg) -> tuple[int, int]:
    """(delivery count, stream sequence) from the ack subject
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>``
    (the 9-token form nats-py's ``Msg.Metadata._from_reply`` parses; the longer form with a
    domain and account hash goes through nats-py itself)."""
    reply = msg.reply
    tokens = reply.split(".") if reply else []
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[4]), int(tokens[5])
    meta = msg.metadata
    return meta.num_delivered, meta.sequence.stream


class Dispatcher:
    """Settles every delivery of one actor replica (see the module docstring).

    A delivery's handler runs as a named task of its own, in the delivery's own
    ``contextvars`` context (its span is current there; see ``_run`` for why never inline
    in the pull subscription's callback). The delivery is acked once the handler returned and
    JetStream confirmed everything it published; acks (and the ``handled`` events) go out from
    the PubAck callback that completed them (``Publisher.after_settling``), or from one task
    for deliveries that published nothing to wait for. A delivery still open after
    ``ack_wait_s / 3`` seconds (at least 0.5) gets a progress ack every such period from one
    keep-alive task, so a long model call is not redelivered to another replica while this one
    is alive.
    """

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self.spec = actor.spec
        self._keepalive_s = max(0.5, self.spec.ack_wait_s / 3)
        self._open: dict[int, _Delivery] = {}
        self._acks: list[_Delivery] = []
        self._ack_wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._role = actor.actor_id.role
        self._subject = actor.services.subjects.task(self._role)  # names delivery spans
        self._handlers = {kind: getattr(actor, name) for kind, name in actor.handlers.items()}

    def start(self) -> None:
        """Start the acking and keep-alive tasks."""
        self._workers = [
            asyncio.create_task(self._run_acks(), name=f"acks:{self._role}"),
            asyncio.create_task(self._run_keepalive(), name=f"keepalive:{self._role}"),
        ]

    async def stop(self) -> None:
        """Cancel handlers still running (JetStream redelivers their messages after
        ``ack_wait``), send the acks already due, and stop the tasks; bounded to 5 s."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3.0):
                await self.flush_acks()
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.cancel()
        if workers:
            await asyncio.wait(workers, timeout=1.0)

    def deliver(self, msg: Msg, done: Callable[[], None]) -> None:
        """Handle one delivery; ``done`` is called once it is acked, nakked or terminated (or
        abandoned at shutdown)."""
        started = time.perf_counter()
        deliveries, seq = _ack_info(msg)
        headers = msg.headers
        session = headers.get(HEADER_SESSION, "") if headers else ""
        try:
            message = task_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            malformed = MalformedMessageError(f"not a Switchboard task message: {exc}")
            self._spawn(self._dead_letter_then(msg, None, session or "unknown", malformed,
                                               deliveries, done), "dead-letter", None)
            return
        session = session_of(message)
        step = type_tag(message)
        if deliveries > self.spec.max_deliveries:
            error = HandlerError(
                f"delivered {deliveries} times without being acknowledged "
                f"(the handler crashed or timed out each time)"
            )
            self._spawn(self._dead_letter_then(msg, message, session, error, deliveries, done),
                        "dead-letter", None)
            return
        delivery = _Delivery(self, msg, message, session, step, deliveries, seq, started, done)
        self._open[id(delivery)] = delivery
        self._spawn(self._run(delivery), step, delivery.context, eager=True)

    async def _run(self, d: _Delivery) -> None:
        """The delivery's own task, in the delivery's own context: its span, then its handler.

        Never run a handler's first step inline in the subscription's callback: whatever it
        starts there belongs to the subscription's task (``asyncio.current_task()``), so an
        ``asyncio.timeout`` entered in that step, when it fires, cancels nats-py's message
        loop of the pull inbox, and the actor receives nothing more (found by
        ``tests/test_faults.py``: a KV call that timed out in a broker restart). On Python
        3.12+ the task starts eagerly: the first step still runs at once, as the task (which
        enters the delivery's context itself: the span is begun here, in the task, and not
        in a ``Context.run`` around its creation, where entering it again fails)."""
        d.trace = begin_delivery(self._role, d.step, d.msg.headers, d.session, self._subject)
        handler = self._handlers.get(type(d.message))
        if handler is None:
            text = f"{self._role} has no handler for '{d.step}' messages"
            self._handler_failed(d, UnhandledMessageError(text))
            return
        ctx = MessageContext(actor=self.actor, session=d.session, stream_seq=d.seq,
                             deliveries=d.deliveries, confirmations=d, request_id=d.request)
        d.ctx = ctx
        try:
            await typing.cast(Coroutine[Any, Any, None], handler(d.message, ctx))
        except asyncio.CancelledError:
            self._close(d)  # abandoned at shutdown: JetStream redelivers it after ack_wait
            raise
        except Exception as exc:  # every failure is settled explicitly
            self._handler_failed(d, exc)
            return
        self._handler_returned(d)

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str,
               context: contextvars.Context | None, *, eager: bool = False) -> None:
        loop = asyncio.get_running_loop()
        name = f"{self._role}:{what}"
        if eager and _EAGER_TASKS:
            task = _Task(coro, loop=loop, name=name, context=context, eager_start=True)
            if task.done():
                return
        else:
            task = loop.create_task(coro, name=name, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _handler_returned(self, d: _Delivery) -> None:
        d.handler_done = True
        if d.pending == 0:
            self._complete(d, wake=True)

    def _confirmed(self, d: _Delivery) -> None:
        # From a PubAck callback (the publisher then awaits flush_acks), or with an error.
        if d.handler_done:
            self._complete(d, wake=False)

    def _complete(self, d: _Delivery, *, wake: bool) -> None:
        """The handler returned and every publish is answered: ack (``wake``: by the acking
        task, else by the PubAck callback that got here), or retry on a failed publish."""
        if d.decided:
            return
        d.decided = True
        error = d.error
        if error is not None:
            self._spawn(self._fail(d, error), "retry", d.context)
            return
        self._acks.append(d)
        if wake:
            self._ack_wake.set()

    def _handler_failed(self, d: _Delivery, exc: Exception) -> None:
        if d.decided:
            return
        d.decided = True
        if not isinstance(exc, NotDueError):
            record_error(exc)
        self._spawn(self._fail(d, exc), "failed", d.context)

    async def _fail(self, d: _Delivery, exc: Exception) -> None:
        try:
            if isinstance(exc, NotDueError):
                self.actor.log.info("session %s: %s not due for %.1f s: %s", d.session,
                                    d.step, exc.due_in_s, exc)
                await d.msg.nak(delay=exc.due_in_s)
            elif isinstance(exc, PermanentError):
                await self._dead_letter(d.msg, d.message, d.session, exc, d.deliveries)
            else:
                await self._retry_or_dead_letter(d.msg, d.message, d.session, exc,
                                                 d.deliveries)
        finally:
            self._close(d)

    async def _dead_letter_then(self, msg: Msg, message: TaskMessage | None, session: str,
                                exc: BaseException, deliveries: int,
                                done: Callable[[], None]) -> None:
        try:
            await self._dead_letter(msg, message, session, exc, deliveries)
        finally:
            done()

    def _close(self, d: _Delivery) -> None:
        if self._open.pop(id(d), None) is None:
            return
        if d.trace is not None:
            d.trace.end()
        d.done()

    async def _run_acks(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._ack_wake.wait()
            self._ack_wake.clear()
            await self.flush_acks()

    async def flush_acks(self) -> None:
        """Ack the deliveries due, then emit their ``handled`` events."""
        batch, self._acks = self._acks, []
        if not batch:
            return
        nc = self.actor.services.nc
        now = time.perf_counter()
        for d in batch:
            try:
                await nc.publish(d.msg.reply, b"+ACK")
            except nats.errors.Error as exc:
                # Not acked: JetStream redelivers it after ack_wait; its publishes are
                # de-duplicated by their ids.
                self.actor.log.warning("session %s: ack failed: %s", d.session, exc)
        for d in batch:
            trace = d.trace or _NO_TRACE
            await self.actor.emit("handled", d.session, step=d.step, trace_id=trace.trace_id,
                                  span_id=trace.span_id, parent_span_id=trace.parent_id,
                                  duration_ms=(now - d.started) * 1000, request_id=d.request,
                                  sent=d.ctx.tasks_sent if d.ctx is not None else 0)
            self._close(d)

    async def _run_keepalive(self) -> None:
        """Tell JetStream that deliveries open longer than the keep-alive period are still
        being worked on."""
        nc = self.actor.services.nc
        while True:
            await asyncio.sleep(self._keepalive_s)
            oldest = time.perf_counter() - self._keepalive_s
            for d in list(self._open.values()):
                if d.started <= oldest and not d.decided and d.msg.reply:
                    with contextlib.suppress(nats.errors.Error):
                        await nc.publish(d.msg.reply, b"+WPI")

    async def _retry_or_dead_letter(
        self, msg: Msg, message: TaskMessage, session: str, exc: Exception, deliveries: int
    ) -> None:
        if deliveries >= self.spec.max_deliveries:
            await self._dead_letter(msg, message, session, exc, deliveries)
            return
        delay = min(MAX_NAK_DELAY_S, self.spec.nak_delay_s * 2 ** (deliveries - 1))
        level = logging.WARNING if isinstance(exc, TransientError) else logging.ERROR
        self.actor.log.log(
            level, "session %s: %s failed (delivery %d/%d), retrying in %.1f s: %s",
            session, type_tag(message), deliveries, self.spec.max_deliveries, delay, exc,
            exc_info=not isinstance(exc, TransientError | BrokerError),
        )
        await msg.nak(delay=delay)
        await self.actor.emit("retry", session, step=type_tag(message),
                              detail=f"delivery {deliveries}: {exc}"[:500],
                              request_id=request_of(message))

    async def _dead_letter(
        self, msg: Msg, message: TaskMessage | None, session: str, exc: BaseException,
        deliveries: int,
    ) -> None:
        role = self.actor.actor_id.role
        subjects = self.actor.services.subjects
        reason = f"{type(exc).__name__}: {exc}"
        self.actor.log.error("session %s: dead-lettering after %d deliveries: %s",
                             session, deliveries, reason)
        letter = DeadLetter(
            actor=role, subject=msg.subject, reason=reason[:2000], deliveries=deliveries,
            data=msg.data, headers=dict(msg.headers or {}), at=time.time(),
            error=type(exc).__name__,
        )
        seq = msg.metadata.sequence.stream
        headers = {"Nats-Msg-Id": f"dlq:{role}:{seq}", HEADER_SESSION: session}
        try:
            await _js_publish(self.actor.services.js, subjects.dead_letter(role), letter, headers)
        except BrokerError:
            # Not stored anywhere yet: let JetStream redeliver rather than lose it.
            self.actor.log.exception("session %s: dead-letter publish failed; nak", session)
            await msg.nak(delay=MAX_NAK_DELAY_S)
            return
        await msg.term()
        await self.actor.emit("dead_letter", session, step=type_tag(message) if message else "",
                              detail=reason[:500],
                              request_id=request_of(message) if message else "")
        request = waiting_request(message) if message is not None else None
        if request is not None:
            await self._tell_user(request, exc, seq)

    async def _tell_user(self, request: ReplyTo, exc: BaseException, seq: int) -> None:
        """Answer the person whose request was dead-lettered, with the failure's error code,
        and record that answer as an ``answered`` event (``detail``: the code), as
        ``MessageContext.reply`` records every other answer."""
        role = self.actor.actor_id.role
        if isinstance(exc, ModelRejectedError):
            text = (f"Sorry, the model refused this request: {exc}. Retrying will not help: "
                    "an operator has to fix the model settings (the request is kept in the "
                    f"dead-letter queue, {role} #{seq}).")
        else:
            text = (
                f"Sorry, I could not finish this request: {exc}. "
                f"Nothing is lost: it is kept in the dead-letter queue ({role} #{seq})."
            )
        reply = request.build(Reply, text=text, error=_error_code(exc))
        headers = {"Nats-Msg-Id": f"dlq-reply:{role}:{seq}", HEADER_SESSION: request.session}
        try:
            await _js_publish(self.actor.services.js,
                              self.actor.services.subjects.outbox(request.origin), reply, headers)
        except BrokerError:
            self.actor.log.exception("session %s: could not tell the user", request.session)
            return
        await self.actor.emit("answered", request.session, detail=str(reply.error),
                              request_id=request.in_reply_to)
