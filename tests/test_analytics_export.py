"""Event analytics against a real nats-server: known execution events published to the events
stream, exported into DuckDB (incrementally), reported and queried through the `switchboard`
command. The whole system's own events are in test_analytics_e2e.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import nats
import pytest
from analytics_events import SUBJECTS, dataset, export, publish

from analytics import COLUMNS, build_report, open_db, parse_since
from analytics._export import event_row
from analytics._report import OUTCOMES
from analytics.errors import ExportError, NoDatabaseError
from protocol import ExecutionEvent, encoder
from switchboard.cli import main

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def exported(module_nats: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The dataset published once and exported into a DuckDB file."""
    db = tmp_path_factory.mktemp("analytics") / "events.duckdb"
    asyncio.run(publish(module_nats, dataset(), raw=b"not json at all"))
    added, total = asyncio.run(export(module_nats, db))
    assert (added, total) == (len(dataset()) + 1, len(dataset()) + 1)
    yield db


def _records(db: Path, since_s: float | None = None) -> dict[str, list[dict[str, object]]]:
    import datetime as dt

    con = open_db(db, read_only=True)
    try:
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=since_s)
                 if since_s is not None else None)
        return {k: t.records() for k, t in build_report(con, since).items()}
    finally:
        con.close()


def test_every_event_is_a_row_with_its_facts_and_raw_json(exported: Path) -> None:
    con = duckdb.connect(str(exported), read_only=True)
    try:
        columns = [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'events' "
            "ORDER BY column_index").fetchall()]
        assert columns == [name for name, _, _ in COLUMNS]
        row = con.execute(
            "SELECT actor, kind, session, request_id, flow, role, user_id, model, tokens_in, "
            "tokens_out, cost_usd, latency_ms, raw->>'$.actor', subject FROM events "
            "WHERE kind = 'model_call' AND request_id = 'r2'").fetchone()
        assert row == ("python_coder", "model_call", "terminal-bob", "r2", None, None, None,
                       "offline/tier-3", 1000, 300, 0.01, 300.0, "python_coder",
                       "sb.event.python_coder.model_call.terminal-bob")
        assert con.execute("SELECT count(*) FROM events WHERE error IS NOT NULL").fetchone() \
            == (5,)  # the retry, two dead letters, the model error, the undecodable message
        weird = con.execute("SELECT kind, actor, session, raw::VARCHAR, error FROM events "
                            "WHERE kind = 'undecodable'").fetchone()
        assert weird is not None and weird[:4] == ("undecodable", "python_coder", "s1",
                                                   '"not json at all"')
        assert "not an ExecutionEvent" in weird[4]
        comment = con.execute("SELECT comment FROM duckdb_columns() WHERE table_name = "
                              "'events' AND column_name = 'latency_ms'").fetchone()
        assert comment is not None and "milliseconds" in comment[0]
    finally:
        con.close()


def test_the_report_computes_each_section(exported: Path) -> None:
    report = _records(exported)
    assert report["summary"][0]["events"] == len(dataset()) + 1
    assert report["summary"][0]["requests"] == 7
    by_actor = {r["actor"]: r for r in report["latency_by_actor"]}
    assert by_actor["classifier"]["steps"] == 3 and by_actor["classifier"]["p50_ms"] == 5.0
    assert by_actor["python_coder"]["p99_ms"] == 900.0
    flows = {r["flow"]: r for r in report["latency_by_flow"]}
    assert set(flows) == {"simple", "sequential"}  # r3 (refused) is no answered request
    assert flows["simple"]["requests"] == 1
    assert flows["simple"]["p50_ms"] == pytest.approx(105.0, abs=0.2)
    assert flows["sequential"]["p95_ms"] == pytest.approx(705.0, abs=0.2)
    models = {r["model"]: r for r in report["model_usage"]}
    assert models["offline/tier-3"]["tokens_in"] == 1000
    assert models["offline/tier-3"]["cost_usd"] == pytest.approx(0.01)
    users = {r["user_id"]: r for r in report["user_usage"]}
    assert users["alice"]["tokens_in"] == 300 and users["alice"]["calls"] == 2
    assert users["bob"]["cost_usd"] == pytest.approx(0.01)
    assert users["(unattributed)"]["calls"] == 1
    assert report["escalation_rate"] == [{
        "sequential_runs": 2, "escalated_runs": 1, "escalations": 1, "paused_runs": 1,
        "escalated_pct": 50.0}]  # r2 escalated and paused, r5 was stopped
    assert report["escalation_causes"][0]["cause"] == "stuck"
    feedback = {r["role"]: r for r in report["feedback_by_role"]}
    assert (feedback["python_coder"]["thumbs_up"], feedback["python_coder"]["thumbs_down"]) \
        == (1, 1)
    assert feedback["researcher"]["up_pct"] == 0.0
    errors = {(r["actor"], r["kind"]): r["events"] for r in report["errors"]}
    assert errors == {("python_coder", "retry"): 1, ("python_coder", "dead_letter"): 1,
                      ("python_coder", "undecodable"): 1, ("researcher", "model_error"): 1,
                      ("researcher", "dead_letter"): 1}
    assert report["dead_letters"][0]["reason"] == "ModelUnavailableError: simulated outage"
    decisions = {r["source"]: r for r in report["router_decisions"]}
    assert decisions["rule"]["decisions"] == 2 and decisions["rule"]["sequential"] == 1
    assert decisions["model"]["pct"] == pytest.approx(33.3)  # r1 and r5 of 6 decisions


def test_each_request_has_one_outcome(exported: Path) -> None:
    outcomes: dict[str, dict[str, Any]] = {
        str(r.pop("flow")): r for r in _records(exported)["outcomes"]}
    assert list(outcomes) == ["(unclassified)", "branch", "sequential", "simple", "(all)"]
    assert outcomes["simple"] == {"requests": 3, "answered": 1, "paused": 0, "refused": 1,
                                  "aborted": 0, "failed": 1, "silent": 0, "unfinished": 0,
                                  "answered_pct": 33.3}  # r1, r3, r6
    assert outcomes["sequential"] == {"requests": 2, "answered": 0, "paused": 1, "refused": 0,
                                      "aborted": 1, "failed": 0, "silent": 0, "unfinished": 0,
                                      "answered_pct": 0.0}  # r2, r5
    assert outcomes["branch"]["unfinished"] == 1  # r7
    assert outcomes["(unclassified)"]["failed"] == 1  # r4: dead-lettered, no answered event
    total = outcomes["(all)"]
    assert total["requests"] == 7 == sum(total[o] for o in OUTCOMES)


def test_numbers_an_event_does_not_carry_are_null(exported: Path) -> None:
    con = duckdb.connect(str(exported), read_only=True)
    try:
        classified = con.execute(
            "SELECT tokens_in, tokens_out, cost_usd, latency_ms, value, pid FROM events "
            "WHERE kind = 'classified' AND request_id = 'r1'").fetchone()
        assert classified == (None, None, None, None, None, 1)
        # avg() and count() over the whole table see only the events that measure it.
        assert con.execute("SELECT count(latency_ms), avg(latency_ms) FROM events").fetchone() \
            == (12, pytest.approx(1717.0 / 12))  # 7 handled, 4 model calls, 1 model error
        assert con.execute("SELECT count(tokens_in), sum(tokens_in), count(value), "
                           "avg(value) FROM events").fetchone() \
            == (4, 1350, 3, pytest.approx(-25 / 3))
        undecodable = con.execute("SELECT latency_ms, pid FROM events "
                                  "WHERE kind = 'undecodable'").fetchone()
        assert undecodable == (None, None)
    finally:
        con.close()


def test_since_keeps_only_recent_events(exported: Path) -> None:
    # The dataset is ten minutes old; the undecodable message has the time it was stored.
    assert _records(exported, since_s=60)["summary"][0]["events"] == 1
    assert _records(exported, since_s=3600)["summary"][0]["events"] == len(dataset()) + 1


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("12h", 43200), ("1d", 86400),
                                               ("7d", 604800)])
def test_parse_since(text: str, seconds: int) -> None:
    assert parse_since(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "1", "d", "0d", "1w", "-1d", "1.5h", "yesterday"])
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="30m, 12h, 1d, 7d"):
        parse_since(text)


def test_a_second_export_adds_only_new_events(nats_url: str, tmp_path: Path) -> None:
    db = tmp_path / "events.duckdb"
    first = dataset()[:5]
    asyncio.run(publish(nats_url, first))
    assert asyncio.run(export(nats_url, db)) == (5, 5)
    assert asyncio.run(export(nats_url, db)) == (0, 5)
    asyncio.run(publish(nats_url, dataset()[5:8]))
    assert asyncio.run(export(nats_url, db)) == (3, 8)
    assert asyncio.run(export(nats_url, db)) == (0, 8)
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT min(seq), max(seq), count(DISTINCT seq) FROM events"
                           ).fetchone() == (1, 8, 8)
        assert con.execute("SELECT last_seq FROM export_state").fetchone() == (8,)
    finally:
        con.close()


def test_an_export_cut_short_is_redone_without_duplicates(nats_url: str, tmp_path: Path
                                                          ) -> None:
    db = tmp_path / "events.duckdb"
    asyncio.run(publish(nats_url, dataset()))
    asyncio.run(export(nats_url, db))
    con = duckdb.connect(str(db))
    con.execute("UPDATE export_state SET last_seq = 3")  # as if it died after 3 events
    con.close()
    added, total = asyncio.run(export(nats_url, db))
    assert (added, total) == (0, len(dataset()))  # the rows after 3 were already there


def test_a_recreated_stream_is_refused(nats_url: str, tmp_path: Path) -> None:
    db = tmp_path / "events.duckdb"
    con = open_db(db, read_only=False)
    con.execute("INSERT INTO export_state VALUES ('SB_EVENTS', 500, now(), NULL)")
    con.close()
    asyncio.run(publish(nats_url, dataset()[:2]))
    with pytest.raises(ExportError, match="recreated"):  # fewer events than exported
        asyncio.run(export(nats_url, db))


def test_a_recreated_stream_that_grew_is_refused(nats_url: str, tmp_path: Path) -> None:
    db = tmp_path / "events.duckdb"
    asyncio.run(publish(nats_url, dataset()[:2]))
    asyncio.run(export(nats_url, db))
    asyncio.run(_recreate_events_stream(nats_url))
    asyncio.run(publish(nats_url, dataset()[:5]))  # past the 2 exported from the first one
    with pytest.raises(ExportError, match="recreated"):
        asyncio.run(export(nats_url, db))


async def _recreate_events_stream(url: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(SUBJECTS.events_stream)
    finally:
        await nc.close()


def test_reading_a_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(NoDatabaseError, match="switchboard events export"):
        open_db(tmp_path / "none.duckdb", read_only=True)


def test_the_batch_rows_follow_the_columns() -> None:
    from analytics._export import _Row

    assert _Row.__struct_fields__ == tuple(name for name, _, _ in COLUMNS)


def test_event_row_of_an_event_with_defaults() -> None:
    event = ExecutionEvent(event_id="e", session="s", actor="a", kind="started")
    row = event_row(7, "sb.event.a.started.s", encoder.encode(event), stored_at=123.0)
    assert (row.seq, row.time, row.request_id, row.error) == (
        7, 123.0, None, None)  # at 0: the stream's time
    assert (row.tokens_in, row.tokens_out, row.cost_usd, row.latency_ms, row.value,
            row.pid) == (None,) * 6  # nothing it does not carry is 0


# ------------------------------------------------------------------------ the command line


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_query_prints_a_table_or_json(exported: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    sql = "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY n DESC, kind LIMIT 3"
    code, out, _ = _cli(capsys, "events", "query", "--db", str(exported), sql)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["kind", "n"] and set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["handled", "7"]
    code, out, _ = _cli(capsys, "events", "query", "--db", str(exported), "--json", sql)
    assert code == 0 and json.loads(out)[0] == {"kind": "handled", "n": 7}
    code, out, _ = _cli(capsys, "events", "query", "--db", str(exported), "SELECT NULL AS x")
    assert code == 0 and out.splitlines()[2].strip() == "-"  # NULL is printed as -
    code, out, _ = _cli(capsys, "events", "query", "--db", str(exported), "--json",
                        "SELECT time, cost_usd FROM events WHERE seq = 1")
    row = json.loads(out)[0]
    assert row["time"].endswith("Z") or "+" in row["time"]  # RFC 3339
    assert row["cost_usd"] == 0.001


def test_bad_sql_is_duckdbs_error_and_exit_1(exported: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "events", "query", "--db", str(exported),
                          "SELECT nope FROM events")
    assert code == 1 and out == ""
    assert "DuckDB rejected the query" in err and "Traceback" not in err
    assert err.split("DuckDB rejected the query:", 1)[1].strip()  # and DuckDB's reason
    count = "SELECT count(*) AS n FROM events"
    before = json.loads(_cli(capsys, "events", "query", "--db", str(exported), "--json", count)[1])
    code, _, err = _cli(capsys, "events", "query", "--db", str(exported), "DELETE FROM events")
    assert code == 1 and "DuckDB rejected the query" in err
    after = json.loads(_cli(capsys, "events", "query", "--db", str(exported), "--json", count)[1])
    assert after == before and before[0]["n"] > 0  # opened read-only: nothing was deleted


def test_report_plain_and_json(exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "report", "--db", str(exported))
    assert code == 0
    for title in ("Outcomes per flow", "Latency per actor", "Latency per flow",
                  "Tokens and cost per model", "Tokens and cost per user", "Escalation rate",
                  "Feedback per role", "Errors by actor and kind", "Dead letters",
                  "Router decisions by source"):
        assert title in out
    code, out, _ = _cli(capsys, "report", "--db", str(exported), "--json", "--since", "1d")
    report = json.loads(out)
    assert code == 0 and report["summary"][0]["events"] == len(dataset()) + 1
    assert {r["source"] for r in report["router_decisions"][:2]} == {"model", "rule"}


def test_report_without_a_database_and_bad_since(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "report", "--db", str(tmp_path / "no.duckdb"))
    assert code == 2 and "switchboard events export" in err
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--since", "yesterday"])
    assert exit_.value.code == 2
    assert "30m, 12h, 1d, 7d" in capsys.readouterr().err


def test_export_command_against_a_server(nats_url: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(publish(nats_url, dataset()[:4]))
    db = tmp_path / "out.duckdb"
    code, out, _ = _cli(capsys, "events", "export", "--nats-url", nats_url, "--db", str(db))
    assert code == 0 and out.startswith("Exported 4 new events (sequences 1-4)")
    code, out, _ = _cli(capsys, "events", "export", "--nats-url", nats_url, "--db", str(db))
    assert code == 0 and out.startswith("Exported 0 new events")


def test_export_command_without_a_server(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from switchboard.embedded import free_port

    db = tmp_path / "x.duckdb"
    code, _, err = _cli(capsys, "events", "export", "--nats-url",
                        f"nats://127.0.0.1:{free_port()}", "--db", str(db))
    assert code == 2 and "Is Switchboard running?" in err
    assert not db.exists()  # no empty database for `report` to read as "no events"
    code, _, err = _cli(capsys, "report", "--db", str(db))
    assert code == 2 and "switchboard events export" in err


def test_an_export_from_a_server_without_switchboard_leaves_no_database(
        nats_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "x.duckdb"
    code, _, _ = _cli(capsys, "events", "export", "--nats-url", nats_url, "--db", str(db))
    assert code == 2 and not db.exists()


def test_query_and_report_need_no_topology(exported: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("tiers: [\n")
    code, out, _ = _cli(capsys, "--topology", str(broken), "events", "query",
                        "select 40 + 2 as answer", "--db", str(exported))
    assert code == 0 and "42" in out
    code, out, _ = _cli(capsys, "--topology", str(broken), "report", "--db", str(exported))
    assert code == 0 and "Switchboard report" in out


@pytest.mark.parametrize("command", [["report"], ["events", "export"], ["events", "query"]])
def test_every_analytics_command_has_help(command: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and f"switchboard {' '.join(command)}" in out and "--db" in out
    if command[-1] == "query":
        assert "request_id" in out and "duckdb_columns()" in out  # the columns
