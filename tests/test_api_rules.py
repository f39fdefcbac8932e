"""The HTTP API's pure rules, without a server: how a run's record moves as the actors' answers
arrive (in any order), the session queue, request bodies, file paths, SSE frames, the OpenAPI
document and the command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import msgspec
import pytest
from system import REPO

from api import _records as rec
from api._files import clean_path
from api._openapi import openapi_document
from api._records import RunRecord, SessionQueue
from api._schema import RunRequest, RunStatus, request_decoder
from api._server import api_keys, parse_listen
from api._sse_frames import (
    END_ID,
    EVENTS,
    ID_PATTERN,
    OUTBOX,
    Cursor,
    Frame,
    RunWork,
    event_frame,
    frame,
    outbound_frame,
    retry_field,
)
from api.errors import ApiConfigError, BadHeaderError, BadPathError
from protocol import (
    ConsolidatedOptions,
    ErrorCode,
    ExecutionEvent,
    FileBlob,
    Flow,
    Progress,
    Reply,
    encoder,
)

RUN = "0123456789abcdef0123456789abcdef"


def _record(**changes: object) -> RunRecord:
    record = RunRecord(run_id=RUN, session="api-s", user="ann", message="hi",
                       traceparent=rec.new_traceparent(), created_at=1.0)
    return msgspec.structs.replace(record, **changes)


def _progress(stage: str, **fields: Any) -> Progress:
    return Progress(session="api-s", origin="api", in_reply_to=RUN, stage=stage, **fields)


def _reply(text: str = "answer", **fields: Any) -> Reply:
    return Reply(session="api-s", origin="api", in_reply_to=RUN, text=text, **fields)


def test_progress_makes_a_run_running_with_what_it_reports() -> None:
    record = rec.progressed(_record(), _progress(
        "classified", flow=Flow.SEQUENTIAL, text="sequential · python_coder · simple"), 2.0)
    assert (record.status, record.flow, record.role) == (
        RunStatus.RUNNING, "sequential", "python_coder")
    record = rec.progressed(record, _progress(
        "turn", flow=Flow.SEQUENTIAL, turn=2, max_turns=10, confidence=70, model="m"), 3.0)
    assert (record.turn, record.max_turns, record.confidence, record.model) == (2, 10, 70, "m")
    assert record.loop_started
    late = rec.progressed(record, _progress("turn", flow=Flow.SEQUENTIAL, turn=1), 4.0)
    assert late.turn == 2  # an older progress handled late never moves the turn back


def test_a_run_the_actors_queued_stays_queued() -> None:
    record = rec.progressed(_record(), _progress("queued", flow=Flow.SEQUENTIAL), 2.0)
    assert record.status is RunStatus.QUEUED and not record.loop_started


@pytest.mark.parametrize(("error", "paused", "status"), [
    (None, False, RunStatus.DONE), (None, True, RunStatus.PAUSED),
    (ErrorCode.ABORTED, False, RunStatus.ABORTED), (ErrorCode.MODEL_ERROR, False,
                                                    RunStatus.FAILED),
    (ErrorCode.REFUSED, False, RunStatus.FAILED)])
def test_a_reply_settles_the_run(error: ErrorCode | None, paused: bool,
                                 status: RunStatus) -> None:
    reply = _reply("⏹️ Stopped at turn 3 as asked.\nmore", error=error, role="python_coder",
                   files=(FileBlob(name="a/b.txt", data=b"x"),))
    record = rec.answered(_record(), reply, paused=paused, now=2.0)
    assert record.status is status and record.settled
    assert record.files == ("a/b.txt",) and record.role == "python_coder"
    if error is None:
        assert record.error is None
    else:
        assert record.error is not None and record.error.code == error.value
        assert record.error.message == "⏹️ Stopped at turn 3 as asked."
    # Whatever arrives after the answer (a late progress, a redelivered reply) changes nothing.
    assert rec.progressed(record, _progress("turn", turn=9), 3.0) == record
    assert rec.answered(record, _reply("other"), paused=False, now=3.0) == record


def test_the_branch_flow_answer_is_done() -> None:
    options = ConsolidatedOptions(session="api-s", origin="api", in_reply_to=RUN,
                                  question="q", options=())
    record = rec.options_answered(_record(), options, "**Option 1**", 2.0)
    assert (record.status, record.flow, record.answer) == (RunStatus.DONE, "branch",
                                                          "**Option 1**")


def test_stop_aborts_a_waiting_run_at_once_and_a_sent_one_when_its_loop_runs() -> None:
    aborted = rec.stopped_before_sent(_record(), 2.0)
    assert aborted.status is RunStatus.ABORTED
    assert rec.sent(aborted, 3.0) == aborted  # stopped first: it never goes out
    sent = rec.sent(_record(), 2.0)
    assert rec.stopped_before_sent(sent, 3.0) == sent  # went out meanwhile: not aborted here
    stopping = rec.stopping(sent, 3.0)
    assert stopping.stop_requested and not rec.abort_due(stopping)  # the loop has not started
    running = rec.progressed(stopping, _progress("turn", turn=1), 4.0)
    assert rec.abort_due(running)
    assert not rec.abort_due(rec.abort_noted(running))


def test_a_session_runs_one_at_a_time_in_order() -> None:
    queue = rec.admit(SessionQueue(), "a", 1.0, stale_s=900)
    assert queue.active == "a"
    queue = rec.admit(rec.admit(queue, "b", 2.0, stale_s=900), "c", 3.0, stale_s=900)
    assert (queue.active, queue.waiting) == ("a", ["b", "c"])
    assert rec.admit(queue, "b", 4.0, stale_s=900) == queue  # a repeat changes nothing
    queue = rec.release(queue, "c", 5.0)  # stopped while waiting
    assert (queue.active, queue.waiting) == ("a", ["b"])
    queue = rec.release(queue, "a", 6.0)
    assert (queue.active, queue.since, queue.waiting) == ("b", 6.0, [])
    assert rec.release(queue, "a", 7.0) == queue  # a redelivered answer of "a"
    assert rec.release(queue, "b", 8.0) == SessionQueue()


def test_a_run_unanswered_too_long_stops_holding_its_session() -> None:
    queue = rec.admit(SessionQueue(), "a", 0.0, stale_s=900)
    assert rec.admit(queue, "b", 100.0, stale_s=900).active == "a"
    assert rec.admit(queue, "b", 1000.0, stale_s=900).active == "b"


def test_the_chat_message_of_a_run() -> None:
    chat = _record().chat_message()
    assert (chat.message_id, chat.origin, chat.user_id, chat.bot, chat.addressed) == (
        RUN, "api", "api:ann", "api", True)


@pytest.mark.parametrize(("bad", "good"), [  # each pair differs in one field only
    (b'{"message": "hi", "extra": 1}', b'{"message": "hi"}'),
    (b'{"message": 5}', b'{"message": "5"}'),
    (b'{"session": "s"}', b'{"session": "s", "message": "hi"}'),
    (b'{"message": "hi", "session": "two words"}', b'{"message": "hi", "session": "two-words"}'),
    (b'{"message": "hi", "user": "a.b"}', b'{"message": "hi", "user": "a-b"}'),
    (b'{"message": ""}', b'{"message": "x"}'),
])
def test_request_bodies_are_checked_field_by_field(bad: bytes, good: bytes) -> None:
    # The class, not msgspec's wording: the API answers it with 400 bad_request.
    with pytest.raises(msgspec.ValidationError):
        request_decoder.decode(bad)
    assert isinstance(request_decoder.decode(good), RunRequest)


def test_malformed_json_is_not_a_validation_error() -> None:
    with pytest.raises(msgspec.DecodeError) as caught:
        request_decoder.decode(b'{"message": ')
    assert not isinstance(caught.value, msgspec.ValidationError)


@pytest.mark.parametrize("path", ["../etc/passwd", "a/../../b", "/etc/passwd", "a//b", "./a",
                                  "a\\b", "a/\x00b", "", "x" * 1001])
def test_file_paths_that_leave_the_workspace_are_refused(path: str) -> None:
    with pytest.raises(BadPathError):
        clean_path(path)


def test_clean_file_paths_pass() -> None:
    assert clean_path("src/app.py") == "src/app.py"
    assert clean_path(".git/HEAD") == ".git/HEAD"


def test_sse_frames() -> None:
    assert frame("turn", b'{"a":1}', "7.3.running") == (
        b'id: 7.3.running\nevent: turn\ndata: {"a":1}\n\n')
    assert retry_field(2500) == b"retry: 2500\n\n"
    reply = _reply("done", files=(FileBlob(name="big.bin", data=b"\0" * 1000),))
    made = outbound_frame(encoder.encode(reply), RUN, seq=12)
    assert made is not None and (made.name, made.source, made.seq) == ("reply", OUTBOX, 12)
    assert json.loads(made.data)["files"] == ["big.bin"]  # names, not the bytes
    assert outbound_frame(encoder.encode(reply), "f" * 32) is None  # another run's
    progress = outbound_frame(encoder.encode(_progress("turn", turn=1)), RUN)
    assert progress is not None and progress.name == "progress"
    record = _record()
    event = ExecutionEvent(event_id="e", session="api-s", actor="python_coder", kind="turn",
                           trace_id=record.trace_id)
    made = event_frame(encoder.encode(event), record.trace_id, seq=40)
    assert made is not None and (made.name, made.source, made.seq) == ("turn", EVENTS, 40)
    assert event_frame(encoder.encode(event), "0" * 32) is None  # another run's trace


def test_a_stream_position_moves_per_source_and_round_trips_as_an_id() -> None:
    start = Cursor()
    assert str(start) == "0.0.-" and Cursor.parse(str(start)) == start
    moved = start.after(Frame("turn", b"{}", EVENTS, 41)).after(Frame("reply", b"{}", OUTBOX, 9))
    assert (moved.events, moved.outbox) == (41, 9)
    assert moved.sent(Frame("turn", b"{}", EVENTS, 41))
    assert not moved.sent(Frame("turn", b"{}", EVENTS, 42))
    assert moved.sent(Frame("progress", b"{}", OUTBOX, 3))
    running = Cursor(41, 9, RunStatus.RUNNING)
    assert Cursor.parse("41.9.running") == running and str(running) == "41.9.running"
    assert re.fullmatch(ID_PATTERN, "41.9.running") and re.fullmatch(ID_PATTERN, END_ID)


@pytest.mark.parametrize("bad", ["end", "1.2", "1.2.zzz", "a.b.running", "-1.2.done",
                                 "1.2.done.end", "1" * 21 + ".1.done", "１.2.done"])
def test_ids_this_api_never_sends_are_refused(bad: str) -> None:
    with pytest.raises(BadHeaderError):
        Cursor.parse(bad)


def _handled(sent: int) -> ExecutionEvent:
    return ExecutionEvent(event_id="h", session="s", actor="a", kind="handled", sent=sent)


def test_a_runs_work_is_over_when_every_message_sent_was_handled() -> None:
    work = RunWork()
    assert work.done(sent=False)  # stopped before it went out: no work at all
    work.saw(_handled(sent=1))  # the classifier sent the task on
    work.saw(_handled(sent=1))  # the agent answered and sent its result to the evaluator
    work.saw_frame(Frame("reply", b"{}", OUTBOX, 1))
    assert not work.done(sent=True)
    work.saw(_handled(sent=1))  # the evaluator sent the evaluation to the reflector
    work.saw(ExecutionEvent(event_id="r", session="s", actor="reflector", kind="reflection"))
    assert not work.done(sent=True)
    work.saw(_handled(sent=0))  # the reflector: nothing more
    assert work.done(sent=True)


def test_no_work_is_over_before_the_answer_arrived() -> None:
    work = RunWork()
    work.saw(_handled(sent=0))
    assert not work.done(sent=True)
    work.saw_frame(Frame("options", b"{}", OUTBOX, 2))
    assert work.done(sent=True)


def test_the_trace_id_is_the_traceparent_s() -> None:
    traceparent = rec.new_traceparent()
    assert len(traceparent) == 55 and traceparent.startswith("00-")
    assert _record(traceparent=traceparent).trace_id == traceparent[3:35]


def test_listen_and_token_settings() -> None:
    from core.config import Settings

    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen(":9000") == ("0.0.0.0", 9000)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    for bad in ("8080", "host:", "host:70000", "host:http"):
        with pytest.raises(ApiConfigError):
            parse_listen(bad)
    with pytest.raises(ApiConfigError):
        api_keys(Settings(api_token=None))
    with pytest.raises(ApiConfigError):
        api_keys(Settings(api_token="  "))
    keys = api_keys(Settings(api_token=" t0ken "))
    key = keys.authenticate("t0ken")
    assert key is not None and key.name == "default" and key.owner is None
    assert keys.authenticate("t0ken2") is None and keys.authenticate("") is None
    assert "t0ken" not in repr(Settings(api_token="t0ken"))


def test_the_openapi_document_is_valid_and_describes_every_route() -> None:
    document = json.loads(openapi_document(65536))
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {
        "/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/events",
        "/v1/runs/{run_id}/stop", "/v1/runs/{run_id}/files/{path}", "/healthz",
        "/openapi.json", "/v1/runs/{run_id}/approvals/{approval_id}", "/readyz", "/metrics",
        "/v1/dead-letters", "/v1/dead-letters/{seq}", "/v1/dead-letters/{seq}/replay",
        "/v1/runs/{run_id}/wait", "/v1/sessions/{session}", "/v1/sessions/{session}/runs",
        "/v1/runs/{run_id}/terminate", "/v1/runs/{run_id}/retry",
        "/v1/roles", "/v1/analytics/report"}
    assert set(document["paths"]["/v1/runs"]) == {"get", "post"}
    assert document["paths"]["/v1/runs"]["post"]["parameters"][0]["name"] == "Idempotency-Key"
    assert {"RunPage", "RunSummary", "SessionView"} <= set(document["components"]["schemas"])
    schemas = document["components"]["schemas"]
    assert schemas["RunRequest"]["additionalProperties"] is False
    assert set(schemas["RunStatus"]["enum"]) == {s.value for s in RunStatus}
    assert document["paths"]["/healthz"]["get"]["security"] == []
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)


def test_api_command_help_and_refusal_without_a_token() -> None:
    env = {"PATH": "/usr/bin:/bin", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    run = subprocess.run([sys.executable, "-m", "switchboard.cli", "api", "--help"], cwd=REPO,
                         text=True, capture_output=True, timeout=60, env=env, check=False)
    assert run.returncode == 0 and "--listen HOST:PORT" in run.stdout
    assert "POST /v1/runs" in run.stdout and "SB_API_TOKEN" in run.stdout
    run = subprocess.run([sys.executable, "-m", "switchboard.cli", "api"], cwd=REPO, text=True,
                         capture_output=True, timeout=60, env=env, check=False)
    assert run.returncode == 2 and "SB_API_KEYS_FILE" in run.stdout


def test_a_message_needs_a_character_that_is_not_whitespace_in_both_regex_dialects() -> None:
    """The pattern of ``message`` names the characters ``str.isspace`` counts, so that the
    API (Python's ``re``) and a client of the OpenAPI document (ECMAScript, where ``\\S``
    takes ``\\x1f`` as visible) refuse the same messages."""
    import re

    import msgspec

    from api._schema import VISIBLE, request_decoder

    assert all(c.isspace() != bool(re.search(VISIBLE, c))
               for c in map(chr, range(0x110000)))
    for blank in ("\x1f", " \t\x1c", "\u3000\n"):
        with pytest.raises(msgspec.ValidationError):
            request_decoder.decode(json.dumps({"message": blank}).encode())
    assert request_decoder.decode(b'{"message": "\\u001f hi"}').message == "\x1f hi"
    assert request_decoder.decode(b'{"message": "\\ufeff"}').message == "\ufeff"
