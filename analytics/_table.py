"""Query results as tables: run a query, print it aligned, or as JSON for scripts."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import duckdb
import msgspec

from analytics.errors import QueryError

_log = logging.getLogger(__name__)

ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class Table:
    """A query's result: column names and rows (tuples in column order)."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        """The rows as objects keyed by column name (a later column wins a repeated name)."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def run_query(con: duckdb.DuckDBPyConnection, sql: str,
              params: Sequence[Any] | Mapping[str, Any] | None = None) -> Table:
    """Run ``sql`` (several statements: the last one's result) and fetch every row.

    Raises:
        QueryError: DuckDB rejected it; the message is DuckDB's (the syntax error with its
            position, the unknown column and the candidates, a write on a read-only file...).
    """
    try:
        cursor = con.execute(sql, params)
        if cursor.description is None:  # a statement without a result (SET, PRAGMA ...)
            return Table((), [])
        columns = tuple(str(d[0]) for d in cursor.description)
        rows = cursor.fetchall()
    except duckdb.Error as exc:
        raise QueryError(str(exc).strip()) from exc
    return Table(columns, rows)


def cell(value: Any, width: int = 60) -> str:
    """One value as printed in a plain table: NULL as ``-``, times in local time to the
    second, floats without trailing zeros, text on one line and at most ``width`` chars."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float | Decimal):
        number = float(value)
        if number != number:  # NaN
            return "-"
        text = f"{number:.6f}".rstrip("0").rstrip(".") if abs(number) < 1e6 else f"{number:.0f}"
        return "0" if text in {"", "-0"} else text
    if isinstance(value, dt.datetime):
        local = value.astimezone() if value.tzinfo is not None else value
        return local.strftime("%Y-%m-%d %H:%M:%S")
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def render(table: Table, *, width: int = 60, indent: str = "") -> str:
    """``table`` as aligned text: a header, a rule, one line per row (numbers right-aligned);
    ``(no rows)`` when it is empty. Cells longer than ``width`` characters are cut (``…``)."""
    if not table.columns:
        return f"{indent}(no result)"
    if not table.rows:
        return f"{indent}(no rows)"
    cells = [[cell(v, width) for v in row] for row in table.rows]
    right = [all(_numeric(row[i]) or row[i] is None for row in table.rows)
             for i in range(len(table.columns))]
    widths = [max(len(name), *(len(row[i]) for row in cells))
              for i, name in enumerate(table.columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w)
                 for v, w, r in zip(values, widths, right, strict=True)]
        return (indent + "  ".join(parts)).rstrip()

    out = [line(table.columns), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)


def _enc_hook(value: Any) -> Any:
    return str(value)


_json = msgspec.json.Encoder(enc_hook=_enc_hook, decimal_format="number")


def to_json(value: Any) -> str:
    """JSON text of ``value`` (tables as ``Table.records``): times as RFC 3339, decimals as
    numbers, NaN as null, anything else DuckDB returns that JSON lacks as its text."""
    return _json.encode(value).decode()
