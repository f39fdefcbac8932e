"""Pieces of the bench's ``request_cpu`` scenario that a wrong answer would hide: the
simulated model's route for a router's request parses as the router's own answer, and a
profile's table names where the time went."""

from __future__ import annotations

import cProfile
import time
from pathlib import Path

from actors.router._model import parse_answer
from bench._request_cpu import profile_table
from bench._sse_server import ROUTE, _pieces
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
