"""Errors of the event analytics (``switchboard events export | query``, ``switchboard report``).

Hierarchy::

    SwitchboardError (core.errors)
    └── AnalyticsError           the events database cannot be used
        ├── NoDatabaseError      no DuckDB file at that path yet (run ``events export``)
        ├── DatabaseBusyError    another process holds the file (an export still running)
        ├── QueryError           DuckDB rejected a query (bad SQL, unknown column, a write)
        └── ExportError          this file cannot take this events stream (another stream's
                                 events, or the stream was recreated since the last export)

NATS failures during an export are ``core.errors.BrokerError`` / ``NotRunningError``.
"""

from __future__ import annotations

from core.errors import SwitchboardError


class AnalyticsError(SwitchboardError):
    """Root of the analytics errors."""


class NoDatabaseError(AnalyticsError):
    """The DuckDB file does not exist: nothing was exported to it yet."""


class DatabaseBusyError(AnalyticsError):
    """DuckDB could not lock the file: another process (an export) has it open."""


class QueryError(AnalyticsError):
    """DuckDB rejected a query; the message is DuckDB's own."""


class ExportError(AnalyticsError):
    """The events stream cannot be exported into this file."""
