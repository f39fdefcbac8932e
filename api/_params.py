"""Path and query parameters of the API's routes, checked: a run id or session that cannot
exist is 404 ``not_found``, a bad query parameter 400 ``bad_request``."""

from __future__ import annotations

import math
import re

from aiohttp import web

from api._keys import ApiKey
from api.errors import BadRequestError, NotFoundError, UnauthorizedError

CALLER = web.RequestKey("switchboard.api_key", ApiKey)
"""Where the auth middleware leaves the request's ``ApiKey``."""
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
SESSION = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def run_id_of(request: web.Request) -> str:
    """The ``{run_id}`` of the path.

    Raises:
        NotFoundError: not 32 hex digits (no run has such an id).
    """
    run_id = request.match_info["run_id"]
    if not RUN_ID.match(run_id):
        msg = f"no run {run_id[:64]}"
        raise NotFoundError(msg)
    return run_id


def session_of(request: web.Request) -> str:
    """The ``{session}`` of the path.

    Raises:
        NotFoundError: not a session name (1-128 of A-Z a-z 0-9 _ -).
    """
    session = request.match_info["session"]
    if not SESSION.match(session):
        msg = f"no session {session[:64]}"
        raise NotFoundError(msg)
    return session


def number(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    """The query parameter ``name`` as a finite number in ``[low, high]`` (``default`` when
    absent).

    Raises:
        BadRequestError: not a number, or out of range.
    """
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high:
        msg = f"`{name}` must be a number from {low:g} to {high:g}, not {text[:40]!r}"
        raise BadRequestError(msg)
    return value


def matching(request: web.Request, name: str, pattern: re.Pattern[str]) -> str | None:
    """The query parameter ``name`` when it matches ``pattern`` (None when absent).

    Raises:
        BadRequestError: it does not match.
    """
    value = request.query.get(name)
    if value is not None and not pattern.match(value):
        msg = f"`{name}` {value[:40]!r} is not a valid value"
        raise BadRequestError(msg)
    return value


def key_of(request: web.Request) -> ApiKey:
    """The API key the request was authenticated with.

    Raises:
        UnauthorizedError: none (a route served without a key asked for one: a bug).
    """
    key = request.get(CALLER)
    if key is None:
        msg = "this route needs an API key"
        raise UnauthorizedError(msg)
    return key


def owner_of(request: web.Request) -> str | None:
    """Whose runs the request reaches: its key's name, None with ``admin`` (``ApiKey.owner``).
    """
    return key_of(request).owner
