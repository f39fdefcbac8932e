"""``switchboard report``: what the exported events say, one SQL query per section.

Every section reads the view ``ev`` (the ``events`` rows since ``--since``); the lookups of a
request's start and asker read all of ``events``, so a request that began just before the
window still counts. Latencies are milliseconds, costs US dollars.

- ``summary``: events, requests, sessions, first and last event in the window.
- ``outcomes``: per flow (the router's choice; ``(unclassified)`` for a request that failed
  before it), the requests seen in the window and how each ended (``OUTCOMES``), the share
  answered; the last row, ``(all)``, sums the flows.
- ``latency_by_actor``: per actor, p50 / p95 / p99 / max of its ``handled`` steps (from
  delivery to acknowledgement).
- ``latency_by_flow``: per flow, the same over requests: from the start of the router's step
  to the ``answered`` event (the answer, or a paused run's question, left for the gateway);
  refused, failed and silent requests left out.
- ``model_usage``: per model, calls, tokens in / out, cost, p50 / p95 of a call.
- ``user_usage``: per user who asked (``classified``), the model calls of their requests;
  ``(unattributed)`` for calls of no request (a reflection after 👎).
- ``escalation_rate``: SEQUENTIAL runs (resumed ones not counted again), how many escalated
  at least once, escalations, runs paused to ask the person, the share escalated.
- ``escalation_causes``: per cause (``stuck``, ``low_confidence``, ``repeated_error``,
  ``no_progress``), escalations, pauses and the latest one's detail.
- ``feedback_by_role``: 👍 and 👎 per agent role rated, share of 👍.
- ``errors``: per actor and kind of error event (``retry``, ``dead_letter``, ``model_error``,
  ``*_failed``, ``undecodable``), how many, the latest time and error.
- ``dead_letters``: the 20 latest, with their reason.
- ``router_decisions``: per source (``rule``, ``case``, ``model``, ``keywords``,
  ``breakglass``, ``resume``), decisions, share, and how many went to each flow.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass

import duckdb

from analytics._table import Table, render, run_query

_log = logging.getLogger(__name__)

_SINCE = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str) -> dt.timedelta:
    """``30m``, ``12h``, ``1d``, ``7d``: a number and a unit (minutes, hours, days).

    Raises:
        ValueError: anything else, or zero.
    """
    match = _SINCE.match(text)
    if match is None or int(match.group(1)) == 0:
        msg = f"expected a positive number and m, h or d (30m, 12h, 1d, 7d), got {text!r}"
        raise ValueError(msg)
    return dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True, slots=True)
class Section:
    """One part of the report: its key (in ``--json``), its title, its query over ``ev``."""

    key: str
    title: str
    sql: str


def _percentiles(expr: str, quantiles: tuple[float, ...] = (0.5, 0.95, 0.99)) -> str:
    """``p50_ms``, ``p95_ms``, ``p99_ms`` of ``expr`` (milliseconds, one decimal)."""
    return ", ".join(f"round(quantile_cont({expr}, {q}), 1) AS p{round(q * 100)}_ms"
                     for q in quantiles)


OUTCOMES = ("answered", "paused", "refused", "aborted", "failed", "silent", "unfinished")
"""How a request ended, from its latest ``answered`` event (``detail``: NULL for an answer,
else the error code or ``silent``): ``answered``; ``paused`` (the answer was a question to
the person: their answer is a request of its own); ``refused`` (a rule); ``aborted`` (stopped
by the person); ``failed`` (any other error code, or dead-lettered without an ``answered``
event); ``silent`` (the router chose not to answer); ``unfinished`` (no answer yet)."""


def _counts(column: str, values: tuple[str, ...]) -> str:
    """One ``count(*)`` per value of ``column``, named after it."""
    return ", ".join(f"count(*) FILTER (WHERE {column} = '{v}') AS {v}" for v in values)


SECTIONS: tuple[Section, ...] = (
    Section("summary", "Events", """
        SELECT count(*) AS events, count(DISTINCT request_id) AS requests,
               count(DISTINCT session) AS sessions,
               min(time) AS first_event, max(time) AS last_event
        FROM ev"""),
    Section("outcomes", "Outcomes per flow (requests)", f"""
        WITH seen AS (
            SELECT DISTINCT request_id FROM ev
            WHERE kind IN ('classified', 'answered', 'dead_letter') AND request_id IS NOT NULL
        ), facts AS (
            SELECT request_id, any_value(flow) FILTER (WHERE kind = 'classified') AS flow,
                   arg_max(coalesce(detail, ''), seq) FILTER (WHERE kind = 'answered') AS last,
                   bool_or(kind = 'paused') AS paused, bool_or(kind = 'dead_letter') AS dead
            FROM events JOIN seen USING (request_id)
            WHERE kind IN ('classified', 'answered', 'paused', 'dead_letter')
            GROUP BY request_id
        ), outcomes AS (
            SELECT coalesce(flow, '(unclassified)') AS flow, CASE
                WHEN last IS NULL THEN CASE WHEN dead THEN 'failed' ELSE 'unfinished' END
                WHEN last = '' THEN CASE WHEN paused THEN 'paused' ELSE 'answered' END
                WHEN last IN ('refused', 'aborted', 'silent') THEN last
                ELSE 'failed' END AS outcome
            FROM facts
        )
        SELECT CASE WHEN grouping(flow) = 1 THEN '(all)' ELSE flow END AS flow,
               count(*) AS requests, {_counts("outcome", OUTCOMES)},
               round(100.0 * count(*) FILTER (WHERE outcome = 'answered') / count(*), 1)
                   AS answered_pct
        FROM outcomes GROUP BY ROLLUP (flow) ORDER BY grouping(flow), flow"""),
    Section("latency_by_actor", "Latency per actor (ms per handled step)", f"""
        SELECT actor, count(*) AS steps, {_percentiles("latency_ms")},
               round(max(latency_ms), 1) AS max_ms
        FROM ev WHERE kind = 'handled'
        GROUP BY actor ORDER BY p95_ms DESC, actor"""),
    Section("latency_by_flow", "Latency per flow (ms per request, router to answer)", f"""
        WITH starts AS (
            SELECT request_id, min(epoch(time) - latency_ms / 1000) AS began FROM events
            WHERE kind = 'handled' AND actor = 'classifier' AND request_id IS NOT NULL
            GROUP BY request_id
        ), answers AS (
            SELECT request_id, any_value(flow) AS flow, min(epoch(time)) AS answered FROM ev
            WHERE kind = 'answered' AND request_id IS NOT NULL AND detail IS NULL
            GROUP BY request_id
        )
        SELECT flow, count(*) AS requests, {_percentiles("(answered - began) * 1000")},
               round(max((answered - began) * 1000), 1) AS max_ms
        FROM answers JOIN starts USING (request_id)
        GROUP BY flow ORDER BY flow"""),
    Section("model_usage", "Tokens and cost per model", f"""
        SELECT model, count(*) AS calls, sum(tokens_in) AS tokens_in,
               sum(tokens_out) AS tokens_out, round(sum(cost_usd), 6) AS cost_usd,
               {_percentiles("latency_ms", (0.5, 0.95))}
        FROM ev WHERE kind = 'model_call'
        GROUP BY model ORDER BY cost_usd DESC, calls DESC, model"""),
    Section("user_usage", "Tokens and cost per user (who asked)", """
        WITH askers AS (
            SELECT request_id, any_value(user_id) AS user_id FROM events
            WHERE kind = 'classified' AND request_id IS NOT NULL
            GROUP BY request_id
        )
        SELECT coalesce(a.user_id, '(unattributed)') AS user_id,
               count(DISTINCT m.request_id) AS requests, count(*) AS calls,
               sum(m.tokens_in) AS tokens_in, sum(m.tokens_out) AS tokens_out,
               round(sum(m.cost_usd), 6) AS cost_usd
        FROM ev m LEFT JOIN askers a USING (request_id)
        WHERE m.kind = 'model_call'
        GROUP BY ALL ORDER BY cost_usd DESC, calls DESC, user_id"""),
    Section("escalation_rate", "Escalation rate (SEQUENTIAL runs)", """
        WITH runs AS (
            SELECT DISTINCT request_id FROM ev
            WHERE kind = 'classified' AND flow = 'sequential'
              AND coalesce(source, '') <> 'resume'
        ), escalated AS (
            SELECT request_id,
                   count(*) FILTER (WHERE kind = 'escalation') AS escalations,
                   count(*) FILTER (WHERE kind = 'paused') AS paused
            FROM events WHERE kind IN ('escalation', 'paused')
            GROUP BY request_id
        )
        SELECT count(*) AS sequential_runs,
               count(*) FILTER (WHERE e.escalations > 0) AS escalated_runs,
               coalesce(sum(e.escalations), 0) AS escalations,
               count(*) FILTER (WHERE e.paused > 0) AS paused_runs,
               round(100.0 * count(*) FILTER (WHERE e.escalations > 0)
                     / nullif(count(*), 0), 1) AS escalated_pct
        FROM runs LEFT JOIN escalated e USING (request_id)"""),
    Section("escalation_causes", "Escalation causes", """
        SELECT coalesce(source, 'other') AS cause,
               count(*) FILTER (WHERE kind = 'escalation') AS escalations,
               count(*) FILTER (WHERE kind = 'paused') AS paused,
               arg_max(detail, seq) AS latest
        FROM ev WHERE kind IN ('escalation', 'paused')
        GROUP BY ALL ORDER BY escalations DESC, paused DESC, cause"""),
    Section("feedback_by_role", "Feedback per role (👍 / 👎)", """
        SELECT coalesce(role, '(unknown)') AS role,
               count(*) FILTER (WHERE value > 0) AS thumbs_up,
               count(*) FILTER (WHERE value < 0) AS thumbs_down,
               round(100.0 * count(*) FILTER (WHERE value > 0)
                     / nullif(count(*) FILTER (WHERE value <> 0), 0), 1) AS up_pct
        FROM ev WHERE kind = 'feedback'
        GROUP BY ALL ORDER BY role"""),
    Section("errors", "Errors by actor and kind", """
        SELECT actor, kind, count(*) AS events, max(time) AS latest_at,
               arg_max(error, seq) AS latest_error
        FROM ev WHERE error IS NOT NULL
        GROUP BY ALL ORDER BY events DESC, actor, kind"""),
    Section("dead_letters", "Dead letters (latest 20)", """
        SELECT time, actor, session, step, error AS reason
        FROM ev WHERE kind = 'dead_letter'
        ORDER BY seq DESC LIMIT 20"""),
    Section("router_decisions", "Router decisions by source", """
        SELECT coalesce(source, '(none)') AS source, count(*) AS decisions,
               round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct,
               count(*) FILTER (WHERE flow = 'simple') AS simple,
               count(*) FILTER (WHERE flow = 'sequential') AS sequential,
               count(*) FILTER (WHERE flow = 'branch') AS branch,
               count(*) FILTER (WHERE flow = 'breakglass') AS breakglass
        FROM ev WHERE kind = 'classified'
        GROUP BY ALL ORDER BY decisions DESC, source"""),
)
"""The report's sections, in order (the module docstring says what each holds)."""


def build_report(con: duckdb.DuckDBPyConnection, since: dt.datetime | None = None
                 ) -> dict[str, Table]:
    """Run every section over the events since ``since`` (all of them when None).

    Args:
        con: the events database (``open_db``; read-only is enough).
        since: an aware datetime.

    Returns:
        Section key → its table, in ``SECTIONS`` order.

    Raises:
        QueryError: a section's query failed (a file from an incompatible version).
    """
    start = since or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    # A literal, not a parameter: DuckDB views take none; the value is a datetime, not text.
    run_query(con, "CREATE OR REPLACE TEMP VIEW ev AS SELECT * FROM events "
                   f"WHERE time >= TIMESTAMPTZ '{start.astimezone(dt.UTC).isoformat()}'")
    return {section.key: run_query(con, section.sql) for section in SECTIONS}


def render_report(report: dict[str, Table], *, heading: str = "", width: int = 60) -> str:
    """The report as text: each section's title, then its table indented."""
    parts = [heading] if heading else []
    titles = {section.key: section.title for section in SECTIONS}
    for key, table in report.items():
        parts.append(f"{titles.get(key, key)}\n{render(table, width=width, indent='  ')}")
    return "\n\n".join(parts) + "\n"
