"""The OpenAPI 3.1 entries of the routes that read runs back (``api._query_routes``):
``GET /v1/runs``, ``GET /v1/runs/{run_id}/wait``, ``GET /v1/sessions/{session}`` and its
``/runs``; and the ``Idempotency-Key`` parameter of ``POST /v1/runs``. Merged into
``api._openapi``'s document."""

from __future__ import annotations

from typing import Any

from api._index import CURSOR_PATTERN
from api._openapi_parts import error_answers, json_answer
from api._query import MAX_WAIT_S
from api._query_routes import DEFAULT_LIMIT, DEFAULT_WAIT_S, MAX_LIMIT
from api._schema import RunStatus
from api._schema_query import RunPage, RunSummary, SessionView

SCHEMAS = (RunPage, RunSummary, SessionView)
"""The component schemas the entries below refer to."""
_ERRORS = {400: "A query parameter is not valid (or the cursor is not one of this API)",
           401: "No or a wrong bearer token",
           404: "No such run or session",
           503: "NATS or JetStream do not answer"}

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Makes the request safe to repeat (draft-ietf-httpapi-idempotency-key-"
    "header): the same key with the same body within 24 h answers with the first request's "
    "run (and `Idempotent-Replayed: true`) instead of starting another; with another body "
    "it is 422 `idempotency_key_reused`. 1-255 visible ASCII characters.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255,
               "pattern": "^[\\x21-\\x7e]{1,255}$"}}




def _query(name: str, description: str, schema: dict[str, Any], *,
           explode: bool = False) -> dict[str, Any]:
    item = {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}
    if explode:
        item.update(style="form", explode=True)
    return item


_TOKEN = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"}
_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}
_TIME = {"type": "number", "minimum": 0, "maximum": 1e11}
_FILTERS = [
    _query("status", "Keep runs in one of these statuses (repeat it, or separate by commas).",
           {"type": "array", "items": {"type": "string", "enum": [s.value for s in RunStatus]}},
           explode=True),
    _query("user", "Keep the runs of this user.", _TOKEN),
    _query("role", "Keep the runs answered by this agent role (`python_coder`, ...).", _NAME),
    _query("flow", "Keep the runs of this flow (`simple`, `sequential`, `branch`).", _NAME),
    _query("client", "Keep the runs submitted with this API key (its name; a key without "
           "`admin` sees only its own).", _NAME),
    _query("bot", "Keep the runs of this bot (every API run's bot is `api`).", _NAME),
    _query("tag", "Keep the runs that have this tag (repeat it: every one).",
           {"type": "array", "items": _NAME}, explode=True),
    _query("since", "Keep the runs created at or after this time (Unix seconds).", _TIME),
    _query("until", "Keep the runs created before this time (Unix seconds).", _TIME),
    _query("cursor", "Where the page starts: `next_cursor` of the page before (with the same "
           "filters); treat it as opaque.", {"type": "string", "pattern": CURSOR_PATTERN}),
    _query("limit", f"Runs per page, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT}).",
           {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
]
_SESSION = {"name": "session", "in": "path", "required": True,
            "description": "The session's name (1-128 of A-Z a-z 0-9 _ -).", "schema": _TOKEN}
_RUN_ID = {"name": "run_id", "in": "path", "required": True,
           "description": "The run id returned by `POST /v1/runs` (32 hex digits).",
           "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}


def list_runs_operation() -> dict[str, Any]:
    """The ``get`` operation of ``/v1/runs`` (its ``post`` is ``createRun``)."""
    return {
        "operationId": "listRuns", "summary": "Runs, newest first, filtered",
        "description": "Runs kept (30 days), newest first, that match every filter given; "
        "a page and the cursor of the next one. A `paused` run whose question was "
        "answered lists as `done`, as `GET /v1/runs/{run_id}` has it.",
        "parameters": [_query("session", "Keep the runs of this session.", _TOKEN),
                       *_FILTERS],
        "responses": {"200": json_answer("RunPage", "A page of runs"),
                      **error_answers(_ERRORS, 400, 401, 503)}}


def runs_paths() -> dict[str, Any]:
    """The path items of the wait and session routes."""
    return {
        "/v1/runs/{run_id}/wait": {"get": {
            "operationId": "waitRun", "summary": "A run, once it ends or at a timeout",
            "description": "Holds the request until the run is `done`, `failed`, `aborted` "
            "or `paused`, or `timeout_s` passed, then answers with the run as it is: check "
            "its `status` (a run still going on is not an error).",
            "parameters": [_RUN_ID, _query(
                "timeout_s", f"Seconds to wait at most, 0-{MAX_WAIT_S:g} (default "
                f"{DEFAULT_WAIT_S:g}; 0 answers at once).",
                {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S})],
            "responses": {"200": json_answer("RunView", "The run (ended, or still going on)"),
                          **error_answers(_ERRORS, 400, 401, 404, 503)}}},
        "/v1/sessions/{session}": {"get": {
            "operationId": "getSession", "summary": "A session's state",
            "description": "The run the session works on, the runs waiting for it, and its "
            "newest run (its last status).",
            "parameters": [_SESSION],
            "responses": {"200": json_answer("SessionView", "The session"),
                          **error_answers(_ERRORS, 401, 404, 503)}}},
        "/v1/sessions/{session}/runs": {"get": {
            "operationId": "sessionRuns", "summary": "A session's runs, newest first",
            "description": "The session's history: as `GET /v1/runs?session=`.",
            "parameters": [_SESSION, *_FILTERS],
            "responses": {"200": json_answer("RunPage", "A page of the session's runs"),
                          **error_answers(_ERRORS, 400, 401, 404, 503)}}},
    }
