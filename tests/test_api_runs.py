"""Runs and sessions through the HTTP API, end to end against ``switchboard up`` on a real
nats-server: runs listed newest first with filters and a cursor, a session's state and
history, tags and metadata, ``Idempotency-Key`` resubmits, the busy-session policies
(``enqueue``, ``reject``, ``interrupt``), waiting for a run, and webhooks on run end —
received by an aiohttp server in the test, their signatures checked with Standard Webhooks'
own library, delivered once with two API replicas, a failing receiver retried then given up,
each attempt an execution event."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import nats
import pytest
import pytest_asyncio
from aiohttp import web
from api_client import WITHIN_S, Api
from api_system import (  # noqa: F401 (the fixtures api, replica, system)
    api_env_fixture,
    api_fixture,
    api_listen_fixture,
    replica_fixture,
    system_fixture,
)
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from system import RunningSystem
from waiting import until

from protocol import Subjects, event_decoder

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
SUBJECTS = Subjects()
SECRET = "whsec_" + base64.b64encode(b"switchboard-webhook-test-key-32b").decode()
ATTEMPTS = 3


@pytest.fixture(scope="module", name="api_env")
def api_env_fixture_here() -> dict[str, str]:
    """Webhooks on, signed with ``SECRET``; the test's receiver on loopback allowed; three
    attempts, 0.2 s apart at first."""
    return {"SB_API_WEBHOOK_SECRET": SECRET, "SB_API_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
            "SB_API_WEBHOOK_ATTEMPTS": str(ATTEMPTS), "SB_API_WEBHOOK_BACKOFF_S": "0.2"}


async def _post(api: Api, headers: dict[str, str] | None = None, **body: Any
                ) -> tuple[int, Any]:
    return await api.call("POST", "/v1/runs", body=json.dumps(body).encode(),
                          headers=headers)


# ------------------------------------------------------------------------------ listing


async def test_runs_are_listed_newest_first_filtered_and_paged(api: Api) -> None:
    ids = []
    for n in range(3):
        status, run = await _post(api, message=f"hello number {n}", session="list-a",
                                  user="lister", tags=["batch-a", f"n{n}"],
                                  metadata={"n": str(n), "note": "x"})
        assert status == 202, run
        ids.append(run["run_id"])
    status, other = await _post(api, message="hello from b", session="list-b", user="lister",
                                tags=["batch-b"])
    assert status == 202
    for run_id in [*ids, other["run_id"]]:
        assert (await api.settled(run_id))["status"] == "done"
    view = await api.run(ids[1])
    assert view["tags"] == ["batch-a", "n1"] and view["metadata"] == {"n": "1", "note": "x"}
    assert view["user"] == "lister" and view["webhook"] is None

    seen, cursor = [], None
    for _ in range(3):
        query = "/v1/runs?tag=batch-a&limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page = await api.call("GET", query)
        assert status == 200, page
        seen += page["runs"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [r["run_id"] for r in seen] == ids[::-1]  # newest first, each once
    assert all(r["status"] == "done" and r["session"] == "list-a" for r in seen)
    assert seen[0]["flow"] == "simple" and seen[0]["tags"] == ["batch-a", "n2"]

    status, page = await api.call("GET", "/v1/runs?user=lister&status=done,failed&limit=10")
    assert [r["run_id"] for r in page["runs"]] == [other["run_id"], *ids[::-1]]
    status, page = await api.call("GET", "/v1/runs?user=lister&tag=batch-a&tag=n0")
    assert [r["run_id"] for r in page["runs"]] == [ids[0]]
    status, page = await api.call("GET", "/v1/runs?user=lister&status=failed")
    assert (status, page["runs"], page["next_cursor"]) == (200, [], None)
    since = seen[1]["created_at"]  # the second run: it and the ones after it
    status, page = await api.call("GET", f"/v1/runs?user=lister&since={since}")
    assert [r["run_id"] for r in page["runs"]] == [other["run_id"], ids[2], ids[1]]
    status, page = await api.call("GET", f"/v1/runs?user=lister&until={since}")
    assert [r["run_id"] for r in page["runs"]] == [ids[0]]

    status, session = await api.call("GET", "/v1/sessions/list-a")
    assert status == 200 and session["busy"] is False and session["active"] is None
    assert session["queued"] == [] and session["last"]["run_id"] == ids[2]
    assert session["last"]["status"] == "done"
    status, history = await api.call("GET", "/v1/sessions/list-a/runs?limit=2")
    assert [r["run_id"] for r in history["runs"]] == ids[:0:-1] and history["next_cursor"]
    status, rest = await api.call("GET", "/v1/sessions/list-a/runs?limit=2&cursor="
                                  + history["next_cursor"])
    assert [r["run_id"] for r in rest["runs"]] == [ids[0]] and rest["next_cursor"] is None


async def test_bad_queries_are_400_and_unknown_sessions_404(api: Api) -> None:
    for query in ("status=bogus", "cursor=not-a-cursor", "limit=0", "limit=101",
                  "limit=2.5", "since=yesterday", "until=-1", "tag=no%20spaces",
                  "session=no%20spaces"):
        status, body = await api.call("GET", f"/v1/runs?{query}")
        assert (status, body["error"]["code"]) == (400, "bad_request"), query
    for path in ("/v1/sessions/never-used-session", "/v1/sessions/never-used-session/x"):
        status, body = await api.call("GET", path)
        assert (status, body["error"]["code"]) == (404, "not_found"), path
    status, body = await api.call("GET", "/v1/sessions/never-used-session/runs")
    assert (status, body["runs"]) == (200, [])
    for body in ({"message": "hi", "tags": ["no spaces allowed"]},
                 {"message": "hi", "tags": [f"t{n}" for n in range(17)]},
                 {"message": "hi", "metadata": {"big": "x" * 501}},
                 {"message": "hi", "metadata": {"n": 1}},
                 {"message": "hi", "metadata": {f"k{n}": "v" for n in range(17)}},
                 {"message": "hi", "metadata": [1, 2]},
                 {"message": "hi", "multitask_strategy": "rollback"},
                 {"message": "hi", "webhook": "ftp://example.com/hook"}):
        status, answer = await _post(api, **body)
        assert (status, answer["error"]["code"]) == (400, "bad_request"), body
    for hook in ("http://10.0.0.7/hook", "http://169.254.169.254/latest/meta-data",
                 "http://user:pw@example.com/hook"):
        status, answer = await _post(api, message="hi", webhook=hook)
        assert (status, answer["error"]["code"]) == (403, "webhook_refused"), hook
    for route in ("/v1/runs", "/v1/sessions/x", "/v1/sessions/x/runs",
                  "/v1/runs/0123456789abcdef0123456789abcdef/wait"):
        status, answer = await api.call("GET", route, token="wrong")
        assert status == 401, route


# --------------------------------------------------------------------------- idempotency


async def test_an_idempotency_key_makes_a_resubmit_return_the_same_run(api: Api) -> None:
    key = {"Idempotency-Key": "order-7f3a-resubmit"}
    status, first = await _post(api, key, message="hello idempotent", user="idem")
    assert status == 202
    # The same request, its keys in another order and spaced otherwise: the same run.
    same = b'{ "user" : "idem",  "message": "hello idempotent" }'
    async with api.http.post(f"{api.base}/v1/runs", data=same, headers={
            **key, **api._headers(None), "Content-Type": "application/json"}) as response:
        again = await response.json()
        assert response.status == 202 and response.headers["Idempotent-Replayed"] == "true"
    assert again["run_id"] == first["run_id"]
    status, other = await _post(api, key, message="something else", user="idem")
    assert (status, other["error"]["code"]) == (422, "idempotency_key_reused")
    status, bad = await _post(api, {"Idempotency-Key": "\u00e9t\u00e9"}, message="x")
    assert (status, bad["error"]["code"]) == (400, "bad_header")
    status, fresh = await _post(api, {"Idempotency-Key": "order-7f3a-other"},
                                message="hello idempotent", user="idem")
    assert status == 202 and fresh["run_id"] != first["run_id"]
    await api.settled(first["run_id"])
    status, page = await api.call("GET", "/v1/runs?user=idem")
    assert sorted(r["run_id"] for r in page["runs"]) == sorted([first["run_id"],
                                                                fresh["run_id"]])
    status, later = await _post(api, key, message="hello idempotent", user="idem")
    assert (status, later["run_id"], later["status"]) == (202, first["run_id"], "done")


async def test_requests_with_one_key_at_once_make_one_run(api: Api) -> None:
    key = {"Idempotency-Key": "burst-5c1e"}
    answers = await asyncio.gather(*(_post(api, key, message="hello burst", user="burst")
                                     for _ in range(6)))
    statuses = {status for status, _ in answers}
    assert statuses <= {202, 409}, answers
    accepted = {body["run_id"] for status, body in answers if status == 202}
    assert len(accepted) == 1, answers
    assert all(body["error"]["code"] == "idempotency_in_progress"
               for status, body in answers if status == 409)
    [run_id] = accepted
    await api.settled(run_id)
    status, page = await api.call("GET", "/v1/runs?user=burst")
    assert [r["run_id"] for r in page["runs"]] == [run_id]


# ------------------------------------------------------------------------- busy sessions


async def test_a_busy_session_rejects_enqueues_or_is_interrupted(api: Api) -> None:
    session = "busy-policies"
    status, first = await _post(api, message="[long 30] write a python module in steps",
                                session=session)
    assert status == 202
    await until(lambda: api.run(first["run_id"]), lambda r: r["turn"] >= 1,
                within_s=WITHIN_S, what="the first run to start its loop")
    status, refused = await _post(api, message="not now", session=session,
                                  multitask_strategy="reject")
    assert (status, refused["error"]["code"]) == (409, "session_busy")
    status, queued = await _post(api, message="hello after it", session=session,
                                 multitask_strategy="enqueue")
    assert (status, queued["status"]) == (202, "queued")
    status, state = await api.call("GET", f"/v1/sessions/{session}")
    assert state["busy"] is True and state["active"] == first["run_id"]
    assert state["queued"] == [queued["run_id"]]
    status, urgent = await _post(api, message="hello instead", session=session,
                                 multitask_strategy="interrupt")
    assert status == 202
    stopped = await api.settled(first["run_id"])
    assert stopped["status"] == "aborted" and stopped["stop_requested"] is True
    done_urgent = await api.settled(urgent["run_id"])
    done_queued = await api.settled(queued["run_id"])
    assert (done_urgent["status"], done_queued["status"]) == ("done", "done")
    assert done_urgent["updated_at"] <= done_queued["updated_at"]  # it went first
    status, history = await api.call("GET", f"/v1/sessions/{session}/runs")
    assert [r["run_id"] for r in history["runs"]] == [
        urgent["run_id"], queued["run_id"], first["run_id"]]  # the refused one is not kept
    status, free = await _post(api, message="hello when free", session=session,
                               multitask_strategy="reject")
    assert status == 202
    await api.settled(free["run_id"])


# ---------------------------------------------------------------------------------- wait


async def test_wait_returns_when_the_run_ends_or_at_its_timeout(api: Api) -> None:
    status, run = await _post(api, message="[long 2] write a python module in two steps")
    status, ended = await api.call("GET", f"/v1/runs/{run['run_id']}/wait?timeout_s=90")
    assert status == 200 and ended["status"] == "done" and ended["turn"] == 3
    status, long_run = await _post(api, message="[long 30] write a python module in steps")
    status, going = await api.call("GET", f"/v1/runs/{long_run['run_id']}/wait?timeout_s=0.5")
    assert status == 200 and going["status"] in {"queued", "running"}
    status, now = await api.call("GET", f"/v1/runs/{long_run['run_id']}/wait?timeout_s=0")
    assert status == 200 and now["run_id"] == long_run["run_id"]
    for query in ("timeout_s=121", "timeout_s=-1", "timeout_s=soon"):
        status, body = await api.call("GET", f"/v1/runs/{long_run['run_id']}/wait?{query}")
        assert (status, body["error"]["code"]) == (400, "bad_request"), query
    status, body = await api.call("GET", "/v1/runs/0123456789abcdef0123456789abcdef/wait")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, _ = await api.call("POST", f"/v1/runs/{long_run['run_id']}/stop")
    assert status == 202
    assert (await api.settled(long_run["run_id"]))["status"] == "aborted"


# ------------------------------------------------------------------------------ webhooks


@dataclass
class Receiver:
    """A webhook receiver: every request's headers and body; answers ``status``."""

    url: str = ""
    status: int = 204
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        return web.Response(status=self.status)


@pytest_asyncio.fixture(name="receiver")
async def receiver_fixture() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def _webhook_events(system: RunningSystem, session: str, wanted: int
                          ) -> list[tuple[str, int]]:
    """``(kind, value)`` of the API's webhook events in ``session``, once ``wanted`` came."""
    nc = await nats.connect(system.nats_url)
    found: list[tuple[str, int]] = []
    try:
        sub = await nc.jetstream().subscribe(SUBJECTS.event(actor="api", session=session),
                                             ordered_consumer=True)
        async with asyncio.timeout(WITHIN_S):
            while len(found) < wanted:
                event = event_decoder.decode((await sub.next_msg(timeout=WITHIN_S)).data)
                found.append((event.kind, event.value))
        await sub.unsubscribe()
    finally:
        await nc.close()
    return found


async def test_a_webhook_is_signed_and_delivered_once_with_two_replicas(
        api: Api, replica: Api, receiver: Receiver, system: RunningSystem) -> None:
    status, run = await _post(api, message="hello with a hook", session="hook-ok",
                              webhook=receiver.url, tags=["hooked"])
    assert status == 202
    view = await until(lambda: replica.run(run["run_id"]),
                       lambda r: r["webhook"]["state"] == "delivered",
                       within_s=WITHIN_S, what="the webhook to be delivered")
    assert view["webhook"] == {"state": "delivered", "attempts": 1, "last_status": 204}
    assert len(receiver.got) == 1  # one replica claimed it
    headers, body = receiver.got[0]
    payload = Webhook(SECRET).verify(body, headers)
    assert payload["type"] == "run.done" and payload["data"]["run_id"] == run["run_id"]
    assert payload["data"]["tags"] == ["hooked"] and headers["webhook-id"]
    tampered = body.replace(b"run.done", b"run.fail")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, headers)
    assert await _webhook_events(system, "hook-ok", 2) == [
        ("webhook_attempt", 204), ("webhook_delivered", 204)]


async def test_a_failing_receiver_is_retried_then_given_up(
        api: Api, receiver: Receiver, system: RunningSystem) -> None:
    receiver.status = 500
    status, run = await _post(api, message="hello with a broken hook", session="hook-bad",
                              webhook=receiver.url)
    assert status == 202
    view = await until(lambda: api.run(run["run_id"]),
                       lambda r: r["webhook"]["state"] == "failed",
                       within_s=WITHIN_S, what="the webhook to be given up")
    assert view["status"] == "done"
    assert view["webhook"] == {"state": "failed", "attempts": ATTEMPTS, "last_status": 500}
    assert len(receiver.got) == ATTEMPTS
    assert len({headers["webhook-id"] for headers, _ in receiver.got}) == 1  # one message
    for headers, body in receiver.got:
        Webhook(SECRET).verify(body, headers)
    assert await _webhook_events(system, "hook-bad", ATTEMPTS + 1) == [
        *[("webhook_attempt", 500)] * ATTEMPTS, ("webhook_failed", 500)]


async def test_a_name_that_resolves_to_loopback_is_not_called(
        api: Api, receiver: Receiver, system: RunningSystem) -> None:
    """``localhost`` is not in the allowed hosts (only ``127.0.0.1`` is): the URL passes
    the check at submit (a name), the resolver refuses it at each attempt."""
    hook = receiver.url.replace("127.0.0.1", "localhost")
    status, run = await _post(api, message="hello with a sneaky hook", session="hook-dns",
                              webhook=hook)
    assert status == 202
    view = await until(lambda: api.run(run["run_id"]),
                       lambda r: r["webhook"]["state"] == "failed",
                       within_s=WITHIN_S, what="the webhook to be refused")
    assert view["webhook"]["attempts"] == ATTEMPTS and view["webhook"]["last_status"] is None
    assert receiver.got == []
    kinds = [kind for kind, _ in await _webhook_events(system, "hook-dns", ATTEMPTS + 1)]
    assert kinds[-1] == "webhook_failed"
