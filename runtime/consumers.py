"""Each role's durable consumer as JetStream reports it: the backlog, the messages held and
redelivered, and the pull requests its replicas keep waiting (docs/operations.md#health).

What a **replica** is, as far as JetStream can tell: every replica process of a role pulls
from the role's one durable consumer (``runtime._pull.PullConsumer``), and keeps at least one
pull request open whenever it has a free in-flight slot. ``num_waiting`` (pull requests the
server holds) is therefore at least the number of replicas that can take work now; a role is
**ready** when it is above 0. A replica whose every slot is busy (``max_in_flight`` tasks
held) keeps none open, and a role whose every replica is busy reads 0 until one frees a slot.
The processes themselves (pids, restarts) are the supervisor's to tell
(``switchboard status``).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterable
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

from core.errors import BrokerError
from protocol import Subjects

TIMEOUT_S = 5.0
"""Bound on reading every consumer, in seconds."""


@dataclass(frozen=True, slots=True)
class RoleConsumer:
    """One role's durable consumer (``<PREFIX>_TASK_<ROLE>`` / ``<prefix>-<role>``).

    Attributes:
        role: the actor role.
        num_pending: tasks stored and not yet delivered to any replica (the lag), messages.
        num_ack_pending: tasks delivered and not yet acknowledged (being worked on).
        num_redelivered: of those, tasks delivered more than once.
        num_waiting: pull requests waiting on the server: replicas ready for work (see the
            module docstring).
        last_active: when the server last delivered a task of the role, Unix seconds (None:
            never).
        error: why the consumer could not be read (``NotFoundError``: the role never started
            on this server); the counts are then 0.
    """

    role: str
    num_pending: int = 0
    num_ack_pending: int = 0
    num_redelivered: int = 0
    num_waiting: int = 0
    last_active: float | None = None
    error: str | None = None

    @property
    def ready(self) -> bool:
        """Whether some replica of the role asks for work now (``num_waiting`` > 0)."""
        return self.error is None and self.num_waiting > 0


def _seconds(moment: datetime.datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def _of(role: str, info: ConsumerInfo) -> RoleConsumer:
    delivered = info.delivered
    return RoleConsumer(
        role=role, num_pending=info.num_pending or 0, num_ack_pending=info.num_ack_pending or 0,
        num_redelivered=info.num_redelivered or 0, num_waiting=info.num_waiting or 0,
        last_active=_seconds(delivered.last_active) if delivered is not None else None)


async def _read(js: JetStreamContext, subjects: Subjects, role: str) -> RoleConsumer:
    try:
        info = await js.consumer_info(subjects.task_stream(role), subjects.durable(role))
    except nats.js.errors.NotFoundError:
        return RoleConsumer(role=role, error="NotFoundError: the role's consumer does not "
                            "exist (the role never started on this server)")
    except nats.errors.Error as exc:
        return RoleConsumer(role=role, error=f"{type(exc).__name__}: {exc}"[:200])
    return _of(role, info)


async def read_consumers(js: JetStreamContext, subjects: Subjects, roles: Iterable[str], *,
                         timeout_s: float = TIMEOUT_S) -> dict[str, RoleConsumer]:
    """Read the durable consumer of every role in ``roles``, concurrently.

    A consumer that cannot be read is returned with its ``error`` set.

    Returns:
        role → ``RoleConsumer``, in the order of ``roles``.

    Raises:
        BrokerError: JetStream did not answer within ``timeout_s`` seconds, or answered no
            request at all (every read timed out).
    """
    roles = list(roles)
    try:
        async with asyncio.timeout(timeout_s):
            read = await asyncio.gather(*(_read(js, subjects, role) for role in roles))
    except TimeoutError as exc:
        msg = f"JetStream did not answer within {timeout_s:.0f} s"
        raise BrokerError(msg) from exc
    if read and all(c.error is not None and c.error.startswith("TimeoutError") for c in read):
        msg = "JetStream does not answer"
        raise BrokerError(msg)
    return {c.role: c for c in read}
