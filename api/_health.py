"""``GET /healthz``: each role's durable consumer as JetStream reports it, and the API's own."""

from __future__ import annotations

import asyncio

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from api._schema import ConsumerState, Health
from api.errors import UnavailableError
from protocol import Subjects

TIMEOUT_S = 5.0
"""Bound on the whole check."""


async def _consumer(js: JetStreamContext, stream: str, durable: str) -> ConsumerState:
    try:
        info = await js.consumer_info(stream, durable)
    except nats.errors.Error as exc:
        return ConsumerState(error=f"{type(exc).__name__}: {exc}"[:200])
    return ConsumerState(num_pending=info.num_pending or 0,
                         num_ack_pending=info.num_ack_pending or 0,
                         num_waiting=info.num_waiting or 0)


async def health(nc: Client, js: JetStreamContext, subjects: Subjects, roles: list[str],
                 outbox_durable: str) -> Health:
    """The consumers of ``roles`` (``<PREFIX>_TASK_<ROLE>`` / ``<prefix>-<role>``) and the
    API's outbox consumer; ``degraded`` when one cannot be read (a role never started). A
    role whose ``num_waiting`` stays 0 has no replica asking for work.

    Raises:
        UnavailableError: NATS is not connected or JetStream does not answer within 5 s.
    """
    if not nc.is_connected:
        msg = "NATS is not connected"
        raise UnavailableError(msg)
    try:
        async with asyncio.timeout(TIMEOUT_S):
            states = await asyncio.gather(
                *(_consumer(js, subjects.task_stream(r), subjects.durable(r)) for r in roles),
                _consumer(js, subjects.outbox_stream, outbox_durable))
    except TimeoutError as exc:
        msg = f"JetStream did not answer within {TIMEOUT_S:.0f} s"
        raise UnavailableError(msg) from exc
    by_role = dict(zip(roles, states[:-1], strict=True))
    if all(s.error and "Timeout" in s.error for s in states):
        msg = "JetStream does not answer"
        raise UnavailableError(msg)
    healthy = all(s.error is None for s in states)
    return Health(status="ok" if healthy else "degraded", roles=by_role, outbox=states[-1])
