"""The OpenAPI 3.1 entries of the routes the browser console reads besides the run routes:
``GET /v1/roles`` (``api._roles``) and ``GET /v1/analytics/report`` (``api._analytics``),
merged into ``api._openapi``'s document. The console's own files (``/``, ``/console/*``) are
no API and are not described."""

from __future__ import annotations

from typing import Any

from api._analytics import DEFAULT_SINCE, SINCE_PATTERN
from api._openapi_parts import error_answers, json_answer
from api._schema_console import AnalyticsReport, RoleLoads

SCHEMAS = (RoleLoads, AnalyticsReport)
"""The component schemas the entries below refer to."""
_ERRORS = {400: "`since` is not a number of minutes, hours or days",
           401: "No or a wrong bearer token",
           503: "NATS or JetStream do not answer (or the events file is held by another "
                "process)"}




def console_paths() -> dict[str, Any]:
    """The path items of ``/v1/roles`` and ``/v1/analytics/report``."""
    return {
        "/v1/roles": {"get": {
            "operationId": "roleLoads", "summary": "Each role's lag and replicas",
            "description": "Every actor role's durable consumer as JetStream reports it: "
            "tasks not yet delivered (`lag`), held, redelivered, and replicas free for work; "
            "`scale` names the role with the largest lag, the one to give more replicas.",
            "responses": {"200": json_answer("RoleLoads", "Every role, in the topology's order"),
                          **error_answers(_ERRORS, 401, 503)}}},
        "/v1/analytics/report": {"get": {
            "operationId": "analyticsReport", "summary": "The events report",
            "description": "Brings the API's DuckDB copy of the execution events up to date "
            "(only what is new since the last request), then runs `switchboard report`'s "
            "sections over the events since `since`: outcomes, latency per actor and flow, "
            "tokens and cost per model and per user, escalations, feedback, errors, dead "
            "letters, router decisions.",
            "parameters": [{
                "name": "since", "in": "query", "required": False,
                "description": f"The window: minutes, hours or days back (`30m`, `24h`, "
                f"`7d`; default `{DEFAULT_SINCE}`).",
                "schema": {"type": "string", "pattern": SINCE_PATTERN}}],
            "responses": {"200": json_answer("AnalyticsReport", "The report's sections"),
                          **error_answers(_ERRORS, 400, 401, 503)}}},
    }
