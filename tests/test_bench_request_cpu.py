"""Pieces of the bench's ``request_cpu`` scenario that a wrong answer would hide: the
simulated model's route for a router's request parses as the router's own answer, and a
profile's table names where the time went."""

from __future__ import annotations

import cProfile
import json
import time
from pathlib import Path

from actors.router._model import parse_answer
from bench._request_cpu import profile_table
from bench._sse_server import ROUTE, _completion, _pieces, _tool_chunks
from modelcall._reply import Fold
from protocol import Flow


def test_a_router_request_is_answered_with_a_route_the_router_reads() -> None:
    system = 'Answer {"respond": true|false, ...}'
    body: dict[str, object] = {"messages": [{"role": "system", "content": system},
                                            {"role": "user", "content": "hello"}]}
    pieces = _pieces(body, 20)
    assert len(pieces) == 20 and "".join(pieces) == ROUTE
    route = parse_answer("".join(pieces))
    assert route.respond and route.flow is Flow.SIMPLE and route.role == "researcher"
    plain = _pieces({"messages": [{"role": "user", "content": "hello"}]}, 3)
    assert plain == ["w0 ", "w1 ", "w2 "]


def test_an_unstreamed_request_gets_the_streamed_answer_in_one_object() -> None:
    """The router asks for one answer (``stream`` left out): the bench's model gives it the
    route the chunks would have held, and two whole tool calls to a request with tools."""
    system = 'Answer {"respond": true|false, ...}'
    body: dict[str, object] = {"messages": [{"role": "system", "content": system},
                                            {"role": "user", "content": "hello"}]}
    fold = Fold()
    fold.add_completion(_completion(body, 20))
    assert fold.text == ROUTE and fold.finish_reason == "stop" and fold.usage is not None
    whole, streamed = Fold(), Fold()
    whole.add_completion(_completion({**body, "tools": [{}]}, 3))
    for chunk in _tool_chunks(3):
        streamed.add(json.loads(chunk.removeprefix(b"data: ")))
    assert [c["name"] for c in whole.calls.values()] == ["write_file", "write_file"]
    assert whole.calls == streamed.calls and whole.finish_reason == streamed.finish_reason


def _busy(rounds: int) -> int:
    total = 0
    for i in range(rounds):
        total += i * i % 7
    return total


def test_the_profile_table_ranks_the_function_that_took_the_time(tmp_path: Path) -> None:
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    _busy(300_000)
    profiler.disable()
    path = tmp_path / "classifier-0.prof"
    profiler.dump_stats(path)
    table = profile_table(path, requests=10, top=5).splitlines()
    assert table[0].startswith("classifier-0:") and "10 requests" in table[0]
    assert "_busy" in table[2]  # the first row: the most time of its own
