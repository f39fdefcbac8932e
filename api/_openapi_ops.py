"""The OpenAPI 3.1 entries of the operations routes (``api._ops``): ``/readyz``, ``/metrics``
and ``/v1/dead-letters``, merged into ``api._openapi``'s document."""

from __future__ import annotations

from typing import Any

from api._openapi_parts import error_answers, json_answer, ref
from api._ops_schema import (
    MAX_SEQ,
    DeadLetterList,
    DeadLetterReplayed,
    DeadLetterSummary,
    DeadLetterView,
    Readiness,
)

SCHEMAS = (Readiness, DeadLetterList, DeadLetterSummary, DeadLetterView, DeadLetterReplayed)
"""The component schemas the entries below refer to."""
_ERRORS = {400: "A query parameter is not valid",
           401: "No or a wrong bearer token",
           404: "No such dead letter",
           409: "The dead letter came from no task subject: it cannot be replayed",
           503: "NATS or JetStream do not answer"}




_SEQ = {"name": "seq", "in": "path", "required": True,
        "description": "The dead letter's sequence in the DLQ stream (`seq` of the list).",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SEQ}}


def ops_paths(roles: tuple[str, ...] = ()) -> dict[str, Any]:
    """The path items of ``/readyz``, ``/metrics`` and ``/v1/dead-letters`` (``roles``: the
    topology's actor roles, the values ``role`` may take; empty: any string)."""
    role_schema: dict[str, Any] = {"type": "string", "enum": list(roles)} if roles \
        else {"type": "string"}
    return {
        "/readyz": {"get": {
            "operationId": "ready", "summary": "Whether every role has a replica (no token)",
            "description": "200 when every actor role has a replica asking for work (a pull "
            "request waiting on its consumer), 503 with the roles that have none.",
            "security": [],
            "responses": {"200": json_answer("Readiness", "Every role has a replica ready"),
                          "503": {"description": "A role has no replica ready (`Readiness`), "
                                  "or NATS does not answer (`ErrorBody`)", "content": {
                                      "application/json": {"schema": {"oneOf": [
                                          ref("Readiness"),
                                          ref("ErrorBody")]}}}}}}},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics (bearer token)",
            "description": "The Prometheus text exposition format: HTTP requests of this API "
            "process; requests, answers by outcome, model calls, tokens and cost, retries and "
            "dead letters since this process started (from the execution events); each "
            "role's consumer lag, held and redelivered tasks and replicas ready, and the dead "
            "letters stored, read at each scrape.",
            "responses": {"200": {"description": "The metrics", "content": {
                "text/plain": {"schema": {"type": "string"}}}},
                **error_answers(_ERRORS, 401, 503)}}},
        "/v1/dead-letters": {"get": {
            "operationId": "listDeadLetters", "summary": "Dead letters, oldest first",
            "parameters": [
                {"name": "role", "in": "query", "required": False,
                 "description": "Only this actor role's (one of the topology's roles).",
                 "schema": role_schema},
                {"name": "after", "in": "query", "required": False,
                 "description": "Only sequences above this one (the previous page's "
                 "`next_after`).",
                 "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ}},
                {"name": "limit", "in": "query", "required": False,
                 "description": "At most this many (default 100).",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 500}}],
            "responses": {"200": json_answer("DeadLetterList", "A page of dead letters"),
                          **error_answers(_ERRORS, 400, 401, 503)}}},
        "/v1/dead-letters/{seq}": {
            "get": {
                "operationId": "getDeadLetter", "summary": "One dead letter, with its bytes",
                "parameters": [_SEQ],
                "responses": {"200": json_answer("DeadLetterView", "The dead letter"),
                              **error_answers(_ERRORS, 401, 404, 503)}},
            "delete": {
                "operationId": "discardDeadLetter", "summary": "Remove a dead letter for good",
                "parameters": [_SEQ],
                "responses": {"200": json_answer("DeadLetterSummary", "The letter removed"),
                              **error_answers(_ERRORS, 401, 404, 503)}}},
        "/v1/dead-letters/{seq}/replay": {"post": {
            "operationId": "replayDeadLetter", "summary": "Send a dead letter's task again",
            "description": "Publishes the original bytes and headers to the original task "
            "subject as a new message, then removes the letter. A SEQUENTIAL run goes on from "
            "its checkpoint; a task that fails again is dead-lettered again (a new `seq`).",
            "parameters": [_SEQ],
            "responses": {"202": json_answer("DeadLetterReplayed", "The task is queued again"),
                          **error_answers(_ERRORS, 401, 404, 409, 503)}}},
    }
