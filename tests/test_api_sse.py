"""A run's event stream resumed, end to end: ``switchboard up`` with the HTTP API on a real
nats-server, read with httpx-sse (a client that keeps ``Last-Event-ID`` as an EventSource
does). A client that drops the connection every few events and reconnects with the last id
gets every event exactly once, and ``end`` only after the run's work after the answer
(evaluation, reflection) reported: every execution event JetStream stored for the run's trace
reached the stream."""

from __future__ import annotations

import asyncio
import json

import httpx
import nats
import pytest
from api_client import TOKEN, WITHIN_S, Api
from api_system import (  # noqa: F401 (the fixtures api, system)
    api_env_fixture,
    api_fixture,
    api_listen_fixture,
    system_fixture,
)
from httpx_sse import ServerSentEvent, aconnect_sse
from system import RunningSystem

from protocol import Subjects, event_decoder

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SUBJECTS = Subjects()


async def _read(http: httpx.AsyncClient, url: str, last_id: str | None, at_most: int
                ) -> tuple[list[ServerSentEvent], int | None]:
    """Up to ``at_most`` events from ``url`` (then the connection is dropped), resuming after
    ``last_id``; also the ``retry`` the stream asked for."""
    headers = {**AUTH, **({"Last-Event-ID": last_id} if last_id else {})}
    got: list[ServerSentEvent] = []
    retry = None
    async with aconnect_sse(http, "GET", url, headers=headers) as source:
        assert source.response.status_code == 200
        async for event in source.aiter_sse():
            retry = event.retry if event.retry is not None else retry
            if event.event == "message" and not event.data:
                continue  # the retry field alone
            got.append(event)
            if len(got) >= at_most:
                break
    return got, retry


async def _stored_events(system: RunningSystem, session: str, trace_id: str) -> dict[int, str]:
    """Stream sequence → kind of every execution event JetStream stored for the trace."""
    nc = await nats.connect(system.nats_url)
    found: dict[int, str] = {}
    try:
        js = nc.jetstream()
        sub = await js.subscribe(SUBJECTS.event(session=session), ordered_consumer=True)
        while True:
            try:
                msg = await sub.next_msg(timeout=2.0)
            except nats.errors.TimeoutError:
                break  # everything stored was delivered
            event = event_decoder.decode(msg.data)
            if event.trace_id == trace_id:
                found[msg.metadata.sequence.stream] = event.kind
            if not msg.metadata.num_pending:
                break
        await sub.unsubscribe()
    finally:
        await nc.close()
    return found


async def test_a_client_that_reconnects_gets_every_event_once_and_end_last(
        api: Api, system: RunningSystem) -> None:
    accepted = await api.submit("[long 3] write a python module in three steps",
                                session="api-resume")
    url = f"{api.base}/v1/runs/{accepted['run_id']}/events"
    frames: list[ServerSentEvent] = []
    connections = 0
    async with httpx.AsyncClient(timeout=httpx.Timeout(WITHIN_S)) as http:
        async with asyncio.timeout(WITHIN_S * 2):
            while not frames or frames[-1].event != "end":
                got, retry = await _read(http, url, frames[-1].id if frames else None, 4)
                assert retry == 2000  # every connection tells the client when to come back
                frames += got
                connections += 1
            response = await http.get(url, headers={**AUTH, "Last-Event-ID": "end"})
            assert response.status_code == 204  # an EventSource stops reconnecting
            late, _ = await _read(http, url, None, 10_000)  # one client, from the start
    assert connections > 5
    ids = [f.id for f in frames]
    assert len(ids) == len(set(ids)), "an event came twice"
    assert ids[-1] == "end" and [f.event for f in frames].count("end") == 1
    end = json.loads(frames[-1].data)
    assert (end["status"], end["reason"]) == ("done", "ended")

    # The same events as the uninterrupted late client: nothing lost, nothing twice.
    def _events(stream: list[ServerSentEvent]) -> list[tuple[str, str]]:
        return [(f.event, f.data) for f in stream if f.event not in {"run", "end"}]

    assert sorted(_events(frames)) == sorted(_events(late))
    assert [json.loads(f.data)["status"] for f in frames if f.event == "run"][-1] == "done"

    # Each execution event's id carries its own JetStream sequence; every event the actors
    # stored for the run's trace (the reflection after the answer too) came before `end`.
    executed = [(f, json.loads(f.data)) for f in frames if f.event not in {
        "run", "end", "progress", "reply", "options"}]
    trace_id = executed[0][1]["trace_id"]
    sent = {int(f.id.split(".")[0]): f.event for f, _ in executed}
    assert len(sent) == len(executed)
    stored = await _stored_events(system, "api-resume", trace_id)
    assert sent == stored
    assert {"answered", "evaluated", "reflection", "handled"} <= set(sent.values())
    [reply] = [f for f in frames if f.event == "reply"]
    assert frames.index(reply) < max(i for i, f in enumerate(frames) if f.event == "reflection")


async def test_a_last_event_id_this_api_never_sent_is_400(api: Api) -> None:
    accepted = await api.submit("hello there")
    url = f"{api.base}/v1/runs/{accepted['run_id']}/events"
    async with httpx.AsyncClient(timeout=httpx.Timeout(WITHIN_S)) as http:
        for bad in ("7", "1.2.sleeping", "x.y.done", "1.2.done.end"):
            response = await http.get(url, headers={**AUTH, "Last-Event-ID": bad})
            assert response.status_code == 400, bad
            assert response.json()["error"]["code"] == "bad_header"
        response = await http.get(f"{api.base}/v1/runs/{'f' * 32}/events",
                                  headers={**AUTH, "Last-Event-ID": "end"})
        assert response.status_code == 404  # an unknown run stays unknown

