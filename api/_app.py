"""The aiohttp application: routes, bearer-token check, body limits, and every ``ApiError``
turned into ``{"error": {"code", "message"}}`` with its status."""

from __future__ import annotations

import hmac
import logging
import mimetypes
import re
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath
from typing import Any

import msgspec
from aiohttp import web

from api._files import RunFiles
from api._openapi import openapi_document
from api._ops import OpsRoutes
from api._runs import RunService
from api._schema import (
    ErrorBody,
    ErrorDetail,
    Health,
    RunAccepted,
    StopAccepted,
    encoder,
    request_decoder,
)
from api._sse import RunEvents
from api.errors import (
    ApiConfigError,
    ApiError,
    BadRequestError,
    MalformedJsonError,
    NotFoundError,
    PayloadTooLargeError,
    UnauthorizedError,
)

_log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
"""Largest request body accepted, in bytes (a ``message`` is at most 32,000 characters)."""
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
"""Paths served without a token."""
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
          413: "payload_too_large"}

HealthCheck = Callable[[], Awaitable[Health]]
"""Reads the consumers' state (``api._health.health`` bound to a connection)."""


def _json(body: msgspec.Struct, status: int = 200, headers: dict[str, str] | None = None
          ) -> web.Response:
    return web.Response(body=encoder.encode(body), status=status, headers=headers,
                        content_type="application/json")


def error_response(status: int, code: str, message: str) -> web.Response:
    """``{"error": {"code", "message"}}`` with ``status`` (401 also names the scheme)."""
    headers = {"WWW-Authenticate": 'Bearer realm="switchboard"'} if status == 401 else None
    return _json(ErrorBody(error=ErrorDetail(code=code, message=message)), status, headers)


class ApiApp:
    """The HTTP API's routes over the run service.

    Args:
        token: the bearer token every request but ``PUBLIC_PATHS`` must carry (never logged).
        runs: submits, reads and stops runs.
        events: streams a run's events.
        files: reads a run's files.
        health: reads the consumers' state.
        ops: ``/readyz``, ``/metrics`` and the dead-letter routes (None: not served).
        max_body_bytes: largest request body; larger ones get 413.

    Raises:
        ApiConfigError: ``token`` is empty.
    """

    def __init__(self, token: str, runs: RunService, events: RunEvents, files: RunFiles,
                 health: HealthCheck, *, max_body_bytes: int = MAX_BODY_BYTES,
                 ops: OpsRoutes | None = None) -> None:
        if not token:
            msg = "SB_API_TOKEN is empty: the HTTP API needs a token"
            raise ApiConfigError(msg)
        self._token = token.encode()
        self.runs, self.events, self.files, self.health = runs, events, files, health
        self.max_body_bytes = max_body_bytes
        self.ops = ops

    def app(self) -> web.Application:
        """The aiohttp application (middlewares: errors outside, then the token check)."""
        counting = [self.ops.metrics.middleware] if self.ops is not None else []
        app = web.Application(client_max_size=self.max_body_bytes,
                              middlewares=[*counting, self._errors, self._auth])
        app.router.add_post("/v1/runs", self.create_run)
        app.router.add_get("/v1/runs/{run_id}", self.get_run)
        app.router.add_get("/v1/runs/{run_id}/events", self.run_events)
        app.router.add_post("/v1/runs/{run_id}/stop", self.stop_run)
        app.router.add_get("/v1/runs/{run_id}/files/{path:.+}", self.run_file)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/openapi.json", self.openapi)
        if self.ops is not None:
            self._add_ops_routes(app.router, self.ops)
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
            return error_response(exc.status, exc.code, str(exc) or exc.code)
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, PayloadTooLargeError.code,
                                  f"the body is larger than {self.max_body_bytes} bytes")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_response(exc.status, _CODES.get(exc.status, "http_error"), exc.reason)
        return response

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in PUBLIC_PATHS:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                      self._token):
                msg = "send Authorization: Bearer <SB_API_TOKEN>"
                raise UnauthorizedError(msg)
        response: web.StreamResponse = await handler(request)
        return response

    # ------------------------------------------------------------------ routes

    async def create_run(self, request: web.Request) -> web.Response:
        """``POST /v1/runs`` → 202 ``RunAccepted``; 400 / 413 publish nothing."""
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            msg = f"the body is larger than {self.max_body_bytes} bytes"
            raise PayloadTooLargeError(msg)
        body = await request.read()
        try:
            run_request = request_decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise BadRequestError(str(exc)) from exc
        except msgspec.DecodeError as exc:
            msg = f"the body is not JSON: {exc}"
            raise MalformedJsonError(msg) from exc
        if not run_request.message.strip():
            msg = "`message` is empty - at `$.message`"
            raise BadRequestError(msg)
        record = await self.runs.submit(run_request)
        return _json(RunAccepted(run_id=record.run_id, session=record.session,
                                 status=record.status), 202,
                     {"Location": f"/v1/runs/{record.run_id}"})

    async def get_run(self, request: web.Request) -> web.Response:
        """``GET /v1/runs/{run_id}`` → ``RunView``."""
        return _json(await self.runs.view(_run_id(request)))

    async def stop_run(self, request: web.Request) -> web.Response:
        """``POST /v1/runs/{run_id}/stop`` → 202 ``StopAccepted``."""
        record = await self.runs.stop(_run_id(request))
        return _json(StopAccepted(run_id=record.run_id, status=record.status,
                                  stop_requested=record.stop_requested), 202)

    async def run_file(self, request: web.Request) -> web.Response:
        """``GET /v1/runs/{run_id}/files/{path}`` → the file's bytes."""
        record = await self.runs.get(_run_id(request))
        path = request.match_info["path"]
        data = await self.files.read(record, path)
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        name = PurePosixPath(path).name.replace('"', "")
        return web.Response(body=data, content_type=kind, headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff"})

    async def run_events(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/runs/{run_id}/events`` → ``text/event-stream`` until the run ends."""
        record = await self.runs.get(_run_id(request))
        stream = self.events.follow(record)
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
        finally:
            await stream.aclose()
        await response.write_eof()
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz`` (no token) → ``Health``; 503 when NATS does not answer."""
        return _json(await self.health())

    async def openapi(self, request: web.Request) -> web.Response:
        """``GET /openapi.json`` → the OpenAPI 3.1 document."""
        return web.Response(body=openapi_document(self.max_body_bytes),
                            content_type="application/json")


def _run_id(request: web.Request) -> str:
    run_id = request.match_info["run_id"]
    if not _RUN_ID.match(run_id):
        msg = f"no run {run_id[:64]}"
        raise NotFoundError(msg)
    return run_id
