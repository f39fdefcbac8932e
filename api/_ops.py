"""The operations routes of the HTTP API: ``/readyz``, ``/metrics`` and the dead-letter queue
(``/v1/dead-letters``), over ``runtime.consumers`` and ``runtime.dead_letters``
(docs/http-api.md#operations)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from aiohttp import web
from nats.aio.client import Client
from nats.js import JetStreamContext

from api._metrics import CONTENT_TYPE, Metrics
from api._ops_schema import (
    MAX_SEQ,
    DeadLetterList,
    DeadLetterReplayed,
    DeadLetterSummary,
    DeadLetterView,
    Readiness,
    RoleReadiness,
)
from api.errors import BadRequestError, ConflictError, NotFoundError, UnavailableError
from core.errors import BrokerError, DeadLetterError, DeadLetterNotFoundError
from protocol import Subjects
from runtime import dead_letters
from runtime.consumers import RoleConsumer, read_consumers

_encoder = msgspec.json.Encoder()
MAX_PAGE = 500
"""Most dead letters one ``GET /v1/dead-letters`` returns."""


def _json(body: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status,
                        content_type="application/json")


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    """``runtime`` errors as the API's: no letter 404, not replayable 409, JetStream 503."""
    try:
        yield
    except DeadLetterNotFoundError as exc:
        raise NotFoundError(str(exc)) from exc
    except DeadLetterError as exc:
        raise ConflictError(str(exc)) from exc
    except BrokerError as exc:
        raise UnavailableError(str(exc)) from exc


def _int(request: web.Request, name: str, value: str, low: int, high: int) -> int:
    """``value`` as an int in ``low``-``high``.

    Raises:
        BadRequestError: it is not (query parameter ``name``).
        NotFoundError: it is not, and ``name`` is a path parameter (``seq``).
    """
    if value.isdigit() and low <= int(value) <= high:
        return int(value)
    if name in request.match_info:
        msg = f"no dead letter {value[:32]!r}"
        raise NotFoundError(msg)
    msg = f"`{name}` must be an integer from {low} to {high}"
    raise BadRequestError(msg)


class OpsRoutes:
    """Handlers of ``/readyz``, ``/metrics`` and ``/v1/dead-letters``.

    Args:
        nc: the API's NATS connection; ``js`` its JetStream context.
        subjects: the deployment's names; ``roles`` every actor role of the topology.
        metrics: the API's registry (its event counter fills it).
    """

    def __init__(self, nc: Client, js: JetStreamContext, subjects: Subjects, roles: list[str],
                 metrics: Metrics) -> None:
        self._nc, self._js, self._subjects, self._roles = nc, js, subjects, roles
        self.metrics = metrics

    @property
    def roles(self) -> list[str]:
        """The topology's actor roles."""
        return self._roles

    async def consumers(self) -> dict[str, RoleConsumer]:
        """Every role's durable consumer (``runtime.consumers.read_consumers``).

        Raises:
            UnavailableError: NATS is not connected, or JetStream does not answer in 5 s.
        """
        if not self._nc.is_connected:
            msg = "NATS is not connected"
            raise UnavailableError(msg)
        async with _translated():
            return await read_consumers(self._js, self._subjects, self._roles)

    async def readyz(self, request: web.Request) -> web.Response:
        """``GET /readyz`` (no token) → 200 ``Readiness`` when every role has a replica asking
        for work, else 503 ``Readiness``; 503 error when NATS does not answer."""
        consumers = await self.consumers()
        missing = [role for role, c in consumers.items() if not c.ready]
        body = Readiness(status="not_ready" if missing else "ready", not_ready=missing,
                         roles={role: RoleReadiness.of(c) for role, c in consumers.items()})
        return _json(body, 503 if missing else 200)

    async def metrics_text(self, request: web.Request) -> web.Response:
        """``GET /metrics`` → the Prometheus text format (``api._metrics``); 503 when NATS
        does not answer."""
        consumers = await self.consumers()
        async with _translated():
            stored = await dead_letters.count_letters(self._js, self._subjects)
        text = self.metrics.render(consumers.values(), stored)
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE})

    async def list_dead_letters(self, request: web.Request) -> web.Response:
        """``GET /v1/dead-letters?role=&after=&limit=`` → ``DeadLetterList``, oldest first."""
        query = request.query
        role = query.get("role")  # present but empty is no role either: refused
        if role is not None and role not in self._roles:
            msg = f"`role` must be one of the topology's roles, not {role[:64]!r}"
            raise BadRequestError(msg)
        after = _int(request, "after", query.get("after", "0"), 0, MAX_SEQ)
        limit = _int(request, "limit", query.get("limit", "100"), 1, MAX_PAGE)
        async with _translated():
            found = await dead_letters.list_letters(self._js, self._subjects, role=role,
                                                    after=after, limit=limit + 1)
        page = found[:limit]
        more = len(found) > limit
        return _json(DeadLetterList(letters=[DeadLetterSummary.of(s) for s in page],
                                    next_after=page[-1].seq if more else None))

    async def get_dead_letter(self, request: web.Request) -> web.Response:
        """``GET /v1/dead-letters/{seq}`` → ``DeadLetterView``; 404 when there is none."""
        seq = self._seq(request)
        async with _translated():
            stored = await dead_letters.get_letter(self._js, self._subjects, seq)
        return _json(DeadLetterView.full(stored))

    async def replay_dead_letter(self, request: web.Request) -> web.Response:
        """``POST /v1/dead-letters/{seq}/replay`` → 202 ``DeadLetterReplayed``; 404 none,
        409 not a task (``runtime.dead_letters.replay_letter``)."""
        seq = self._seq(request)
        async with _translated():
            replayed = await dead_letters.replay_letter(self._js, self._subjects, seq)
        return _json(DeadLetterReplayed.of(replayed), 202)

    async def discard_dead_letter(self, request: web.Request) -> web.Response:
        """``DELETE /v1/dead-letters/{seq}`` → 200 ``DeadLetterSummary`` of the removed
        letter; 404 when there is none."""
        seq = self._seq(request)
        async with _translated():
            stored = await dead_letters.discard_letter(self._js, self._subjects, seq)
        return _json(DeadLetterSummary.of(stored))

    def _seq(self, request: web.Request) -> int:
        return _int(request, "seq", request.match_info["seq"], 1, MAX_SEQ)

