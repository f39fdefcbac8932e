"""The browser console's routes without a server of NATS: its files served from an allow-list
without a token (``..``, an unknown name and a directory are 404 or need the token), with
their media types, CSP and ETag; the API's other routes still need the token; and the role to
scale in ``GET /v1/roles`` (``api._roles.role_loads``). The console in a real browser and the
two JSON routes on a live API: ``tests/test_console.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from api._app import ApiApp
from api._console import CONSOLE_DIR, CSP, FILES, is_console_path
from api._keys import KeyRing
from api._query_routes import QueryRoutes
from api._roles import role_loads
from runtime.consumers import RoleConsumer

pytestmark = pytest.mark.timeout(30)
TOKEN = "console-unit-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest_asyncio.fixture(name="client")
async def client_fixture() -> AsyncIterator[TestClient[Any, Any]]:
    """The API's aiohttp application over no run service (the console's routes need none)."""
    none = cast(Any, None)
    app = ApiApp(KeyRing.load(TOKEN, None), none, none, none, none, submitter=none,
                 queries=QueryRoutes(none)).app()
    async with TestClient(TestServer(app)) as client:
        yield client


def test_only_the_listed_files_are_console_paths() -> None:
    assert is_console_path("/")
    assert all(is_console_path(f"/console/{name}") for name in FILES)
    for path in ("/console/", "/console", "/console/../v1/runs", "/console/x.js",
                 "/console/index.html/", "/console//index.html", "/v1/runs", "/index.html"):
        assert not is_console_path(path), path


def test_every_listed_file_exists_and_every_file_is_listed() -> None:
    assert {p.name for p in CONSOLE_DIR.iterdir() if p.is_file()} == set(FILES)


async def test_the_page_and_its_files_are_served_without_a_token(
        client: TestClient[Any, Any]) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert '<script type="module" src="/console/console.js">' in await response.text()
    for name, media_type in FILES.items():
        response = await client.get(f"/console/{name}")
        assert response.status == 200, name
        assert response.headers["Content-Type"] == media_type
        assert await response.read() == (CONSOLE_DIR / name).read_bytes()


async def test_an_unchanged_file_is_304(client: TestClient[Any, Any]) -> None:
    first = await client.get("/console/console.js")
    etag = first.headers["ETag"]
    again = await client.get("/console/console.js", headers={"If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag
    other = await client.get("/console/console.js", headers={"If-None-Match": '"other"'})
    assert other.status == 200


async def test_other_names_are_not_served(client: TestClient[Any, Any]) -> None:
    for path in ("/console/nope.js", "/console/..%2F_console.py", "/console/__init__.py",
                 "/console/.%2E%2Fapi%2F_app.py"):
        response = await client.get(path)  # no token: not a console path, so 401
        assert response.status == 401, path
        response = await client.get(path, headers=AUTH)
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "not_found"


async def _raw_status(client: TestClient[Any, Any], target: str, auth: bool) -> int:
    """The status of ``GET target`` sent as is (no client-side normalisation of ``..``)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        header = f"Authorization: Bearer {TOKEN}\r\n" if auth else ""
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\n{header}Connection: close\r\n\r\n"
                     .encode())
        line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(line.split()[1])


async def test_a_dot_dot_path_sent_as_is_is_never_a_file(client: TestClient[Any, Any]) -> None:
    for target in ("/console/../_console.py", "/console/%2e%2e/_console.py",
                   "/console/..%2f..%2fpyproject.toml", "/console/../../v1/runs",
                   "/console/../index.html"):
        assert await _raw_status(client, target, auth=False) == 401, target
        assert await _raw_status(client, target, auth=True) == 404, target


async def test_the_api_still_needs_the_token(client: TestClient[Any, Any]) -> None:
    for path in ("/v1/runs", "/openapi.json", "/metrics"):
        response = await client.get(path)
        assert response.status == 401, path


def _consumer(role: str, lag: int, replicas: int, error: str | None = None) -> RoleConsumer:
    return RoleConsumer(role=role, num_pending=lag, num_waiting=replicas, num_ack_pending=1,
                        num_redelivered=0, error=error)


def test_the_role_to_scale_has_the_largest_lag_then_fewer_replicas() -> None:
    loads = role_loads({c.role: c for c in [
        _consumer("classifier", 0, 2), _consumer("planner", 5, 2),
        _consumer("python_coder", 5, 1), _consumer("evaluator", 1, 0)]})
    assert loads.scale == "python_coder"
    assert [r.role for r in loads.roles] == ["classifier", "planner", "python_coder",
                                             "evaluator"]
    coder = loads.roles[2]
    assert (coder.lag, coder.held, coder.replicas, coder.ready) == (5, 1, 1, True)
    assert not loads.roles[3].ready


def test_no_role_to_scale_without_a_lag() -> None:
    loads = role_loads({"a": _consumer("a", 0, 1), "b": _consumer("b", 0, 0, "NotFoundError")})
    assert loads.scale is None
    assert loads.roles[1].error == "NotFoundError" and not loads.roles[1].ready
