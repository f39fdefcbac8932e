"""The aiohttp application: routes, the API key check (the key, its scope for the route, its
rate), body limits and media type, and every ``ApiError`` turned into ``{"error": {"code",
"message"}}`` with its status (a 405 names the allowed methods in ``Allow``, RFC 9110
§15.5.6)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from api._console import add_console_routes, is_console_path
from api._files import RunFiles
from api._idempotency import HEADER as IDEMPOTENCY_KEY
from api._idempotency import parse_key
from api._keys import ApiKey, KeyRing, Scope
from api._limits import RateLimits
from api._openapi import openapi_document
from api._ops import OpsRoutes
from api._params import CALLER, key_of, owner_of, run_id_of
from api._query_routes import QueryRoutes
from api._runs import RunService
from api._schema import (
    DecisionAccepted,
    ErrorBody,
    ErrorDetail,
    Health,
    RunAccepted,
    StopAccepted,
    decision_decoder,
    encoder,
    request_decoder,
)
from api._sse import RunEvents
from api._sse_frames import END_ID, Cursor
from api._submit import Submitter
from api._tracing import server_middleware
from api.errors import (
    ApiError,
    BadRequestError,
    InsufficientScopeError,
    MalformedJsonError,
    NotFoundError,
    PayloadTooLargeError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from protocol import Decoder

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

MAX_BODY_BYTES = 64 * 1024
"""Largest request body accepted, in bytes (a ``message`` is at most 32,000 characters)."""
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
"""Paths served without a token."""
_APPROVAL_ID = re.compile(r"^[0-9a-f]{16}$")
_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          413: "payload_too_large"}
ADMIN_PREFIX = "/v1/dead-letters"
"""Routes under it need ``admin``: dead letters hold every origin's messages."""


def scope_of(method: str, path: str) -> Scope:
    """The scope a request needs: ``admin`` for the dead letters, ``submit`` for ``POST
    /v1/runs``, ``read`` for every other ``GET`` / ``HEAD``, ``control`` for the rest."""
    if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
        return Scope.ADMIN
    if method in ("GET", "HEAD"):
        return Scope.READ
    return Scope.SUBMIT if path == "/v1/runs" else Scope.CONTROL
JSON = "application/json"
"""The only media type of request bodies (RFC 8259 §11)."""

HealthCheck = Callable[[], Awaitable[Health]]
"""Reads the consumers' state (``api._health.health`` bound to a connection)."""


def _json(body: msgspec.Struct, status: int = 200, headers: dict[str, str] | None = None
          ) -> web.Response:
    return web.Response(body=encoder.encode(body), status=status, headers=headers,
                        content_type="application/json")


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    """``{"error": {"code", "message"}}`` with ``status`` and ``headers`` (a 401 also names
    the scheme in ``WWW-Authenticate``)."""
    if status == 401:
        headers = {**UnauthorizedError().headers(), **(headers or {})}
    return _json(ErrorBody(error=ErrorDetail(code=code, message=message)), status, headers)


class ApiApp:
    """The HTTP API's routes over the run service.

    Args:
        keys: the API keys; every request but ``PUBLIC_PATHS`` must carry one (never
            logged) with the route's scope (``scope_of``), within its rate.
        limits: counts each key's requests.
        runs: submits, reads and stops runs.
        events: streams a run's events.
        files: reads a run's files.
        health: reads the consumers' state.
        ops: ``/readyz``, ``/metrics`` and the dead-letter routes (None: not served).
        submitter: checks and submits new runs (idempotency keys, webhooks).
        queries: lists runs, reads sessions, waits for runs.
        max_body_bytes: largest request body; larger ones get 413.
    """

    def __init__(self, keys: KeyRing, runs: RunService, events: RunEvents, files: RunFiles,
                 health: HealthCheck, *, submitter: Submitter, queries: QueryRoutes,
                 limits: RateLimits | None = None, max_body_bytes: int = MAX_BODY_BYTES,
                 ops: OpsRoutes | None = None) -> None:
        self.keys = keys
        self.limits = limits or RateLimits()
        self.runs, self.events, self.files, self.health = runs, events, files, health
        self.max_body_bytes = max_body_bytes
        self.ops = ops
        self.submitter, self.queries = submitter, queries

    def app(self) -> web.Application:
        """The aiohttp application (middlewares: the request's span outside, then errors,
        then the token check)."""
        counting = [self.ops.metrics.middleware] if self.ops is not None else []
        app = web.Application(client_max_size=self.max_body_bytes,
                              middlewares=[server_middleware(), *counting, self._errors,
                                           self._auth])
        app.router.add_post("/v1/runs", self.create_run)
        app.router.add_get("/v1/runs/{run_id}", self.get_run)
        # No HEAD: it would hold the connection for as long as the run goes on, with no body.
        app.router.add_get("/v1/runs/{run_id}/events", self.run_events, allow_head=False)
        app.router.add_post("/v1/runs/{run_id}/stop", self.stop_run)
        app.router.add_post("/v1/runs/{run_id}/terminate", self.terminate_run)
        app.router.add_post("/v1/runs/{run_id}/retry", self.retry_run)
        app.router.add_post("/v1/runs/{run_id}/approvals/{approval_id}", self.decide)
        app.router.add_get("/v1/runs/{run_id}/files/{path:.+}", self.run_file)
        self.queries.add_to(app.router)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/openapi.json", self.openapi)
        if self.ops is not None:
            self._add_ops_routes(app.router, self.ops)
        add_console_routes(app.router)
        return app

    @staticmethod
    def _add_ops_routes(router: web.UrlDispatcher, ops: OpsRoutes) -> None:
        router.add_get("/readyz", ops.readyz)
        router.add_get("/metrics", ops.metrics_text)
        router.add_get("/v1/dead-letters", ops.list_dead_letters)
        router.add_get("/v1/dead-letters/{seq}", ops.get_dead_letter)
        router.add_delete("/v1/dead-letters/{seq}", ops.discard_dead_letter)
        router.add_post("/v1/dead-letters/{seq}/replay", ops.replay_dead_letter)

    # ------------------------------------------------------------------ middlewares

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except ApiError as exc:
            if exc.status >= 500:
                _log.warning("%s %s: %s", request.method, request.path, exc)
            return error_response(exc.status, exc.code, str(exc) or exc.code, exc.headers())
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, PayloadTooLargeError.code,
                                  f"the body is larger than {self.max_body_bytes} bytes")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return error_response(exc.status, _CODES.get(exc.status, "http_error"), exc.reason,
                                  allow)
        except Exception:  # a bug: logged with its traceback, answered in the API's shape
            _log.exception("%s %s failed", request.method, request.path)
            return error_response(500, ApiError.code, "the request failed; see the API's log")
        return response

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in PUBLIC_PATHS and not is_console_path(request.path):
            key = self._authenticated(request)
            needed = scope_of(request.method, request.path)
            if not key.allows(needed):
                msg = f"API key {key.name} lacks the scope {needed} this route needs"
                raise InsufficientScopeError(msg)
            await self.limits.hit(key)
        response: web.StreamResponse = await handler(request)
        return response

    def _authenticated(self, request: web.Request) -> ApiKey:
        """The request's key, also left at ``CALLER`` for the routes and the access log.

        Raises:
            UnauthorizedError: no ``Authorization: Bearer`` or no such key.
        """
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        key = self.keys.authenticate(given) if scheme.lower() == "bearer" else None
        if key is None:
            msg = "send Authorization: Bearer <API key> (SB_API_TOKEN or a key of SB_API_KEYS_FILE)"
            raise UnauthorizedError(msg)
        request[CALLER] = key
        return key

    # ------------------------------------------------------------------ routes

    async def create_run(self, request: web.Request) -> web.Response:
        """``POST /v1/runs`` → 202 ``RunAccepted`` (with ``Idempotent-Replayed: true`` when
        an ``Idempotency-Key`` named an earlier run); 400 / 403 / 409 / 413 / 415 / 422 publish
        nothing."""
        _json_body(request)
        header = request.headers.get(IDEMPOTENCY_KEY)
        key = parse_key(header) if header is not None else None
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            msg = f"the body is larger than {self.max_body_bytes} bytes"
            raise PayloadTooLargeError(msg)
        body = await request.read()
        run_request = _decoded(request_decoder, body)
        if not run_request.message.strip():
            msg = "`message` is empty - at `$.message`"
            raise BadRequestError(msg)
        record, replayed = await self.submitter.submit(run_request, key, key_of(request))
        status = await self.runs.current_status(record) if replayed else record.status
        headers = {"Location": f"/v1/runs/{record.run_id}"}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return _json(RunAccepted(run_id=record.run_id, session=record.session,
                                 status=status), 202, headers)

    async def get_run(self, request: web.Request) -> web.Response:
        """``GET /v1/runs/{run_id}`` → ``RunView``."""
        return _json(await self.runs.view(run_id_of(request), owner_of(request)))

    async def stop_run(self, request: web.Request) -> web.Response:
        """``POST /v1/runs/{run_id}/stop`` → 202 ``StopAccepted``."""
        record = await self.runs.stop(run_id_of(request), owner_of(request))
        return _json(StopAccepted(run_id=record.run_id, status=record.status,
                                  stop_requested=record.stop_requested), 202)

    async def terminate_run(self, request: web.Request) -> web.Response:
        """``POST /v1/runs/{run_id}/terminate`` → 202 ``StopAccepted`` (``aborted``)."""
        record = await self.runs.terminate(run_id_of(request), key_of(request).name,
                                           owner_of(request))
        return _json(StopAccepted(run_id=record.run_id, status=record.status,
                                  stop_requested=record.stop_requested), 202)

    async def retry_run(self, request: web.Request) -> web.Response:
        """``POST /v1/runs/{run_id}/retry`` → 202 ``RunAccepted`` (``queued`` or
        ``running``)."""
        record = await self.runs.retry(run_id_of(request), owner_of(request))
        return _json(RunAccepted(run_id=record.run_id, session=record.session,
                                 status=record.status), 202,
                     {"Location": f"/v1/runs/{record.run_id}"})

    async def decide(self, request: web.Request) -> web.Response:
        """``POST /v1/runs/{run_id}/approvals/{approval_id}`` → 202 ``DecisionAccepted``."""
        run_id, approval_id = run_id_of(request), request.match_info["approval_id"]
        if not _APPROVAL_ID.match(approval_id):
            msg = f"run {run_id} has no approval {approval_id[:64]}"
            raise NotFoundError(msg)
        _json_body(request)
        decision = _decoded(decision_decoder, await request.read())
        await self.runs.decide(run_id, approval_id, decision.decision, decision.user,
                               owner_of(request))
        return _json(DecisionAccepted(run_id=run_id, approval_id=approval_id,
                                      decision=decision.decision), 202)

    async def run_file(self, request: web.Request) -> web.Response:
        """``GET /v1/runs/{run_id}/files/{path}`` → the file's bytes, as
        ``application/octet-stream`` whatever the file (the OpenAPI document's type)."""
        record = await self.runs.get(run_id_of(request), owner_of(request))
        path = request.match_info["path"]
        data = await self.files.read(record, path)
        name = PurePosixPath(path).name.replace('"', "")
        return web.Response(body=data, content_type="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff"})

    async def run_events(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/runs/{run_id}/events`` → ``text/event-stream`` until the run ends; after
        the event a ``Last-Event-ID`` names when it is given, 204 when that was the ``end``.

        Raises:
            NotFoundError: no such run.
            BadHeaderError: a ``Last-Event-ID`` this API never sent.
        """
        record = await self.runs.get(run_id_of(request), owner_of(request))
        last = request.headers.get("Last-Event-ID", "").strip()
        if last == END_ID:
            return web.Response(status=204)
        stream = self.events.follow(record, Cursor.parse(last) if last else None)
        first = await anext(stream)  # the replays started: a failure is still a JSON error
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        try:
            await response.write(first)
            async for chunk in stream:
                await response.write(chunk)
        except ConnectionResetError:
            _log.debug("events of run %s: the client left", record.run_id)
            return response
        except ApiError as exc:
            _log.warning("events of run %s cut short: %s", record.run_id, exc)
        except Exception:  # a bug, once the stream began: end it, the status is sent already
            _log.exception("events of run %s failed", record.run_id)
        finally:
            await stream.aclose()
        await response.write_eof()
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz`` (no token) → ``Health``; 503 when NATS does not answer."""
        return _json(await self.health())

    async def openapi(self, request: web.Request) -> web.Response:
        """``GET /openapi.json`` → the OpenAPI 3.1 document."""
        roles = tuple(self.ops.roles) if self.ops is not None else ()
        return web.Response(body=openapi_document(self.max_body_bytes, roles),
                            content_type="application/json")


def _decoded(decoder: Decoder[_T], body: bytes) -> _T:
    """``body`` decoded and validated by ``decoder``.

    Raises:
        BadRequestError: it is JSON of the wrong shape (a field, a type, a value).
        MalformedJsonError: it is not JSON.
    """
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise BadRequestError(str(exc)) from exc
    except msgspec.DecodeError as exc:
        msg = f"the body is not JSON: {exc}"
        raise MalformedJsonError(msg) from exc


def _json_body(request: web.Request) -> None:
    """Refuse a body not sent as ``application/json`` (parameters such as ``charset`` aside).

    Raises:
        UnsupportedMediaTypeError: another media type, or none.
    """
    if request.content_type != JSON or "Content-Type" not in request.headers:
        given = request.headers.get("Content-Type", "none")
        msg = f"send the body as Content-Type: {JSON}, not {given[:100]!r}"
        raise UnsupportedMediaTypeError(msg)
