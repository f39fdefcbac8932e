"""``GET /openapi.json``: the API described as OpenAPI 3.1 (https://spec.openapis.org/oas/v3.1.0),
its component schemas generated from the msgspec structs of ``api._schema``. A method a path
does not have is answered 405 with ``Allow`` (RFC 9110 §15.5.6); OpenAPI has no place for
that per operation, so the document's description says it."""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from api._openapi_console import SCHEMAS as CONSOLE_SCHEMAS
from api._openapi_console import console_paths
from api._openapi_ops import SCHEMAS as OPS_SCHEMAS
from api._openapi_ops import ops_paths
from api._openapi_parts import REF, error_answers, json_answer, ref
from api._openapi_runs import IDEMPOTENCY_KEY, list_runs_operation, runs_paths
from api._openapi_runs import SCHEMAS as RUNS_SCHEMAS
from api._schema import (
    MAX_MESSAGE_CHARS,
    DecisionAccepted,
    DecisionRequest,
    ErrorBody,
    Health,
    RunAccepted,
    RunRequest,
    RunView,
    StopAccepted,
)
from api._sse_frames import ID_PATTERN, RETRY_MS


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {400: "Malformed JSON, an unknown field, a wrong type or value",
             401: "No or a wrong bearer token",
             403: "Only the user who asked for the run may decide its approvals; for a new "
                  "run: `webhook_refused`, a webhook the API will not call (webhooks off, "
                  "a host that is not public and not allowed)",
             404: "No such run (or file, or approval)",
             409: "The run cannot be stopped (it finished, or it is paused on a question), "
                  "or it does not wait on that approval; for a new run: `session_busy` "
                  "(`multitask_strategy: reject` and the session has a run in progress) or "
                  "`idempotency_in_progress` (the key's first request is not done)",
             422: "`idempotency_key_reused`: the Idempotency-Key came before with another "
                  "body",
             413: "The body is larger than the API accepts",
             415: "The body is not sent as `Content-Type: application/json`",
             503: "NATS or the actors do not answer"}
    answers = error_answers(texts, *statuses)
    if 401 in statuses:
        answers["401"]["headers"] = {"WWW-Authenticate": {
            "description": "The scheme to use: `Bearer realm=\"switchboard\"` (RFC 6750)",
            "schema": {"type": "string"}}}
    if 415 in statuses:
        answers["415"]["headers"] = {"Accept": {
            "description": "The media type a body must have: `application/json` "
            "(RFC 9110 §12.5.1)", "schema": {"type": "string"}}}
    return answers


_LAST_EVENT_ID = {
    "name": "Last-Event-ID", "in": "header", "required": False,
    "description": "Resume after this event: the `id:` of the last event received (an "
    "EventSource sends it when it reconnects). `<events>.<outbox>.<status>`: the JetStream "
    "sequences of the last execution event and outbox message sent, and the last run status "
    "sent; `end` after the last event.",
    "schema": {"type": "string", "maxLength": 64, "pattern": ID_PATTERN}}


_RUN_ID = {"name": "run_id", "in": "path", "required": True,
           "description": "The run id returned by `POST /v1/runs` (32 hex digits).",
           "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}


def _paths(max_body_bytes: int) -> dict[str, Any]:
    return {
        "/v1/runs": {"post": {
            "operationId": "createRun", "summary": "Submit a request to the agents",
            "description": "Sends the message to the same actors as Discord and the terminal. "
            "A run for a session that has a run in progress waits for it (status `queued`), "
            "is refused or interrupts it, as `multitask_strategy` says. "
            f"`message` is at most {MAX_MESSAGE_CHARS} characters, the body at most "
            f"{max_body_bytes} bytes; nothing is sent when the body is refused. `webhook` "
            "gets a POST signed per Standard Webhooks when the run ends.",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": ref("RunRequest")}}},
            "responses": {"202": {**json_answer("RunAccepted",
                                                "Accepted: the run is queued (or, for a "
                                                "repeated Idempotency-Key, the first "
                                                "request's run as it is now)"),
                                  "headers": {"Idempotent-Replayed": {
                                      "description": "`true` when the answer is an earlier "
                                      "request's run", "schema": {"type": "string"}}}},
                          **_errors(400, 401, 403, 409, 413, 415, 422, 503)}},
            "get": list_runs_operation()},
        "/v1/runs/{run_id}": {"get": {
            "operationId": "getRun", "summary": "A run's status and result",
            "parameters": [_RUN_ID],
            "responses": {"200": json_answer("RunView", "The run"), **_errors(401, 404, 503)}}},
        "/v1/runs/{run_id}/events": {"get": {
            "operationId": "runEvents", "summary": "A run's progress and execution events",
            "description": "Server-Sent Events from the run's start until it ends (a late "
            "client first gets what happened so far). `event:` is `run` (the run's state, on "
            "each status change), `progress`, `approval` (an approval request: decide it "
            "with `POST .../approvals/{approval_id}`), `reply`, `options`, an execution "
            "event's kind "
            "(`classified`, `model_call`, `turn`, ..., `reflection`) and finally `end`, once "
            "the run settled and its work after the answer (evaluation, reflection, workspace "
            "sync) reported; `data:` is JSON. Every event has an `id:`: a client that "
            "reconnects with `Last-Event-ID` gets what came after it, nothing twice. The "
            f"stream starts with `retry: {RETRY_MS}` (milliseconds); `: keep-alive` comments "
            "keep idle connections open.",
            "parameters": [_RUN_ID, _LAST_EVENT_ID],
            "responses": {"200": {"description": "The event stream", "content": {
                "text/event-stream": {"schema": {"type": "string"}}}},
                "204": {"description": "`Last-Event-ID` was `end`: nothing follows (an "
                        "EventSource stops reconnecting)"},
                **_errors(400, 401, 404, 503)}}},
        "/v1/runs/{run_id}/stop": {"post": {
            "operationId": "stopRun", "summary": "Stop a run at its next turn",
            "description": "A run still waiting for its session is aborted at once; a running "
            "agentic loop stops before its next turn. A one-turn answer cannot be cut short.",
            "parameters": [_RUN_ID],
            "responses": {"202": json_answer("StopAccepted", "The stop is under way"),
                          **_errors(401, 404, 409, 503)}}},
        "/v1/runs/{run_id}/terminate": {"post": {
            "operationId": "terminateRun", "summary": "End a run now",
            "description": "Aborts the run at once (its `error.code` is `terminated`) and "
            "frees its session for the next run, whether or not the actors still work on it "
            "(they are told to stop; an approval it waits on is denied). For a run the "
            "actors lost, which `stop` would wait on for ever. A paused run is answered, "
            "not terminated.",
            "parameters": [_RUN_ID],
            "responses": {"202": json_answer("StopAccepted", "The run is aborted"),
                          **_errors(401, 404, 409, 503)}}},
        "/v1/runs/{run_id}/retry": {"post": {
            "operationId": "retryRun", "summary": "Send a failed run again",
            "description": "A `failed` run goes to the actors again under its own id (after "
            "the runs before it in its session): an agent goes on from the run's last "
            "checkpoint, not from the start; a one-turn answer is made anew. `retries` "
            "counts the retries. Any other run is 409 `not_retryable`.",
            "parameters": [_RUN_ID],
            "responses": {"202": {**json_answer("RunAccepted", "The run is queued again"),
                                  "headers": {"Location": {
                                      "description": "The run's URL",
                                      "schema": {"type": "string"}}}},
                          **_errors(401, 404, 409, 503)}}},
        "/v1/runs/{run_id}/approvals/{approval_id}": {"post": {
            "operationId": "decideApproval", "summary": "Approve or deny a run's tool calls",
            "description": "A run whose tool calls are marked `approval: ask` stops "
            "(`awaiting_approval`, the calls in its `approval`) until someone decides. "
            "`approve` runs them; `deny` gives the model a refusal it reads and goes on. No "
            "decision before `expires_at` counts as deny. Only the run's user may decide.",
            "parameters": [_RUN_ID, {
                "name": "approval_id", "in": "path", "required": True,
                "description": "The run's `approval.approval_id` (16 hex digits).",
                "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"}}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": ref("DecisionRequest")}}},
            "responses": {"202": json_answer("DecisionAccepted",
                                             "The run goes on with the decision"),
                          **_errors(400, 401, 403, 404, 409, 415, 503)}}},
        "/v1/runs/{run_id}/files/{path}": {"get": {
            "operationId": "getRunFile", "summary": "A file of the run's workspace",
            "description": "A file the run answered with (`files` of the run), else the "
            "session's workspace file as last stored after a run; always "
            "`application/octet-stream`, as an attachment.",
            "parameters": [_RUN_ID, {
                "name": "path", "in": "path", "required": True,
                "description": "Relative path in the workspace (`src/app.py`); no `..`.",
                "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The file's bytes", "content": {
                "application/octet-stream": {"schema": {
                    "type": "string", "contentMediaType": "application/octet-stream"}}}},
                **_errors(400, 401, 404, 503)}}},
        "/healthz": {"get": {
            "operationId": "health", "summary": "Each role's consumer state (no token needed)",
            "security": [],
            "responses": {"200": json_answer("Health", "NATS answers"), **_errors(503)}}},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document",
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {
                "application/json": {"schema": {"type": "object"}}}}, **_errors(401)}}},
    }


@functools.lru_cache(maxsize=4)
def openapi_document(max_body_bytes: int, roles: tuple[str, ...] = ()) -> bytes:
    """The OpenAPI 3.1 document as JSON bytes (built once per body limit and roles;
    ``roles``: the topology's actor roles, which ``/v1/dead-letters?role=`` takes)."""
    _, components = msgspec.json.schema_components(
        [RunRequest, RunAccepted, RunView, StopAccepted, DecisionRequest, DecisionAccepted,
         ErrorBody, Health, *OPS_SCHEMAS, *RUNS_SCHEMAS,
         *CONSOLE_SCHEMAS], ref_template=REF)
    document = {
        "openapi": "3.1.0",
        "info": {"title": "Switchboard HTTP API", "version": "1",
                 "description": "Submit requests to Switchboard's agents, follow and stop "
                 "runs, fetch their files. Every route but `/healthz` and `/readyz` needs "
                 "`Authorization: Bearer <API key>`; a key without `admin` reaches only the "
                 "runs and sessions it started (another key's run is 404). Errors are "
                 "`{\"error\": {\"code\", \"message\"}}`; a method a path does not have "
                 "is answered 405 `method_not_allowed` with `Allow` naming the ones it has "
                 "(RFC 9110 §15.5.6)."},
        "security": [{"bearer": []}],
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "An API key: SB_API_TOKEN (every scope) or a key "
                       "of SB_API_KEYS_FILE (its scopes: read, submit, control, admin)"}}},
        "paths": _with_key_errors(
            {**_paths(max_body_bytes), **runs_paths(), **ops_paths(roles),
             **console_paths()}),
    }
    return msgspec.json.encode(document)


def _with_key_errors(paths: dict[str, Any]) -> dict[str, Any]:
    """``paths`` with what any API key may get on every operation that needs one: 403
    ``insufficient_scope`` (a description added to a 403 the operation has) and 429
    ``rate_limited`` / ``quota_exceeded`` with ``Retry-After``."""
    scope = ("`insufficient_scope`: the API key lacks the scope this operation needs "
             "(`read` for GET, `submit` for creating runs, `control` for the other POSTs, "
             "`admin` for dead letters)")
    for item in paths.values():
        for operation in item.values():
            if operation.get("security") == []:
                continue
            answers = operation["responses"]
            if "403" in answers:
                answers["403"] = {**answers["403"],
                                  "description": f"{answers['403']['description']}; {scope}"}
            else:
                answers["403"] = json_answer("ErrorBody", scope[0].upper() + scope[1:])
            answers["429"] = {**json_answer(
                "ErrorBody", "`rate_limited`: the API key's rate is spent; "
                "`quota_exceeded`: its runs of the day (UTC) are"),
                "headers": {"Retry-After": {"description": "Seconds until a request may "
                                            "succeed (RFC 9110 §10.2.3)",
                                            "schema": {"type": "string"}}}}
    return paths
