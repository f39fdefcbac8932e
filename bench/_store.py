"""Bench figures in DuckDB: one long table, one row per figure.

Table ``results``: ``run_id`` (one ``python -m bench run``), ``recorded_at`` (UTC),
``git_commit``, ``scenario``, ``flow``, ``in_flight``, ``replicas``, ``delay_s`` (simulated
model latency, seconds), ``label`` (a process name, or a free qualifier), ``metric``, ``value``,
``unit``, ``params`` (JSON text with everything else about the run).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DB_PATH = RESULTS_DIR / "bench.duckdb"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    run_id VARCHAR NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    git_commit VARCHAR NOT NULL,
    scenario VARCHAR NOT NULL,
    flow VARCHAR,
    in_flight INTEGER,
    replicas INTEGER,
    delay_s DOUBLE,
    label VARCHAR,
    metric VARCHAR NOT NULL,
    value DOUBLE,
    unit VARCHAR NOT NULL,
    params VARCHAR
)
"""
COLUMNS = ("run_id", "recorded_at", "git_commit", "scenario", "flow", "in_flight", "replicas",
           "delay_s", "label", "metric", "value", "unit", "params")


@dataclass
class Figure:
    """One measured number and what it was measured on (see the module docstring)."""

    scenario: str
    metric: str
    value: float
    unit: str
    flow: str | None = None
    in_flight: int | None = None
    replicas: int | None = None
    delay_s: float | None = None
    label: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


def git_commit() -> str:
    """The short commit of the checkout, with ``+dirty`` when tracked files changed."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty.strip() else "")


def new_run_id() -> str:
    """A sortable id for one bench run: UTC time to the second."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


class Store:
    """Appends figures to the DuckDB file (created with its table when missing)."""

    def __init__(self, path: Path = DB_PATH, run_id: str | None = None) -> None:
        self.path = path
        self.run_id = run_id or new_run_id()
        self.commit = git_commit()
        path.parent.mkdir(parents=True, exist_ok=True)
        with duckdb.connect(str(path)) as con:
            con.execute(_SCHEMA)

    def save(self, figures: list[Figure]) -> None:
        """Write ``figures`` in one transaction, stamped with this run and commit."""
        if not figures:
            return
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        rows = []
        for f in figures:
            row = asdict(f)
            params = row.pop("params")
            rows.append((self.run_id, now, self.commit, row["scenario"], row["flow"],
                         row["in_flight"], row["replicas"], row["delay_s"], row["label"],
                         row["metric"], row["value"], row["unit"],
                         json.dumps(params, sort_keys=True)))
        placeholders = ", ".join("?" for _ in COLUMNS)
        with duckdb.connect(str(self.path)) as con:
            con.executemany(f"INSERT INTO results VALUES ({placeholders})", rows)


def latest(path: Path = DB_PATH) -> list[dict[str, Any]]:
    """Every scenario's rows from the latest run that recorded it."""
    if not path.is_file():
        return []
    query = """
        SELECT r.* FROM results r
        JOIN (SELECT scenario, max(run_id) AS run_id FROM results GROUP BY scenario) l
          USING (scenario, run_id)
        ORDER BY scenario, flow NULLS FIRST, delay_s NULLS FIRST, replicas NULLS FIRST,
                 in_flight NULLS FIRST, label NULLS FIRST, metric
    """
    with duckdb.connect(str(path), read_only=True) as con:
        cursor = con.execute(query)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def rows_of_run(run_id: str, path: Path = DB_PATH) -> list[dict[str, Any]]:
    """Every row recorded by the run ``run_id``."""
    with duckdb.connect(str(path), read_only=True) as con:
        cursor = con.execute("SELECT * FROM results WHERE run_id = ? ORDER BY scenario",
                             [run_id])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
