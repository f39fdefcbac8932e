"""``GET /v1/roles``: each actor role's consumer lag, held and redelivered tasks and replicas
ready (``runtime.consumers``, as ``/readyz`` reads them), and the role to scale first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from api._schema import encoder
from api._schema_console import RoleLoad, RoleLoads
from runtime.consumers import RoleConsumer

ReadConsumers = Callable[[], Awaitable[dict[str, RoleConsumer]]]
"""Reads every role's consumer (``OpsRoutes.consumers``); raises ``UnavailableError``."""


def role_loads(consumers: dict[str, RoleConsumer]) -> RoleLoads:
    """Each role's load in the order of ``consumers``, and the role to scale: the largest
    lag above 0 (ties: fewer replicas ready, then the first listed)."""
    loads = [RoleLoad.of(c) for c in consumers.values()]
    lagging = [load for load in loads if load.lag > 0]
    scale = None
    if lagging:
        scale = min(lagging, key=lambda load: (-load.lag, load.replicas)).role
    return RoleLoads(roles=loads, scale=scale)


class RoleRoutes:
    """The handler of ``GET /v1/roles`` over ``consumers``."""

    def __init__(self, consumers: ReadConsumers) -> None:
        self._consumers = consumers

    async def roles(self, request: web.Request) -> web.Response:
        """``GET /v1/roles`` → ``RoleLoads``; 503 when NATS does not answer within 5 s."""
        body = role_loads(await self._consumers())
        return web.Response(body=encoder.encode(body), content_type="application/json")
