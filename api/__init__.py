"""Switchboard's HTTP API (docs/design.md#gateways): submit a request to the agents, read a run's
status and result, follow its events, stop it, fetch its files; a bearer token guards it and
the same actors as Discord and the terminal answer it. ``switchboard api`` serves it.

The names below are imported on first use: ``api.cli`` is imported by the ``switchboard``
parser on every command, and must not bring aiohttp and nats-py with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api._app import MAX_BODY_BYTES, ApiApp, error_response
    from api._files import RunFiles, clean_path
    from api._outbox import OutboxConsumer
    from api._query import RunQuery
    from api._records import ORIGIN, RunRecord, SessionQueue
    from api._runs import RunService
    from api._schema import (
        FINISHED,
        ErrorBody,
        ErrorDetail,
        Health,
        MultitaskStrategy,
        RunAccepted,
        RunRequest,
        RunStatus,
        RunView,
        StopAccepted,
    )
    from api._schema_query import RunPage, RunSummary, SessionView
    from api._server import ApiOptions, api_keys, parse_listen, run_api
    from api._sse import RunEvents
    from api._store import RunStore
    from api._webhook_rules import WebhookConfig
    from api._webhooks import Webhooks

_EXPORTS = {
    "MAX_BODY_BYTES": "api._app", "ApiApp": "api._app", "error_response": "api._app",
    "RunFiles": "api._files", "clean_path": "api._files",
    "OutboxConsumer": "api._outbox",
    "ORIGIN": "api._records", "RunRecord": "api._records", "SessionQueue": "api._records",
    "RunService": "api._runs", "RunQuery": "api._query",
    "MultitaskStrategy": "api._schema", "RunPage": "api._schema_query",
    "RunSummary": "api._schema_query", "SessionView": "api._schema_query",
    "WebhookConfig": "api._webhook_rules", "Webhooks": "api._webhooks",
    "FINISHED": "api._schema", "ErrorBody": "api._schema", "ErrorDetail": "api._schema",
    "Health": "api._schema", "RunAccepted": "api._schema", "RunRequest": "api._schema",
    "RunStatus": "api._schema", "RunView": "api._schema", "StopAccepted": "api._schema",
    "ApiOptions": "api._server", "api_keys": "api._server", "parse_listen": "api._server",
    "run_api": "api._server",
    "RunEvents": "api._sse",
    "RunStore": "api._store",
}

__all__ = [
    "FINISHED", "MAX_BODY_BYTES", "ORIGIN", "ApiApp", "ApiOptions", "ErrorBody", "ErrorDetail",
    "Health", "MultitaskStrategy", "OutboxConsumer", "RunAccepted", "RunEvents", "RunFiles",
    "RunPage", "RunQuery", "RunRecord", "RunRequest", "RunService", "RunStatus", "RunStore",
    "RunSummary", "RunView", "SessionQueue", "SessionView", "StopAccepted", "WebhookConfig",
    "Webhooks", "api_keys", "clean_path", "error_response", "parse_listen", "run_api",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(module), name)
