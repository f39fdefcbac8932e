"""The HTTP API end to end: ``switchboard up`` with
``SB_API_TOKEN`` set runs the API as one more supervised process beside every actor, on a real
nats-server; a scripted model answers through the genuine litellm path. Every route and error
(401, 404, 400, 409, 413), a run submitted and stopped through the API, SSE that a late client
still reads to the end, the session queue, and status after the API process is killed.

A second API replica runs in the test's own event loop (``replica``): it shares the outbox
consumer and the buckets, so it answers for runs the supervised one took, and sends its SSE
keep-alives every 0.1 s."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import nats
import pytest
import yarl
from api_client import TOKEN, WITHIN_S, Api, send_blocking
from api_system import (  # noqa: F401 (the fixtures api, replica, system)
    api_env_fixture,
    api_fixture,
    api_listen_fixture,
    replica_fixture,
    system_fixture,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic.types import SecretStr
from system import RunningSystem
from waiting import eventually, until

from core.config import Settings, load_topology
from protocol import Subjects

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
SUBJECTS = Subjects()


async def _classifier_last_seq(system: RunningSystem) -> int:
    nc = await nats.connect(system.nats_url)
    try:
        info = await nc.jetstream().stream_info(SUBJECTS.task_stream("classifier"))
        return int(info.state.last_seq)
    finally:
        await nc.close()


# ---------------------------------------------------------------------------------- errors


async def test_every_route_but_healthz_needs_the_token(api: Api) -> None:
    run = "0123456789abcdef0123456789abcdef"
    routes = [("POST", "/v1/runs"), ("GET", f"/v1/runs/{run}"),
              ("GET", f"/v1/runs/{run}/events"), ("POST", f"/v1/runs/{run}/stop"),
              ("GET", f"/v1/runs/{run}/files/a.txt"), ("GET", "/openapi.json"),
              ("GET", "/no/such/route")]
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}):
            status, body = await api.call(method, path, token="", headers=headers,
                                          body=b'{"message": "hi"}')
            assert status == 401, (method, path, headers, body)
            assert body["error"]["code"] == "unauthorized"
    status, health = await api.call("GET", "/healthz", token="")
    assert status == 200 and health["status"] == "ok"
    assert {"classifier", "planner", "python_coder", "evaluator"} <= set(health["roles"])
    assert set(health["roles"]["classifier"]) >= {"num_pending", "num_ack_pending",
                                                  "num_waiting"}
    assert health["outbox"]["error"] is None  # the API's own consumer exists


async def test_bad_bodies_get_400_or_413_and_nothing_is_published(
        api: Api, system: RunningSystem) -> None:
    before = await _classifier_last_seq(system)
    cases = [
        (b'{"message": ', 400, "malformed_json"),
        (b"", 400, "malformed_json"),
        (b"[1, 2]", 400, "bad_request"),
        (b'{"message": "hi", "priority": 1}', 400, "bad_request"),
        (b'{"message": 42}', 400, "bad_request"),
        (b'{"message": "   "}', 400, "bad_request"),
        (b'{"message": "hi", "session": "no spaces allowed"}', 400, "bad_request"),
        (json.dumps({"message": "x" * 70_000}).encode(), 413, "payload_too_large"),
    ]
    for body, status, code in cases:
        got, answer = await api.call("POST", "/v1/runs", body=body)
        assert (got, answer["error"]["code"]) == (status, code), (body[:40], answer)
        assert answer["error"]["message"]

    async def _chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit still holds
        yield b'{"message": "'
        for _ in range(80):
            yield b"x" * 1000
        yield b'"}'

    async with api.http.post(f"{api.base}/v1/runs", data=_chunks(),
                             headers={"Authorization": f"Bearer {TOKEN}",
                                      "Content-Type": "application/json"}) as response:
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "payload_too_large"
    assert await _classifier_last_seq(system) == before


async def test_openapi_json_describes_the_routes(api: Api) -> None:
    status, document = await api.call("GET", "/openapi.json")
    assert status == 200 and document["openapi"] == "3.1.0"
    assert "/v1/runs/{run_id}/events" in document["paths"]
    assert "RunView" in document["components"]["schemas"]


# ------------------------------------------------------------------------------------ runs


async def test_a_run_is_answered_and_read_back_and_unknown_runs_are_404(api: Api) -> None:
    status, accepted = await api.call("POST", "/v1/runs",
                                      body=b'{"message": "hello there", "user": "ann"}')
    assert status == 202 and accepted["status"] == "queued"
    assert set(accepted) == {"run_id", "session", "status"}
    assert accepted["session"] == f"api-{accepted['run_id']}"
    run = await api.settled(accepted["run_id"])
    assert run["status"] == "done" and run["flow"] == "simple" and run["answer"]
    assert run["error"] is None and run["files"] == [] and run["model"]
    assert set(run) >= {"run_id", "session", "status", "flow", "role", "turn", "max_turns",
                        "model", "confidence", "answer", "files", "error"}
    for path in ("/v1/runs/ffffffffffffffffffffffffffffffff", "/v1/runs/not-a-run-id",
                 "/v1/runs/ffffffffffffffffffffffffffffffff/events",
                 "/v1/runs/ffffffffffffffffffffffffffffffff/files/a.txt"):
        status, body = await api.call("GET", path)
        assert (status, body["error"]["code"]) == (404, "not_found"), path
    status, body = await api.call("POST", "/v1/runs/ffffffffffffffffffffffffffffffff/stop")
    assert status == 404
    status, body = await api.call("POST", f"/v1/runs/{accepted['run_id']}/stop")
    assert (status, body["error"]["code"]) == (409, "conflict")


async def test_files_of_a_run_and_paths_that_leave_the_workspace(api: Api) -> None:
    accepted = await api.submit("[badpath] write a python file", session="api-files")
    run = await api.settled(accepted["run_id"])
    assert run["status"] == "done" and run["role"] == "python_coder", run
    assert run["files"] == ["ok.txt"]
    base = f"/v1/runs/{run['run_id']}/files"
    assert await api.call("GET", f"{base}/ok.txt") == (200, b"fine\n")
    status, body = await api.call("GET", f"{base}/missing.txt")
    assert (status, body["error"]["code"]) == (404, "not_found")
    escaped = yarl.URL(f"{api.base}{base}/..%2F..%2Fetc%2Fpasswd", encoded=True)
    status, body = await api.call("GET", "", url=escaped)
    assert (status, body["error"]["code"]) == (400, "bad_path")
    raw = yarl.URL(f"{api.base}{base}/../../../../etc/passwd", encoded=True)
    status, body = await api.call("GET", "", url=raw)
    assert status in {400, 404} and b"root:" not in json.dumps(body).encode()


async def test_a_run_submitted_and_stopped_through_the_api(api: Api) -> None:
    accepted = await api.submit("[long 40] write a python module in many steps")
    run_id = accepted["run_id"]
    await until(lambda: api.run(run_id), lambda r: r["turn"] >= 2, within_s=WITHIN_S,
                what="two turns")
    status, stopping = await api.call("POST", f"/v1/runs/{run_id}/stop")
    assert status == 202 and stopping["stop_requested"] is True
    run = await api.settled(run_id)
    assert run["status"] == "aborted", run
    assert run["error"]["code"] == "aborted" and "Stopped at turn" in run["answer"]
    assert 2 <= run["turn"] < 40 and run["stop_requested"]
    status, body = await api.call("POST", f"/v1/runs/{run_id}/stop")
    assert status == 409


async def test_runs_of_one_session_go_one_at_a_time_and_a_waiting_one_stops_at_once(
        api: Api) -> None:
    session = "api-queue"
    first = await api.submit("[long 5] write a python package in five steps",
                             session=session)
    second = await api.submit("hello again", session=session)
    third = await api.submit("and once more", session=session)
    assert (await api.run(second["run_id"]))["status"] == "queued"
    status, stopped = await api.call("POST", f"/v1/runs/{third['run_id']}/stop")
    assert (status, stopped["status"]) == (202, "aborted")  # never sent: aborted at once
    assert (await api.run(first["run_id"]))["status"] in {"queued", "running"}
    done_first = await api.settled(first["run_id"])
    done_second = await api.settled(second["run_id"])
    assert (done_first["status"], done_second["status"]) == ("done", "done")
    assert done_second["updated_at"] >= done_first["updated_at"]
    third_run = await api.run(third["run_id"])
    assert third_run["status"] == "aborted" and third_run["model"] is None  # never ran


async def test_a_paused_run_is_answered_by_the_next_run_of_its_session(api: Api) -> None:
    session = "api-stuck"
    asked = await api.submit("[stuck] write a python function to frobnicate", session=session)
    run = await api.settled(asked["run_id"], within_s=120)
    assert run["status"] == "paused" and "Which frobnicator" in run["answer"], run
    status, _ = await api.call("POST", f"/v1/runs/{asked['run_id']}/stop")
    assert status == 409
    answer = await api.submit("here is a hint: the blue one", session=session)
    resumed = await api.settled(answer["run_id"], within_s=120)
    assert resumed["status"] == "done" and "Done with the hint" in resumed["answer"]
    assert (await api.run(asked["run_id"]))["status"] == "done"


# ------------------------------------------------------------------------------------- SSE


async def test_events_reach_a_live_and_a_late_client_to_the_end(api: Api, replica: Api
                                                                ) -> None:
    accepted = await api.submit("[long 3] write a python module in three steps",
                                session="api-sse")
    live = await replica.events(accepted["run_id"])  # the other replica, from the start
    late = await api.events(accepted["run_id"])  # after the run ended
    for stream in (live, late):
        assert stream.names()[-1] == "end" and stream.of("end")[0]["status"] == "done"
        final = stream.of("run")[-1]
        assert final["status"] == "done" and final["turn"] == 4  # 3 steps, then the answer
        assert [p["turn"] for p in stream.of("progress") if p["stage"] == "turn"] == [1, 2, 3, 4]
        assert len(stream.of("turn")) == 4  # the loop's execution events
        assert {"classified", "planned", "model_call", "tool_call"} <= set(stream.names())
        [reply] = stream.of("reply")
        assert "All 3 steps written" in reply["text"]
        assert all(e["session"] == "api-sse" for name, e in stream.frames
                   if name not in {"end", "run", "reply", "progress", "options"})
    assert live.comments > 0  # keep-alives (every 0.1 s on the replica) while it ran
    assert set(live.names()) <= set(late.names())
    assert live.of("run")[0]["status"] in {"queued", "running"}


async def test_any_replica_answers_for_any_run(api: Api, replica: Api) -> None:
    accepted = await replica.submit("hello from the replica")
    assert (await api.settled(accepted["run_id"]))["status"] == "done"
    assert (await replica.run(accepted["run_id"]))["status"] == "done"


# -------------------------------------------------------------------------------- restart


async def test_status_survives_an_api_restart(api: Api, system: RunningSystem) -> None:
    """The API process is stopped while a run goes on, its answer lands while no API runs,
    and the restarted process records it from the durable outbox consumer."""
    finished = await api.submit("hello before the restart")
    await api.settled(finished["run_id"])
    accepted = await api.submit("[long 6] write a python package in six steps")
    run_id = accepted["run_id"]
    await until(lambda: api.run(run_id), lambda r: r["status"] == "running",
                within_s=WITHIN_S, what="the run to start")
    pid = system.pids()["api"]
    os.kill(pid, signal.SIGSTOP)  # frozen: it takes no more outbox messages
    try:
        await _wait_for_reply(system, run_id)
    finally:
        os.kill(pid, signal.SIGKILL)
    await eventually(lambda: system.pids().get("api", pid) != pid, within_s=60,
                     what="the supervisor to restart the API")

    async def _answers() -> bool:
        with contextlib.suppress(aiohttp.ClientError):
            return (await api.call("GET", "/healthz"))[0] == 200
        return False

    await eventually(_answers, within_s=60, what="the restarted API")
    run = await api.settled(run_id)
    assert run["status"] == "done" and "All 6 steps written" in run["answer"]
    assert (await api.run(finished["run_id"]))["status"] == "done"


async def _wait_for_reply(system: RunningSystem, run_id: str) -> None:
    """Until the run's Reply is stored in the outbox stream."""
    from protocol import Reply, outbound_decoder

    nc = await nats.connect(system.nats_url)
    got = asyncio.Event()

    async def _seen(msg: Any) -> None:
        message = outbound_decoder.decode(msg.data)
        if isinstance(message, Reply) and message.in_reply_to == run_id:
            got.set()

    try:
        sub = await nc.jetstream().subscribe(SUBJECTS.outbox("api"), cb=_seen,
                                             ordered_consumer=True)
        await asyncio.wait_for(got.wait(), WITHIN_S)
        await sub.unsubscribe()
    finally:
        await nc.close()


# ---------------------------------------------------------------------- without the actors


async def test_the_api_needs_switchboard_and_healthz_says_when_nats_is_gone(
        nats_server: Any, nats_url: str) -> None:
    """Against a bare server the API refuses to start; with the streams but no actor the
    roles' consumers are missing (``degraded``); with the server gone, ``/healthz`` is 503."""
    from api import ApiOptions, run_api
    from api.errors import UnavailableError
    from runtime.bus import connect, provision

    if nats_server is None:
        pytest.skip("needs a server this test can stop")
    settings = Settings(api_token=SecretStr(TOKEN), nats_url=nats_url)
    topology = load_topology(settings=settings)
    with pytest.raises(UnavailableError, match="not running"):
        await run_api(settings, topology, nats_url=nats_url, listen="127.0.0.1:0")
    nc = await connect(nats_url, name="test/provision", reconnect=False)
    await provision(nc.jetstream(), topology, topology.roles)
    await nc.close()
    stop = asyncio.Event()
    ready: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_api(settings, topology, nats_url=nats_url,
                                       listen="127.0.0.1:0", stop=stop, options=ApiOptions(),
                                       on_ready=ready))
    try:
        host, port = await asyncio.wait_for(asyncio.shield(ready), 30)
        async with aiohttp.ClientSession() as http:
            api = Api(f"http://{host}:{port}", http)
            status, health = await api.call("GET", "/healthz", token="")
            assert (status, health["status"]) == (200, "degraded")
            assert health["roles"]["classifier"]["error"]  # no actor made its consumer
            assert health["outbox"]["error"] is None
            nats_server.stop()
            status, body = await until(lambda: api.call("GET", "/healthz", token=""),
                                       lambda answer: answer[0] == 503, within_s=30,
                                       what="/healthz to notice NATS is gone")
            assert body["error"]["code"] == "unavailable"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


# ----------------------------------------------------------------- bad input on purpose


_RUN_BODY = b'{"message": "hello", "session": "fuzz-1", "user": "ann"}'


@st.composite
def _request(draw: st.DrawFn) -> tuple[str, str, bytes, str]:
    """(method, path, body, token): random or mutated requests to every route."""
    run_id = draw(st.one_of(st.just("missing-run"), st.text(_PATH_CHARS, max_size=40)))
    path = draw(st.sampled_from([
        "/v1/runs", f"/v1/runs/{run_id}", f"/v1/runs/{run_id}/events",
        f"/v1/runs/{run_id}/stop", f"/v1/runs/{run_id}/files/{run_id}", "/openapi.json"]))
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
    if draw(st.booleans()):
        body = draw(st.binary(max_size=300))
    else:
        data = bytearray(_RUN_BODY)
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data) - 1))
            data[at:at + draw(st.integers(0, 4))] = draw(st.binary(max_size=4))
        body = bytes(data)
    token = draw(st.sampled_from([TOKEN, TOKEN, "", "wrong", TOKEN + "x"]))
    return method, path, body, token


_PATH_CHARS = st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="/?#%")


async def test_any_request_gets_an_answer_or_a_4xx_never_a_5xx(api: Api) -> None:
    """Random and mutated bodies, paths, methods and tokens (hypothesis)."""
    seen: list[int] = []

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(request=_request())
    def send_any(request: tuple[str, str, bytes, str]) -> None:
        method, path, body, token = request
        status = send_blocking(api.base, method, path, body, token)
        seen.append(status)
        assert status < 500, (status, request)
        if token != TOKEN and path != "/openapi.json":
            assert status in {401, 404, 405}, (status, request)

    # Hypothesis drives plain HTTP from a worker thread while this loop runs the test.
    await asyncio.wait_for(asyncio.to_thread(send_any), timeout=180)
    assert {401, 404} <= set(seen), sorted(set(seen))
    assert (await api.call("GET", "/healthz"))[0] == 200  # still serving
