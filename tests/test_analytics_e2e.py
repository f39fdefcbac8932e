"""Event analytics end to end: `switchboard up` (every actor its own process)
on a real nats-server answers SIMPLE and SEQUENTIAL requests from `switchboard chat` — one run
escalating through a scripted model until it asks the person, then resumed — and a BRANCH one,
and takes 👍 / 👎;
`switchboard events export` copies the events into DuckDB (a second export adds only what is
new, a third nothing), `switchboard report` and `switchboard events query` read them."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from system import REPO, RunningSystem, running_system
from waiting import until

from gateway.bridge import Bridge
from protocol import Control, ControlAction, ExecutionEvent, Subjects, event_decoder

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
TESTS = Path(__file__).resolve().parent
SUBJECTS = Subjects()
USER = "analyst"


@pytest.fixture(scope="module")
def system(module_nats: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningSystem]:
    # The offline models everywhere but on the agentic loop's path, where a scripted model
    # says it is stuck when asked to ("[stuck]"), so a run escalates for real.
    with running_system(
        module_nats, tmp_path_factory.mktemp("analytics-e2e"),
        extra_env={"PYTHONPATH": str(TESTS)},
        providers={"offline": "offline_model:OfflineLLM",
                   "scripted": "scripted_model:ScriptedLLM"},
        escalation=[f"scripted/tier-{t}" for t in (1, 2, 3, 4)],
        rules=[{"name": "changelogs-to-the-writer", "when": {"text": "(?i)changelog"},
                "then": {"flow": "simple", "role": "documentation_writer"}}],
    ) as running:
        yield running


def _switchboard(system: RunningSystem, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchboard.cli", *args], env=system.env,
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def _chat(system: RunningSystem, session: str, text: str) -> str:
    result = _switchboard(system, "chat", "--user", USER, "--session", session,
                          "--timeout", "90", "--message", text)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _reader(system: RunningSystem) -> Callable[[], Any]:
    async def read() -> list[ExecutionEvent]:
        nc = await nats.connect(system.nats_url)
        try:
            js = nc.jetstream()
            total = (await js.stream_info(SUBJECTS.events_stream)).state.messages
            sub = await js.subscribe(SUBJECTS.events_all, ordered_consumer=True)
            found = [event_decoder.decode((await sub.next_msg(timeout=10)).data)
                     for _ in range(total)]
            await sub.unsubscribe()
            return found
        finally:
            await nc.close()
    return read


def _settled(system: RunningSystem, what: str,
             ok: Callable[[list[ExecutionEvent]], bool]) -> list[ExecutionEvent]:
    return asyncio.run(until(_reader(system), ok, within_s=90, what=what))


def _handled(events: list[ExecutionEvent], actor: str, step: str) -> int:
    return sum(e.kind == "handled" and e.actor == actor and e.step == step for e in events)


def _export(system: RunningSystem, db: Path) -> tuple[int, str]:
    result = _switchboard(system, "events", "export", "--db", str(db))
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.match(r"Exported (\d+) new events", result.stdout)
    assert match, result.stdout
    return int(match.group(1)), result.stdout


def _query(system: RunningSystem, db: Path, sql: str) -> list[dict[str, Any]]:
    result = _switchboard(system, "events", "query", "--db", str(db), "--json", sql)
    assert result.returncode == 0, result.stdout + result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


@pytest.fixture(scope="module")
def db(system: RunningSystem) -> Path:
    """Real requests answered, then a first export (some events of the runs' evaluation may
    still arrive after it: the second export takes them)."""
    assert "offline model" in _chat(system, "terminal-hi", "hello")
    _chat(system, "terminal-seq", "write a python function that reverses a string and test it")
    out = _chat(system, "terminal-stuck", "[stuck] write a python function to frobnicate")
    assert "I'm stuck" in out
    assert "Done with the hint" in _chat(system, "terminal-stuck", "here is a hint: the blue one")
    _chat(system, "terminal-docs", "draft a changelog line for version 2")
    _chat(system, "terminal-branch", "what are the pros and cons of different approaches to "
                                     "caching?")
    path = system.data_dir / "events.duckdb"
    added, out = _export(system, path)
    assert added > 50 and f"into {path}" in out
    return path


def test_the_report_reads_the_real_runs(system: RunningSystem, db: Path) -> None:
    result = _switchboard(system, "report", "--json", "--since", "1h")  # the default --db
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    actors = {r["actor"] for r in report["latency_by_actor"]}
    assert {"classifier", "planner", "python_coder", "researcher"} <= actors
    assert all(r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] for r in report["latency_by_actor"])
    flows = {r["flow"]: r for r in report["latency_by_flow"]}
    assert flows["simple"]["requests"] >= 2 and flows["sequential"]["requests"] >= 2
    assert flows["branch"]["requests"] == 1
    assert flows["sequential"]["p50_ms"] > flows["simple"]["p50_ms"] > 0
    models = {r["model"] for r in report["model_usage"]}
    assert {"offline/tier-1", "scripted/tier-4"} <= models  # the router's, the loop's top
    users = {r["user_id"]: r for r in report["user_usage"]}
    assert users[f"terminal:{USER}"]["requests"] >= 4
    assert users[f"terminal:{USER}"]["tokens_in"] > 0
    # The "[stuck]" run climbs to the top model (from the tier its past cases suggest) and
    # asks the person; the other runs finish where they start.
    assert report["escalation_rate"][0]["escalated_runs"] == 1
    assert report["escalation_rate"][0]["escalations"] >= 1
    assert report["escalation_rate"][0]["paused_runs"] == 1
    assert report["escalation_causes"][0]["cause"] == "stuck"
    sources = {r["source"] for r in report["router_decisions"]}
    assert {"model", "rule", "resume"} <= sources
    assert report["dead_letters"] == []
    # Every request has an outcome: the "[stuck]" run asked the person, the rest answered.
    total = report["outcomes"][-1]
    assert total["flow"] == "(all)" and total["requests"] >= 6
    assert total["paused"] == 1 and total["failed"] == total["aborted"] == 0
    assert total["answered"] + total["paused"] + total["unfinished"] == total["requests"]

    plain = _switchboard(system, "report", "--db", str(db))
    assert plain.returncode == 0 and "Latency per flow" in plain.stdout
    assert re.search(r"^\s+sequential\s+\d+", plain.stdout, re.MULTILINE), plain.stdout


def test_query_joins_a_request_across_actors(system: RunningSystem, db: Path) -> None:
    rows = _query(system, db, """
        SELECT c.session, count(DISTINCT e.actor) AS actors, count(*) AS events
        FROM events c JOIN events e USING (request_id)
        WHERE c.kind = 'classified' AND c.session = 'terminal-seq'
        GROUP BY c.session""")
    assert rows and rows[0]["actors"] >= 4  # classifier, planner, python_coder, evaluator...
    bad = _switchboard(system, "events", "query", "--db", str(db), "SELEC 1")
    assert bad.returncode == 1 and "DuckDB rejected the query" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_exports_add_only_new_events(system: RunningSystem, db: Path) -> None:
    before = _query(system, db, "SELECT max(seq) AS last, count(*) AS n FROM events")[0]
    # 👍 on the SEQUENTIAL answer and 👎 on the greeting, as the Discord reactions send them.
    roles = {r["session"]: r["role"] for r in _query(
        system, db, "SELECT session, role FROM events WHERE kind = 'classified'")}
    asyncio.run(_react(system, "terminal-seq", roles["terminal-seq"], +15))
    asyncio.run(_react(system, "terminal-hi", roles["terminal-hi"], -20))
    events = _settled(system, "the feedback handled and every run evaluated", lambda ev: (
        _handled(ev, "reflector", "control") >= 2
        and _handled(ev, "reflector", "evaluation") >= 2))
    added, _ = _export(system, db)
    assert added == len(events) - before["n"] > 0
    after = _query(system, db, "SELECT min(seq) AS first, max(seq) AS last, count(*) AS n, "
                               f"count(DISTINCT seq) AS seqs FROM events WHERE seq > "
                               f"{before['last']}")[0]
    assert after["first"] == before["last"] + 1 and after["n"] == after["seqs"] == added
    assert _export(system, db)[0] == 0  # nothing new
    feedback = {r["role"]: r for r in json.loads(_switchboard(
        system, "report", "--db", str(db), "--json").stdout)["feedback_by_role"]}
    assert feedback[roles["terminal-seq"]]["thumbs_up"] == 1
    assert feedback[roles["terminal-hi"]]["thumbs_down"] == 1


async def _react(system: RunningSystem, session: str, role: str, value: int) -> None:
    nc = await nats.connect(system.nats_url)
    try:
        await Bridge(nc, SUBJECTS, "analytics-test").control(Control(
            session=session, action=ControlAction.FEEDBACK, value=value,
            user_id=f"terminal:{USER}", message_id=f"{session}-answer", role=role))
    finally:
        await nc.close()
