"""The browser console's static files (``api/console/``), served at ``/`` and
``/console/{name}`` without a token: they hold no data, the page asks for the API key and
sends it with every call it makes (docs/http-api.md#console).

Only the names in ``FILES`` are served, each with its media type, ``Cache-Control: no-cache``
with an ``ETag`` (a new version is picked up, an unchanged one answered 304), and a
``Content-Security-Policy`` that lets the page load and call nothing but its own origin
(https://www.w3.org/TR/CSP3/): no CDN, no inline script, no network but the API.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from aiohttp import web

from api.errors import NotFoundError

CONSOLE_DIR = Path(__file__).with_name("console")
"""Where the console's files are (package data of ``api``)."""
INDEX = "index.html"
FILES: dict[str, str] = {
    INDEX: "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "sse.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "run.js": "text/javascript; charset=utf-8",
    "views.js": "text/javascript; charset=utf-8",
}
"""Every file the console has, by name → its ``Content-Type``: the allow-list."""
PREFIX = "/console/"
CONSOLE_PATHS = frozenset({"/", *(PREFIX + name for name in FILES)})
"""The request paths served without a token (exactly these: ``/console/../x`` is not one)."""
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'none'")
"""The page's Content-Security-Policy: its own origin only, nothing inline, no framing."""


def is_console_path(path: str) -> bool:
    """Whether ``path`` (a request's decoded path) is one of the console's files, which are
    served without a token."""
    return path in CONSOLE_PATHS


@functools.cache
def _file(name: str) -> tuple[bytes, str]:
    """The file's bytes and its ETag (read once per process)."""
    data = (CONSOLE_DIR / name).read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def console_file(name: str, if_none_match: str | None = None) -> web.Response:
    """The response for the console file ``name``: 200 with its bytes, or 304 when
    ``if_none_match`` names its current ETag.

    Raises:
        NotFoundError: ``name`` is not in ``FILES`` (``..``, another file, a directory).
    """
    if name not in FILES:
        msg = f"no console file {name[:64]!r}"
        raise NotFoundError(msg)
    data, etag = _file(name)
    headers = {"Cache-Control": "no-cache", "ETag": etag, "Content-Security-Policy": CSP,
               "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
               "X-Frame-Options": "DENY"}
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, headers={**headers, "Content-Type": FILES[name]})


async def _index(request: web.Request) -> web.Response:
    return console_file(INDEX, request.headers.get("If-None-Match"))


async def _static(request: web.Request) -> web.Response:
    return console_file(request.match_info["name"], request.headers.get("If-None-Match"))


def add_console_routes(router: web.UrlDispatcher) -> None:
    """Add ``GET /`` (the console's page) and ``GET /console/{name}`` (its scripts and style)
    to ``router``."""
    router.add_get("/", _index)
    router.add_get(PREFIX + "{name}", _static)
