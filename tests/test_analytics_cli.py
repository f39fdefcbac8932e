"""The events file that `switchboard events export` writes, opened by the DuckDB command-line
shell of the release line pinned in the test extra (`duckdb-cli`, the 1.5 line: PyPI has no
later shell), not only by the `duckdb` package that wrote it."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from analytics_events import dataset, publish

from analytics._schema import STORAGE_VERSION, newer_than_pinned, open_db, storage_version
from switchboard.cli import main

pytestmark = pytest.mark.timeout(120)


def _shell() -> str:
    """The `duckdb` executable `duckdb-cli` installs beside this environment's Python."""
    found = shutil.which("duckdb", path=sysconfig.get_path("scripts"))
    if found is None:
        pytest.skip("the DuckDB shell is not installed: `uv sync --locked --extra test` "
                    "installs duckdb-cli")
    return found


def _run(db: Path, sql: str) -> list[dict[str, object]]:
    """``sql`` run by the DuckDB shell on ``db`` (read-only); its rows as JSON objects."""
    result = subprocess.run([_shell(), "-readonly", "-json", str(db), "-c", sql],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout or "[]")
    return rows


@pytest.fixture(scope="module")
def exported(module_nats: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The dataset exported by the `switchboard events export` command into a new file."""
    asyncio.run(publish(module_nats, dataset()))
    db = tmp_path_factory.mktemp("analytics-cli") / "events.duckdb"
    assert main(["events", "export", "--nats-url", module_nats, "--db", str(db)]) == 0
    yield db


def test_the_shell_reads_every_row_and_column(exported: Path) -> None:
    [summary] = _run(exported, "SELECT count(*) AS n, count(DISTINCT request_id) AS requests, "
                               "sum(tokens_in)::BIGINT AS tokens_in, count(latency_ms) AS timed "
                               "FROM events")
    assert summary == {"n": len(dataset()), "requests": 7, "tokens_in": 1350, "timed": 12}
    [row] = _run(exported, "SELECT raw->>'$.actor' AS actor, cost_usd, value, pid "
                           "FROM events WHERE kind = 'classified' AND request_id = 'r6'")
    assert row == {"actor": "classifier", "cost_usd": None, "value": None, "pid": 1}
    comments = _run(exported, "SELECT column_name, comment FROM duckdb_columns() "
                              "WHERE table_name = 'events' AND comment IS NOT NULL")
    assert len(comments) == len(_run(exported, "DESCRIBE events"))
    [state] = _run(exported, "SELECT last_seq FROM export_state")
    assert state == {"last_seq": len(dataset())}


def test_the_file_is_in_the_pinned_storage_format(exported: Path) -> None:
    assert _format(exported) == f"{STORAGE_VERSION}+"


def test_a_later_export_keeps_the_format_the_shell_reads(module_nats: str,
                                                         exported: Path) -> None:
    asyncio.run(publish(module_nats, dataset()[:3]))
    assert main(["events", "export", "--nats-url", module_nats, "--db", str(exported)]) == 0
    assert _run(exported, "SELECT count(*) AS n FROM events") == [{"n": len(dataset()) + 3}]


def test_a_file_in_the_newest_format_is_what_the_shell_refuses(tmp_path: Path) -> None:
    # Why the format is pinned: the same table in duckdb's default format does not open.
    newest = tmp_path / "newest.duckdb"
    with duckdb.connect(str(newest)) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
        default = con.execute("SELECT tags['storage_version'] FROM duckdb_databases() "
                              "WHERE database_name = 'newest'").fetchone()
    if default == (f"{STORAGE_VERSION}+",):
        pytest.skip(f"this duckdb writes {STORAGE_VERSION} by default")
    result = subprocess.run([_shell(), "-readonly", str(newest), "-c", "SELECT x FROM t"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0


def test_an_export_into_a_file_of_a_newer_format_says_so(module_nats: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    older = tmp_path / "older.duckdb"
    with duckdb.connect(str(older)):  # as Switchboard created it before the format was pinned
        pass
    asyncio.run(publish(module_nats, dataset()[:1]))
    assert main(["events", "export", "--nats-url", module_nats, "--db", str(older)]) == 0
    out = capsys.readouterr().out
    if not newer_than_pinned(_format(older)):
        pytest.skip(f"this duckdb writes {STORAGE_VERSION} by default")
    assert "⚠️" in out and "docs/analytics.md" in out
    assert main(["events", "export", "--nats-url", module_nats, "--db",
                 str(tmp_path / "new.duckdb")]) == 0
    assert "⚠️" not in capsys.readouterr().out


@pytest.mark.parametrize(("version", "newer"), [("v2.0.0+", True), ("v1.5.0+", False),
                                                ("v1.0.0+", False), ("", False)])
def test_newer_than_pinned(version: str, newer: bool) -> None:
    assert newer_than_pinned(version) is newer


def _format(db: Path) -> str:
    con = open_db(db, read_only=True)
    try:
        return storage_version(con)
    finally:
        con.close()
