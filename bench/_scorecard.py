"""One table of the bench's targets: each figure, its target, the floor or peers beside it, and
whether the target is met; printed first by ``python -m bench run`` and ``bench report``.

A line whose figures are not in the rows (its scenario did not run) shows "-" and "not run".
The targets and their floors are explained in bench/README.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bench._table import _render

Row = Mapping[str, Any]


def _params(row: Row) -> dict[str, Any]:
    raw = row.get("params")
    return json.loads(raw) if isinstance(raw, str) and raw else dict(raw or {})


class _Rows:
    """Lookups over one run's (or the latest) rows."""

    def __init__(self, rows: Iterable[Row]) -> None:
        self.rows = list(rows)

    def value(self, scenario: str, metric: str, *, agg: Callable[[list[float]], float] = max,
              **match: Any) -> float | None:
        """``agg`` of the values of ``metric`` in ``scenario`` whose columns (or params) equal
        ``match``; None when there is none."""
        found = []
        for row in self.rows:
            if row["scenario"] != scenario or row["metric"] != metric:
                continue
            params = _params(row)
            if all((row[k] if k in row else params.get(k)) == v for k, v in match.items()):
                found.append(float(row["value"]))
        return agg(found) if found else None


@dataclass(frozen=True)
class _Line:
    item: str
    figure: str
    value: float | None
    unit: str
    target: str
    met: bool | None
    beside: str = ""


def _ok(value: float | None, test: Callable[[float], bool]) -> bool | None:
    if value is None or math.isnan(value):
        return None
    return test(value)


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "-" if value is None or math.isnan(value) else pattern.format(value)


def _runtime(r: _Rows) -> list[_Line]:
    lines = []
    peers = ("thin5", "autogen5", "faststream5")
    for in_flight in (64, 256):
        rate = r.value("runtime", "tasks_per_s", flow="runtime5", in_flight=in_flight)
        thin = r.value("runtime", "tasks_per_s", flow="thin5", in_flight=in_flight)
        ratio = rate / thin if rate is not None and thin else None
        beside = ", ".join(f"{p[:-1]} {_fmt(v, '{:.0f}')}" for p in peers
                           if (v := r.value("runtime", "tasks_per_s", flow=p,
                                            in_flight=in_flight)) is not None)
        lines.append(_Line("1", f"runtime tasks/s at {in_flight} in flight (÷ thin "
                           f"{_fmt(ratio)})", rate, "tasks/s", "≥ 0.90 × thin",
                           _ok(ratio, lambda x: x >= 0.9), beside))
    p50 = r.value("runtime", "latency_p50", flow="runtime5", in_flight=1)
    thin_p50 = r.value("runtime", "latency_p50", flow="thin5", in_flight=1)
    ratio = p50 / thin_p50 if p50 is not None and thin_p50 else None
    lines.append(_Line("1", f"runtime p50 of 5 hops at 1 in flight (÷ thin {_fmt(ratio)})",
                       p50, "ms", "≤ 1.2 × thin", _ok(ratio, lambda x: x <= 1.2),
                       f"thin {_fmt(thin_p50)}"))
    bad = [r.value("runtime", m, agg=sum, flow="runtime5")
           for m in ("lost", "duplicates", "redeliveries")]
    total = None if any(b is None for b in bad) else sum(b or 0 for b in bad)
    lines.append(_Line("1", "runtime lost + duplicated + redelivered, all loads", total,
                       "messages", "0", _ok(total, lambda x: x == 0)))
    return lines


def _modelcall(r: _Rows) -> list[_Line]:
    lines = []
    for kind, chunks in (("content", 1), ("content", 20), ("content", 200), ("tool_calls", 20)):
        ratio = r.value("modelcall", "ratio_to_raw", label="direct", flow=kind, chunks=chunks)
        raw = r.value("modelcall", "cpu_ms_per_call", label="raw aiohttp", flow=kind,
                      chunks=chunks)
        litellm = r.value("modelcall", "ratio_to_raw", label="litellm", flow=kind,
                          chunks=chunks)
        lines.append(_Line("2", f"model call CPU, {kind} {chunks} chunks, direct ÷ raw",
                           ratio, "×", "≤ 2", _ok(ratio, lambda x: x <= 2.0),
                           f"raw {_fmt(raw, '{:.2f}')} ms, litellm {_fmt(litellm, '{:.0f}')}×"))
    offline = r.value("modelcall", "cpu_ms_per_call", label="offline")
    lines.append(_Line("2", "offline model CPU per call", offline, "ms", "≤ 0.5",
                       _ok(offline, lambda x: x <= 0.5)))
    return lines


def _wire(r: _Rows) -> list[_Line]:
    lines = []
    for flow in ("simple", "sequential"):
        after = r.value("wire", "bytes_per_task", flow=flow, label="flat")
        before = r.value("wire", "bytes_per_task", flow=flow, label="nested")
        smaller = None if after is None or before is None else after < before
        lines.append(_Line("3", f"bytes on the wire per {flow.upper()} task", after, "bytes",
                           "< nested", smaller, f"nested {_fmt(before, '{:.0f}')}"))
    return lines


def _request_cpu(r: _Rows) -> list[_Line]:
    ratio = r.value("request_cpu", "ratio_to_raw")
    actors = r.value("request_cpu", "actors_cpu_ms_per_request")
    raw = r.value("request_cpu", "raw_call_cpu_ms")
    return [_Line("22", "SIMPLE request's actor CPU ÷ one raw streamed call", ratio, "×",
                  "≤ 3", _ok(ratio, lambda x: x <= 3.0),
                  f"actors {_fmt(actors)} ms, raw {_fmt(raw, '{:.3f}')} ms")]


def _concurrency(r: _Rows) -> list[_Line]:
    rate = r.value("concurrency", "tasks_per_s", in_flight=2000)
    bound = r.value("concurrency", "bound_tasks_per_s", in_flight=2000)
    ratio = rate / bound if rate is not None and bound else None
    p99 = r.value("concurrency", "overhead_p99", in_flight=2000)
    kib = r.value("concurrency", "pss_kib_per_conversation", in_flight=2000, label="from 0")
    # The machine's speed in the same run (issue 22): the thin layer's tasks/s at 64 in flight.
    thin = r.value("runtime", "tasks_per_s", flow="thin5", in_flight=64)
    machine = f", thin layer {_fmt(thin, '{:.0f}')}/s" if thin is not None else ""
    return [
        _Line("4", f"2,000 conversations, 5 s model: tasks/s (÷ bound {_fmt(ratio)})", rate,
              "tasks/s", "≥ 0.95 × N / 5 s", _ok(ratio, lambda x: x >= 0.95),
              f"bound {_fmt(bound, '{:.0f}')}{machine}"),
        _Line("4", "orchestration added at p99, 2,000 conversations", p99, "ms", "≤ 100",
              _ok(p99, lambda x: x <= 100)),
        _Line("4", "PSS growth per active conversation", kib, "KiB", "≤ 50",
              _ok(kib, lambda x: x <= 50)),
    ]


def _scale_and_footprint(r: _Rows) -> list[_Line]:
    lines = []
    for replicas in (2, 4):
        scaling = r.value("iobound", "scaling", replicas=replicas)
        lines.append(_Line("5", f"I/O-bound role at {replicas} replicas, × linear", scaling,
                           "×", "≥ 0.9", _ok(scaling, lambda x: x >= 0.9)))
    pss = r.value("memory", "pss_total", label="after load")
    idle = r.value("memory", "pss_total", label="idle")
    lines.append(_Line("5", "default deployment PSS after load", pss, "MB", "≤ 400",
                       _ok(pss, lambda x: x <= 400), f"idle {_fmt(idle, '{:.0f}')} MB"))
    first = r.value("coldstart", "first_answer", agg=lambda v: sum(v) / len(v))
    lines.append(_Line("5", "first answer after `switchboard up` (mean)", first, "s", "≤ 3",
                       _ok(first, lambda x: x <= 3)))
    return lines


def _whole_run(r: _Rows) -> list[_Line]:
    wall = r.value("run", "wall", quick=True)
    return [_Line("6", "`python -m bench run --quick`, every scenario", wall, "s", "< 300",
                  _ok(wall, lambda x: x < 300))]


def _sandbox(r: _Rows) -> list[_Line]:
    """The sandbox adds at most 20 ms per command at p50."""
    lines = []
    for mechanism in ("bubblewrap", "landlock"):
        for program in ("echo", "python"):
            added = r.value("sandbox", "added_p50_ms", label=mechanism, flow=program)
            bare = r.value("sandbox", "wall_p50_ms", label="bare", flow=program)
            lines.append(_Line("17", f"{mechanism} sandbox added per `{program}` command, p50",
                               added, "ms", "≤ 20", _ok(added, lambda x: x <= 20),
                               f"bare {_fmt(bare)} ms"))
    return lines


def scorecard(rows: Iterable[Row]) -> str:
    """The targets table (module docstring) for ``rows``."""
    r = _Rows(rows)
    lines = [*_runtime(r), *_modelcall(r), *_wire(r), *_concurrency(r), *_request_cpu(r),
             *_scale_and_footprint(r), *_whole_run(r), *_sandbox(r)]
    table = [[line.item, line.figure, _fmt(line.value, "{:.2f}" if (line.value or 0) < 100
                                           else "{:.0f}"),
              line.unit, line.target,
              {True: "yes", False: "NO", None: "not run"}[line.met], line.beside]
             for line in lines]
    return "== Targets ==\n" + _render(
        ["item", "figure", "value", "unit", "target", "met", "floor / peers"], table)
