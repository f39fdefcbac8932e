"""Counters of the actors' durable consumers, read from JetStream: redeliveries and backlog."""

from __future__ import annotations

from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client

from protocol import Subjects


@dataclass(frozen=True)
class ConsumerCounts:
    """One durable consumer's counters (messages).

    Attributes:
        stored: messages ever stored in the role's stream (its last sequence).
        delivered: deliveries so far (the consumer sequence), redeliveries included.
        redelivered: messages delivered more than once and not yet acked.
        ack_pending: delivered and not yet acked.
        pending: stored and not yet delivered.
    """

    stored: int
    delivered: int
    redelivered: int
    ack_pending: int
    pending: int


async def consumer_counts(nc: Client, prefix: str, roles: list[str]) -> dict[str, ConsumerCounts]:
    """The counters of each role's durable consumer (roles without one are left out)."""
    js = nc.jetstream(timeout=5)
    subjects = Subjects(prefix)
    counts = {}
    for role in roles:
        try:
            info = await js.consumer_info(subjects.task_stream(role), subjects.durable(role))
            stream = await js.stream_info(subjects.task_stream(role))
        except (TimeoutError, nats.errors.Error):
            continue
        counts[role] = ConsumerCounts(
            stored=stream.state.last_seq or 0,
            delivered=(info.delivered.consumer_seq or 0) if info.delivered else 0,
            redelivered=info.num_redelivered or 0,
            ack_pending=info.num_ack_pending or 0,
            pending=info.num_pending or 0,
        )
    return counts


def redeliveries(before: dict[str, ConsumerCounts], after: dict[str, ConsumerCounts]) -> int:
    """Deliveries beyond one per stored message between two readings, over all roles.

    The consumer sequence grows by one per delivery and the stream's last sequence by one per
    stored message, so once the backlog is empty the difference of their growths counts
    redeliveries (JetStream's own ``num_redelivered`` forgets a message once it is acked).
    """
    extra = 0
    for role, a in after.items():
        b = before.get(role, ConsumerCounts(0, 0, 0, 0, 0))
        extra += (a.delivered - b.delivered) - (a.stored - b.stored) + a.pending - b.pending
    return extra
