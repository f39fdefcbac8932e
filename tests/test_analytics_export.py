"""Event analytics against a real nats-server: known execution events published to the events
stream, exported into DuckDB (incrementally), reported and queried through the `switchboard`
command. The whole system's own events are in test_analytics_e2e.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import nats
import pytest

from analytics import (
    COLUMNS,
    build_report,
    export_events,
    open_db,
    parse_since,
)
from analytics._export import event_row
from analytics.errors import ExportError, NoDatabaseError
from core.config import load_topology
from protocol import ExecutionEvent, Subjects, encoder
from runtime.bus import provision
from switchboard.cli import main

pytestmark = pytest.mark.timeout(120)

SUBJECTS = Subjects()
T0 = time.time() - 600  # ten minutes ago


def _event(actor: str, kind: str, session: str, at: float, **fields: object) -> ExecutionEvent:
    return ExecutionEvent(event_id=f"{actor}-{kind}-{at}", session=session, actor=actor,
                          kind=kind, at=at, pid=1, **fields)  # type: ignore[arg-type]


def dataset() -> list[ExecutionEvent]:
    """Two answered requests (SIMPLE in 105 ms, SEQUENTIAL asking a question after 705 ms),
    one refused, feedback, model calls, an escalation, a pause, a retry, a dead letter."""
    s1, s2 = "terminal-alice", "terminal-bob"
    return [
        # r1: SIMPLE, alice, decided by the model, answered by the researcher.
        _event("classifier", "model_call", s1, T0 + 0.004, request_id="r1",
               model="offline/tier-1", prompt_tokens=100, completion_tokens=20,
               cost_usd=0.001, duration_ms=4.0, detail="route"),
        _event("classifier", "classified", s1, T0 + 0.005, request_id="r1", source="model",
               flow="simple", role="researcher", user_id="alice"),
        _event("classifier", "handled", s1, T0 + 0.010, request_id="r1", duration_ms=10.0,
               step="chat_message"),
        _event("researcher", "model_call", s1, T0 + 0.100, request_id="r1",
               model="offline/tier-2", prompt_tokens=200, completion_tokens=50,
               cost_usd=0.002, duration_ms=80.0),
        _event("researcher", "answered", s1, T0 + 0.105, request_id="r1", flow="simple",
               role="researcher"),
        _event("researcher", "handled", s1, T0 + 0.110, request_id="r1", duration_ms=100.0,
               step="turn_request"),
        # r2: SEQUENTIAL, bob, a rule decided; one escalation, then paused.
        _event("classifier", "classified", s2, T0 + 1.0, request_id="r2", source="rule",
               flow="sequential", role="python_coder", user_id="bob"),
        _event("classifier", "handled", s2, T0 + 1.005, request_id="r2", duration_ms=5.0),
        _event("planner", "handled", s2, T0 + 1.105, request_id="r2", duration_ms=100.0),
        _event("python_coder", "model_call", s2, T0 + 1.5, request_id="r2",
               model="offline/tier-3", prompt_tokens=1000, completion_tokens=300,
               cost_usd=0.01, duration_ms=300.0),
        _event("python_coder", "escalation", s2, T0 + 1.6, request_id="r2", source="stuck",
               model="offline/tier-4", detail="turn 1: a → b: the model reported it is stuck"),
        _event("python_coder", "paused", s2, T0 + 1.7, request_id="r2", source="stuck"),
        _event("python_coder", "answered", s2, T0 + 1.705, request_id="r2",
               flow="sequential", role="python_coder"),  # the question
        _event("python_coder", "retry", s2, T0 + 1.8, request_id="r2",
               detail="delivery 1: boom"),
        _event("python_coder", "handled", s2, T0 + 2.005, request_id="r2", duration_ms=900.0),
        _event("evaluator", "handled", s2, T0 + 3.0, request_id="r2", duration_ms=10.0),
        # r3: refused by a rule: only the classifier handled it (no flow latency).
        _event("classifier", "classified", s1, T0 + 4.0, request_id="r3", source="rule",
               flow="simple", role="researcher", user_id="carol"),
        _event("classifier", "answered", s1, T0 + 4.001, request_id="r3", flow="simple",
               detail="refused"),
        _event("classifier", "handled", s1, T0 + 4.002, request_id="r3", duration_ms=2.0),
        # Feedback, and a reflection after the 👎 (a model call of no request).
        _event("reflector", "feedback", s2, T0 + 5.0, role="python_coder", user_id="bob",
               value=15, detail="+15 by bob: confidence now 65"),
        _event("reflector", "feedback", s2, T0 + 6.0, role="python_coder", user_id="bob",
               value=-20, detail="-20 by bob: confidence now 45"),
        _event("reflector", "feedback", s1, T0 + 7.0, role="researcher", user_id="alice",
               value=-20, detail="-20 by alice: confidence now 30"),
        _event("reflector", "model_call", s1, T0 + 7.5, model="offline/tier-4",
               prompt_tokens=50, completion_tokens=10, cost_usd=0.0005, duration_ms=6.0),
        _event("python_coder", "dead_letter", s2, T0 + 8.0, request_id="r4",
               step="turn_request", detail="HandlerError: delivered 5 times"),
    ]


async def _publish(url: str, events: list[ExecutionEvent], *, raw: bytes = b"") -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await provision(js, load_topology(), ())
        for event in events:
            subject = SUBJECTS.event(event.actor, event.kind, event.session)
            await js.publish(subject, encoder.encode(event))
        if raw:
            await js.publish(SUBJECTS.event("python_coder", "weird", "s1"), raw)
    finally:
        await nc.close()


async def _export(url: str, db: Path) -> tuple[int, int]:
    nc = await nats.connect(url)
    con = open_db(db, read_only=False)
    try:
        result = await export_events(nc.jetstream(), con, SUBJECTS, batch=7)
        return result.added, result.total
    finally:
        con.close()
        await nc.close()


@pytest.fixture(scope="module")
def exported(module_nats: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The dataset published once and exported into a DuckDB file."""
    db = tmp_path_factory.mktemp("analytics") / "events.duckdb"
    asyncio.run(_publish(module_nats, dataset(), raw=b"not json at all"))
    added, total = asyncio.run(_export(module_nats, db))
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
            == (3,)  # the retry, the dead letter, the undecodable message
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
        "sequential_runs": 1, "escalated_runs": 1, "escalations": 1, "paused_runs": 1,
        "escalated_pct": 100.0}]
    assert report["escalation_causes"][0]["cause"] == "stuck"
    feedback = {r["role"]: r for r in report["feedback_by_role"]}
    assert (feedback["python_coder"]["thumbs_up"], feedback["python_coder"]["thumbs_down"]) \
        == (1, 1)
    assert feedback["researcher"]["up_pct"] == 0.0
    errors = {(r["actor"], r["kind"]): r["events"] for r in report["errors"]}
    assert errors == {("python_coder", "retry"): 1, ("python_coder", "dead_letter"): 1,
                      ("python_coder", "undecodable"): 1}
    assert report["dead_letters"][0]["reason"] == "HandlerError: delivered 5 times"
    decisions = {r["source"]: r for r in report["router_decisions"]}
    assert decisions["rule"]["decisions"] == 2 and decisions["rule"]["sequential"] == 1
    assert decisions["model"]["pct"] == pytest.approx(33.3)


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
    asyncio.run(_publish(nats_url, first))
    assert asyncio.run(_export(nats_url, db)) == (5, 5)
    assert asyncio.run(_export(nats_url, db)) == (0, 5)
    asyncio.run(_publish(nats_url, dataset()[5:8]))
    assert asyncio.run(_export(nats_url, db)) == (3, 8)
    assert asyncio.run(_export(nats_url, db)) == (0, 8)
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
    asyncio.run(_publish(nats_url, dataset()))
    asyncio.run(_export(nats_url, db))
    con = duckdb.connect(str(db))
    con.execute("UPDATE export_state SET last_seq = 3")  # as if it died after 3 events
    con.close()
    added, total = asyncio.run(_export(nats_url, db))
    assert (added, total) == (0, len(dataset()))  # the rows after 3 were already there


def test_a_recreated_stream_is_refused(nats_url: str, tmp_path: Path) -> None:
    db = tmp_path / "events.duckdb"
    con = open_db(db, read_only=False)
    con.execute("INSERT INTO export_state VALUES ('SB_EVENTS', 500, now(), NULL)")
    con.close()
    asyncio.run(_publish(nats_url, dataset()[:2]))
    with pytest.raises(ExportError, match="recreated"):  # fewer events than exported
        asyncio.run(_export(nats_url, db))


def test_a_recreated_stream_that_grew_is_refused(nats_url: str, tmp_path: Path) -> None:
    db = tmp_path / "events.duckdb"
    asyncio.run(_publish(nats_url, dataset()[:2]))
    asyncio.run(_export(nats_url, db))
    asyncio.run(_recreate_events_stream(nats_url))
    asyncio.run(_publish(nats_url, dataset()[:5]))  # past the 2 exported from the first one
    with pytest.raises(ExportError, match="recreated"):
        asyncio.run(_export(nats_url, db))


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
    assert (row.seq, row.time, row.request_id, row.error, row.tokens_in) == (
        7, 123.0, None, None, 0)  # at 0: the stream's time


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
    for title in ("Latency per actor", "Latency per flow", "Tokens and cost per model",
                  "Tokens and cost per user", "Escalation rate", "Feedback per role",
                  "Errors by actor and kind", "Dead letters", "Router decisions by source"):
        assert title in out
    code, out, _ = _cli(capsys, "report", "--db", str(exported), "--json", "--since", "1d")
    report = json.loads(out)
    assert code == 0 and report["summary"][0]["events"] == len(dataset()) + 1
    assert report["router_decisions"][0]["source"] == "rule"


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
    asyncio.run(_publish(nats_url, dataset()[:4]))
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
