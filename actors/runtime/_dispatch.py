"""One delivery's life: decode, route to the handler, then ack, nak or terminate it.

Outcomes (explicit, decided here and nowhere else):

- handler returned: **ack**.
- ``TransientError`` (model error, KV race, broker hiccup) or an unexpected exception:
  **nak** with a delay of ``nak_delay_s * 2**(deliveries-1)`` seconds (at most 30), so
  JetStream redelivers it; on the last allowed delivery, dead-letter instead.
- ``PermanentError`` (malformed bytes, no handler, bad request): **term** and dead-letter.
- delivered more than ``max_deliveries`` times (a replica crashed on it each time): dead-letter
  without running the handler.

Dead-lettering publishes a ``DeadLetter`` with the original bytes and headers to
``<prefix>.dlq.<role>`` and, when the person is still waiting for an answer, a ``Reply`` that
says what went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec
from nats.aio.msg import Msg

from actors.errors import (
    BrokerError,
    HandlerError,
    MalformedMessageError,
    ModelError,
    PermanentError,
    TransientError,
    UnhandledMessageError,
)
from actors.runtime._actor import Actor, MessageContext, _js_publish
from actors.runtime._tracing import record_error, span_from_headers
from protocol import (
    HEADER_SESSION,
    BrainstormResult,
    ChatMessage,
    Classification,
    DeadLetter,
    ErrorCode,
    Reply,
    TaskMessage,
    TurnRequest,
    task_decoder,
    type_tag,
)

_log = logging.getLogger(__name__)

MAX_NAK_DELAY_S = 30.0


def waiting_request(message: TaskMessage) -> ChatMessage | None:
    """The person's request when they are still waiting for its answer (steps before the
    Reply); None for steps after it (evaluation, reflection)."""
    match message:
        case ChatMessage():
            return message
        case Classification():
            return message.request
        case TurnRequest() | BrainstormResult():
            return message.classification.request
        case _:
            return None


def _error_code(exc: BaseException) -> ErrorCode:
    if isinstance(exc, ModelError):
        return ErrorCode.MODEL_ERROR
    if isinstance(exc, MalformedMessageError):
        return ErrorCode.MALFORMED
    if isinstance(exc, TimeoutError):
        return ErrorCode.TIMEOUT
    return ErrorCode.DEAD_LETTER


class Dispatcher:
    """Settles every delivery of one actor replica (see the module docstring)."""

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self.spec = actor.spec
        self._keepalive_s = max(0.5, self.spec.ack_wait_s / 3)

    async def handle(self, msg: Msg) -> None:
        started = time.perf_counter()
        meta = msg.metadata
        deliveries = meta.num_delivered
        session = (msg.headers or {}).get(HEADER_SESSION, "")
        try:
            message = task_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            malformed = MalformedMessageError(f"not a Switchboard task message: {exc}")
            await self._dead_letter(msg, None, session or "unknown", malformed, deliveries)
            return
        if isinstance(message, ChatMessage):
            session = message.session
        elif not session:
            request = waiting_request(message)
            session = request.session if request else "unknown"
        step = type_tag(message)
        if deliveries > self.spec.max_deliveries:
            error = HandlerError(
                f"delivered {deliveries} times without being acknowledged "
                f"(the handler crashed or timed out each time)"
            )
            await self._dead_letter(msg, message, session, error, deliveries)
            return
        with span_from_headers(f"{self.actor.actor_id.role} {step}", msg.headers):
            await self._run(msg, message, session, step, deliveries, started)

    async def _run(
        self, msg: Msg, message: TaskMessage, session: str, step: str, deliveries: int,
        started: float,
    ) -> None:
        handler = self.actor.handler_for(message)
        ctx = MessageContext(
            actor=self.actor, session=session, stream_seq=msg.metadata.sequence.stream,
            deliveries=deliveries,
        )
        keepalive = asyncio.create_task(self._keep_alive(msg), name=f"keepalive:{step}")
        try:
            if handler is None:
                msg_text = f"{self.actor.actor_id.role} has no handler for '{step}' messages"
                raise UnhandledMessageError(msg_text)
            await handler(message, ctx)
        except asyncio.CancelledError:
            raise
        except PermanentError as exc:
            record_error(exc)
            await self._dead_letter(msg, message, session, exc, deliveries)
        except Exception as exc:  # noqa: BLE001 - every failure is settled explicitly below
            record_error(exc)
            await self._retry_or_dead_letter(msg, message, session, exc, deliveries)
        else:
            await msg.ack()
            await ctx.emit("handled", step=step,
                           duration_ms=(time.perf_counter() - started) * 1000)
        finally:
            keepalive.cancel()

    async def _keep_alive(self, msg: Msg) -> None:
        """Tell JetStream the message is still being worked on, so a long model call is not
        redelivered to another replica while this one is alive."""
        while True:
            await asyncio.sleep(self._keepalive_s)
            with contextlib.suppress(Exception):
                await msg.in_progress()

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
                              detail=f"delivery {deliveries}: {exc}"[:500])

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
                              detail=reason[:500])
        request = waiting_request(message) if message is not None else None
        if request is not None:
            await self._tell_user(request, exc, seq)

    async def _tell_user(self, request: ChatMessage, exc: BaseException, seq: int) -> None:
        role = self.actor.actor_id.role
        text = (
            f"Sorry, I could not finish this request: {exc}. "
            f"Nothing is lost: it is kept in the dead-letter queue ({role} #{seq})."
        )
        reply = Reply(
            session=request.session, origin=request.origin, in_reply_to=request.message_id,
            text=text, error=_error_code(exc),
        )
        headers = {"Nats-Msg-Id": f"dlq-reply:{role}:{seq}", HEADER_SESSION: request.session}
        try:
            await _js_publish(self.actor.services.js,
                              self.actor.services.subjects.outbox(request.origin), reply, headers)
        except BrokerError:
            self.actor.log.exception("session %s: could not tell the user", request.session)
