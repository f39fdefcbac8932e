"""The routes that read runs back: ``GET /v1/runs`` (a filtered list, newest first, with a
cursor), ``GET /v1/sessions/{session}`` and ``/runs``, and ``GET /v1/runs/{run_id}/wait``;
their query parameters checked here (a bad one is 400 ``bad_request``)."""

from __future__ import annotations

import math
import re

import msgspec
from aiohttp import web

from api._index import RunFilter, decode_cursor
from api._params import SESSION, matching, number, owner_of, run_id_of, session_of
from api._query import MAX_WAIT_S, RunQuery
from api._schema import RunStatus, encoder
from api.errors import BadRequestError

DEFAULT_LIMIT, MAX_LIMIT = 20, 100
"""Runs per page when ``limit`` is not given, and the most a page may have."""
DEFAULT_WAIT_S = 30.0
"""``timeout_s`` of a wait that names none (seconds)."""
_TAG = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _json(body: msgspec.Struct) -> web.Response:
    return web.Response(body=encoder.encode(body), content_type="application/json")


def _statuses(request: web.Request) -> frozenset[RunStatus]:
    names = [s for value in request.query.getall("status", []) for s in value.split(",")]
    try:
        return frozenset(RunStatus(name) for name in names)
    except ValueError as exc:
        msg = f"`status` must be among {', '.join(RunStatus)}"
        raise BadRequestError(msg) from exc


def run_filter(request: web.Request, session: str | None, owner: str | None = None
               ) -> tuple[RunFilter, int]:
    """The filter and page size of a listing's query string (``session`` fixed by the path,
    else from ``session=``; ``owner``, when not None, the only ``client`` kept whatever the
    query says).

    Raises:
        BadRequestError: a parameter is not valid.
    """
    tags = request.query.getall("tag", [])
    if any(not _TAG.match(tag) for tag in tags):
        msg = "`tag` must be 1-64 of A-Z a-z 0-9 _ . : -"
        raise BadRequestError(msg)
    cursor = request.query.get("cursor")
    limit = number(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    if limit != int(limit):
        msg = "`limit` must be a whole number"
        raise BadRequestError(msg)
    keep = RunFilter(
        statuses=_statuses(request),
        session=session if session is not None else matching(request, "session", SESSION),
        user=matching(request, "user", SESSION), role=matching(request, "role", _NAME),
        flow=matching(request, "flow", _NAME), tags=frozenset(tags),
        client=_client(request, owner), bot=matching(request, "bot", _NAME),
        since=number(request, "since", 0.0, 0.0, 1e11),
        until=number(request, "until", math.inf, 0.0, 1e11) if "until" in request.query
        else math.inf,
        after=decode_cursor(cursor) if cursor is not None else None)
    return keep, int(limit)


def _client(request: web.Request, owner: str | None) -> str | None:
    """The ``client`` a listing keeps: ``owner``'s runs alone for a key without ``admin``
    (a ``client=`` naming another key finds nothing), else the query's ``client``."""
    asked = matching(request, "client", _NAME)
    if owner is None:
        return asked
    return owner if asked in (None, owner) else "\x00none"


class QueryRoutes:
    """The handlers (``ApiApp`` adds them), over ``query``."""

    def __init__(self, query: RunQuery) -> None:
        self.query = query

    def add_to(self, router: web.UrlDispatcher) -> None:
        """Add the routes to ``router``."""
        router.add_get("/v1/runs", self.list_runs)
        router.add_get("/v1/runs/{run_id}/wait", self.wait_run)
        router.add_get("/v1/sessions/{session}", self.get_session)
        router.add_get("/v1/sessions/{session}/runs", self.session_runs)

    async def list_runs(self, request: web.Request) -> web.Response:
        """``GET /v1/runs`` → ``RunPage``."""
        keep, limit = run_filter(request, None, owner_of(request))
        return _json(await self.query.page(keep, limit))

    async def session_runs(self, request: web.Request) -> web.Response:
        """``GET /v1/sessions/{session}/runs`` → ``RunPage`` of that session."""
        keep, limit = run_filter(request, session_of(request), owner_of(request))
        return _json(await self.query.page(keep, limit))

    async def get_session(self, request: web.Request) -> web.Response:
        """``GET /v1/sessions/{session}`` → ``SessionView``."""
        return _json(await self.query.session(session_of(request), owner_of(request)))

    async def wait_run(self, request: web.Request) -> web.Response:
        """``GET /v1/runs/{run_id}/wait?timeout_s=`` → ``RunView`` once settled or at the
        timeout."""
        timeout_s = number(request, "timeout_s", DEFAULT_WAIT_S, 0.0, MAX_WAIT_S)
        return _json(await self.query.wait(run_id_of(request), timeout_s, owner_of(request)))
