"""Event analytics in DuckDB: the execution events stream copied into a DuckDB file, a report
over it, and any SQL (docs/design.md#observability: "DuckDB answers questions over the event
history").

Public API:

- ``export_events`` / ``export_to_file``, ``ExportResult``: copy the ``<PREFIX>_EVENTS``
  stream into the file from the last exported sequence on (``_export``);
- ``open_db``, ``COLUMNS``: the file, its ``events`` table and what each column means
  (``_schema``);
- ``build_report``, ``render_report``, ``SECTIONS``, ``parse_since``: the report's queries
  (``_report``);
- ``run_query``, ``Table``, ``render``, ``to_json``: any query, printed aligned or as JSON
  (``_table``);
- errors in ``analytics.errors``.

Names are imported on first use, so that building the ``switchboard`` parser (every command)
does not import duckdb and nats-py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analytics._export import ExportResult, export_events, export_to_file
    from analytics._report import SECTIONS, build_report, parse_since, render_report
    from analytics._schema import COLUMNS, open_db
    from analytics._table import Table, render, run_query, to_json

_WHERE = {
    "ExportResult": "_export", "export_events": "_export", "export_to_file": "_export",
    "SECTIONS": "_report", "build_report": "_report", "parse_since": "_report",
    "render_report": "_report", "COLUMNS": "_schema", "open_db": "_schema",
    "Table": "_table", "render": "_table", "run_query": "_table", "to_json": "_table",
}

__all__ = [
    "COLUMNS",
    "SECTIONS",
    "ExportResult",
    "Table",
    "build_report",
    "export_events",
    "export_to_file",
    "open_db",
    "parse_since",
    "render",
    "render_report",
    "run_query",
    "to_json",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
