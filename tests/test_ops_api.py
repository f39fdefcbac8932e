"""Operations end to end: ``switchboard up`` with the HTTP API on a real nats-server, every role
but the consolidator supervised (``replicas: 0``); the test runs the consolidator's replica
itself (``switchboard actor consolidator``) and stops it again.

``/readyz`` follows that replica; ``/metrics`` is read by Prometheus's own text parser
(prometheus-client) after a run and a dead letter the consolidator's runtime produced from
unreadable bytes; the dead-letter routes list, show and discard it; ``switchboard status``
reports the supervised processes and a restart after a replica is killed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import nats
import pytest
import pytest_asyncio
from api_client import TOKEN, Api
from prometheus_client.parser import text_string_to_metric_families
from system import REPO, RunningSystem, running_system
from waiting import eventually, until

from protocol import Subjects
from switchboard.embedded import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
SUBJECTS = Subjects()
API_LISTEN = f"127.0.0.1:{free_port()}"
OUTSIDE = "consolidator"
"""The role ``switchboard up`` runs no replica of."""


@pytest.fixture(scope="module")
def system(module_nats: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningSystem]:
    with running_system(module_nats, tmp_path_factory.mktemp("ops"),
                        extra_env={"SB_API_TOKEN": TOKEN, "SB_API_LISTEN": API_LISTEN},
                        actors={OUTSIDE: {"replicas": 0}}) as running:
        yield running


@pytest_asyncio.fixture
async def api(system: RunningSystem) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        client = Api(f"http://{API_LISTEN}", http)

        async def _answers() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                return (await client.call("GET", "/healthz"))[0] == 200
            return False

        await eventually(_answers, within_s=60, what="the API to answer /healthz")
        yield client


@contextlib.contextmanager
def _replica(system: RunningSystem) -> Iterator[subprocess.Popen[str]]:
    """``switchboard actor consolidator``: one replica, stopped with SIGTERM at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "switchboard.cli", "actor", OUTSIDE],
                            cwd=REPO, env=system.env, text=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed by prometheus-client: (name, labels) → value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def _metrics(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = await api.call("GET", "/metrics")
    assert status == 200, body
    return _samples(body.decode())


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for (n, got), v in samples.items()
               if n == name and set(labels.items()) <= set(got))


async def _ready(api: Api) -> tuple[int, Any]:
    return await api.call("GET", "/readyz", token="")


async def test_readyz_follows_the_replica_of_a_role(api: Api, system: RunningSystem) -> None:
    status, body = await _ready(api)
    assert status == 503, body
    assert body["status"] == "not_ready" and body["not_ready"] == [OUTSIDE]
    assert body["roles"]["classifier"]["ready"] is True
    status, health = await api.call("GET", "/healthz", token="")  # liveness: still 200
    assert status == 200, health
    with _replica(system) as proc:
        ready = await until(lambda: _ready(api), lambda r: r[0] == 200, within_s=60,
                            what="/readyz once the consolidator's replica pulls")
        assert ready[1]["status"] == "ready" and ready[1]["not_ready"] == []
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 40)
    gone = await until(lambda: _ready(api), lambda r: r[0] == 503, within_s=60,
                       what="/readyz after the replica stopped")
    assert gone[1]["not_ready"] == [OUTSIDE]


async def test_metrics_and_dead_letters(api: Api, system: RunningSystem) -> None:
    status, body = await api.call("GET", "/metrics", token="")
    assert status == 401 and body["error"]["code"] == "unauthorized"  # not public
    run = await api.submit("hello", session="ops-metrics")
    assert (await api.settled(run["run_id"]))["status"] == "done"
    with _replica(system):
        await until(lambda: _ready(api), lambda r: r[0] == 200, within_s=60,
                    what="the consolidator's replica")
        nc = await nats.connect(system.nats_url)
        try:
            await nc.jetstream().publish(SUBJECTS.task(OUTSIDE), b"{not json")
        finally:
            await nc.close()

        async def listed() -> list[dict[str, Any]]:
            code, page = await api.call("GET", f"/v1/dead-letters?role={OUTSIDE}")
            assert code == 200, page
            return list(page["letters"])

        [letter] = await until(listed, bool, within_s=30, what="the dead letter is listed")
        assert letter["error"] == "MalformedMessageError" and letter["role"] == OUTSIDE
        samples = await until(
            lambda: _metrics(api),
            lambda s: _value(s, "switchboard_dead_lettered_total", role=OUTSIDE) == 1,
            within_s=30, what="/metrics counts the dead letter's event")

    assert _value(samples, "switchboard_dead_letters_stored", role=OUTSIDE) == 1
    assert _value(samples, "switchboard_role_ready", role="classifier") == 1
    assert _value(samples, "switchboard_role_replicas_ready", role="classifier") >= 1
    assert _value(samples, "switchboard_consumer_up", role=OUTSIDE) == 1
    assert ("switchboard_consumer_pending_messages", (("role", "planner"),)) in samples
    assert ("switchboard_consumer_redelivered_messages", (("role", "planner"),)) in samples
    assert _value(samples, "switchboard_model_calls_total") >= 1
    assert _value(samples, "switchboard_model_tokens_total", kind="completion") > 0
    assert ("switchboard_model_cost_usd_total" in {name for name, _ in samples})
    assert _value(samples, "switchboard_requests_total") >= 1
    assert _value(samples, "switchboard_runs_total", outcome="answered") >= 1
    assert _value(samples, "switchboard_http_requests_total", method="POST",
                  route="/v1/runs", code="202") >= 1

    seq = letter["seq"]
    status, shown = await api.call("GET", f"/v1/dead-letters/{seq}")
    assert status == 200 and shown["text"] == "{not json"
    status, removed = await api.call("DELETE", f"/v1/dead-letters/{seq}")
    assert status == 200 and removed["seq"] == seq
    for method, path in (("GET", f"/v1/dead-letters/{seq}"), ("DELETE", f"/v1/dead-letters/{seq}"),
                         ("POST", f"/v1/dead-letters/{seq}/replay"),
                         ("GET", "/v1/dead-letters/nine")):
        status, body = await api.call(method, path)
        assert status == 404 and body["error"]["code"] == "not_found", (method, path, body)
    for query in ("limit=0", "after=-1", "role=wizard"):
        status, body = await api.call("GET", f"/v1/dead-letters?{query}")
        assert status == 400 and body["error"]["code"] == "bad_request", (query, body)
    status, body = await api.call("GET", "/v1/dead-letters/1", token="")
    assert status == 401


async def test_openapi_describes_the_operations_routes(api: Api) -> None:
    status, document = await api.call("GET", "/openapi.json")
    assert status == 200
    paths = document["paths"]
    assert paths["/readyz"]["get"]["security"] == []
    assert "security" not in paths["/metrics"]["get"]  # the document's bearer token
    assert set(paths["/v1/dead-letters/{seq}"]) == {"get", "delete"}
    assert "post" in paths["/v1/dead-letters/{seq}/replay"]
    assert {"Readiness", "DeadLetterView"} <= set(document["components"]["schemas"])


def _status(system: RunningSystem) -> tuple[int, dict[str, Any]]:
    result = subprocess.run([sys.executable, "-m", "switchboard.cli", "status", "--json"],
                            cwd=REPO, env=system.env, text=True, capture_output=True,
                            timeout=60, check=False)
    return result.returncode, json.loads(result.stdout)


async def test_status_shows_processes_and_restarts(api: Api, system: RunningSystem) -> None:
    code, report = await asyncio.to_thread(_status, system)
    assert code == 1, report  # the consolidator has no replica
    coder = report["roles"]["python_coder"]
    [process] = coder["processes"]
    assert process["name"] == "python_coder/0" and process["alive"] is True
    restarts = process["restarts"]
    assert report["roles"][OUTSIDE]["processes"] == []
    assert "api" in {p["name"] for p in report["processes"]}

    os.kill(process["pid"], signal.SIGKILL)

    def restarted(result: tuple[int, dict[str, Any]]) -> bool:
        [now] = result[1]["roles"]["python_coder"]["processes"]
        return bool(now["restarts"] == restarts + 1 and now["alive"]
                    and now["pid"] != process["pid"])

    code, report = await until(lambda: asyncio.to_thread(_status, system), restarted,
                               within_s=60, what="status shows the restarted replica")
    [now] = report["roles"]["python_coder"]["processes"]
    assert now["last_exit_code"] == -signal.SIGKILL
