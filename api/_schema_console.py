"""Bodies of the routes the browser console reads besides the run routes: ``GET /v1/roles``
(each role's load, to see which one to scale) and ``GET /v1/analytics/report`` (the events
report), as msgspec structs: the source of their OpenAPI component schemas
(``api._openapi_console``)."""

from __future__ import annotations

from typing import Any

import msgspec

from runtime.consumers import RoleConsumer


class RoleLoad(msgspec.Struct, kw_only=True):
    """One actor role's durable consumer: ``lag`` tasks stored and not yet delivered to a
    replica, ``held`` delivered and not yet acknowledged (being worked on), ``redelivered``
    of those delivered more than once; ``replicas`` the pull requests its replicas keep
    waiting (replicas free for work now: a lower bound of the replicas running, 0 when every
    one is busy), ``ready`` when above 0; ``last_active`` when a task was last delivered
    (Unix seconds, None: never); ``error`` when the consumer could not be read (the role
    never started), the counts then 0."""

    role: str
    lag: int
    held: int
    redelivered: int
    replicas: int
    ready: bool
    last_active: float | None = None
    error: str | None = None

    @classmethod
    def of(cls, consumer: RoleConsumer) -> RoleLoad:
        return cls(role=consumer.role, lag=consumer.num_pending, held=consumer.num_ack_pending,
                   redelivered=consumer.num_redelivered, replicas=consumer.num_waiting,
                   ready=consumer.ready, last_active=consumer.last_active,
                   error=consumer.error)


class RoleLoads(msgspec.Struct, kw_only=True):
    """``GET /v1/roles``: every role of the topology in its order, and ``scale``: the role
    with the largest ``lag`` (ties: the one with fewer ``replicas``, then the first), None
    when no role has a lag: the one to give more replicas first."""

    roles: list[RoleLoad]
    scale: str | None = None


class ReportSection(msgspec.Struct, kw_only=True):
    """One section of the report (``analytics._report.SECTIONS``): its ``key``, ``title``,
    ``columns`` and ``rows`` (one array per row, in column order; times as RFC 3339 text,
    latencies in milliseconds, costs in US dollars, null for none)."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]


class ExportState(msgspec.Struct, kw_only=True):
    """What bringing the API's events file up to date did: events ``added`` now, the last
    stream sequence it holds (``last_seq``), the events it holds in all (``total``)."""

    added: int
    last_seq: int
    total: int


class AnalyticsReport(msgspec.Struct, kw_only=True):
    """``GET /v1/analytics/report``: the report over the events since ``since`` (as asked,
    e.g. ``24h``; ``from_time`` the same as Unix seconds), every section in order, and the
    export that brought the events up to date first."""

    since: str
    from_time: float
    generated_at: float
    export: ExportState
    sections: list[ReportSection]
