"""The ``concurrency`` scenario's tables: one line per level, the growth per conversation,
and memory and CPU per process."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bench._concurrency_load import SEGMENTS

SEGMENT_ORDER = [name for name, _, _ in SEGMENTS]
_LEVEL_COLUMNS = (
    ("tasks_per_s", "tasks/s", "{:.1f}"), ("bound_tasks_per_s", "bound", "{:.0f}"),
    ("ratio_to_bound", "ratio", "{:.3f}"), ("latency_p50", "p50 ms", "{:.0f}"),
    ("latency_p99", "p99 ms", "{:.0f}"), ("overhead_p50", "over p50", "{:.0f}"),
    ("overhead_p90", "over p90", "{:.0f}"), ("overhead_p99", "over p99", "{:.0f}"),
    ("finished", "done", "{:.0f}"), ("lost", "lost", "{:.0f}"),
    ("duplicates", "dup", "{:.0f}"), ("error_replies", "err", "{:.0f}"),
    ("redeliveries", "redeliv", "{:.0f}"), ("open_streams", "streams", "{:.0f}"),
)
_APART = ("model server (simulated)", "bench client")


def _fmt(value: float | None, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)


def _grid(headers: Sequence[str], lines: list[list[str]]) -> str:
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(headers)]
    out = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    out += ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def render(rows: list[dict[str, Any]]) -> str:
    """The tables of ``rows`` (the scenario's rows of one run); "" when there are none."""
    if not rows:
        return ""
    by: dict[tuple[int, str, str], float] = {}
    for row in rows:
        by[(row["in_flight"] or 0, row["metric"], row["label"] or "")] = row["value"]
    levels = sorted({n for n, _, _ in by})
    parts = ["== Concurrency under model latency: closed-loop conversations, a 5 s model in "
             "50 chunks over HTTP (direct path); overhead = latency - 5 s =="]
    lines = [[str(n), *(_fmt(by.get((n, m, "")), p) for m, _, p in _LEVEL_COLUMNS),
              _fmt(by.get((n, "pss", "system")), "{:.0f}"),
              _fmt(by.get((n, "rss", "system")), "{:.0f}"),
              _fmt(by.get((n, "cpu_cores", "system")), "{:.2f}"),
              *(_fmt(by.get((n, "cpu_cores", a)), "{:.2f}") for a in _APART)]
             for n in levels]
    parts.append(_grid(["convs", *(h for _, h, _ in _LEVEL_COLUMNS), "PSS MiB", "RSS MiB",
                        "sys cores", "model srv cores", "client cores"], lines))
    growth = [f"{label} → {n}: PSS {by[(n, 'pss_kib_per_conversation', label)]:.1f} KiB, "
              f"RSS {by.get((n, 'rss_kib_per_conversation', label), math.nan):.1f} KiB"
              for (n, metric, label) in sorted(by) if metric == "pss_kib_per_conversation"]
    if growth:
        parts.append("Growth of the system's memory per active conversation (target ≤ 50 KiB): "
                     + "; ".join(g.removeprefix("from ") for g in growth))
    parts.append(_segments(by, levels))
    parts.append(_per_process(by, levels))
    return "\n".join(parts)


def _segments(by: dict[tuple[int, str, str], float], levels: list[int]) -> str:
    segments = list(dict.fromkeys(label for _, metric, label in sorted(by, key=lambda k: k[0])
                                  if metric == "segment_p50"))
    loaded = [n for n in levels if n]
    headers = ["step (ms)", *(f"p{q}@{n}" for n in loaded for q in (50, 99))]
    lines = [[segment, *(_fmt(by.get((n, f"segment_p{q}", segment)), "{:.1f}")
                         for n in loaded for q in (50, 99))] for segment in SEGMENT_ORDER
             if segment in segments]
    return "-- where a request's time goes (from the execution events) --\n" + \
        _grid(headers, lines)


def _per_process(by: dict[tuple[int, str, str], float], levels: list[int]) -> str:
    labels = sorted({label for _, metric, label in by if metric == "pss" and label})
    labels.sort(key=lambda label: (label in _APART, label == "system", label))
    headers = ["process", *(f"PSS@{n}" for n in levels), *(f"RSS@{n}" for n in levels),
               *(f"cores@{n}" for n in levels), f"ms/task@{levels[-1]}"]
    lines = [[label, *(_fmt(by.get((n, "pss", label)), "{:.1f}") for n in levels),
              *(_fmt(by.get((n, "rss", label)), "{:.1f}") for n in levels),
              *(_fmt(by.get((n, "cpu_cores", label)), "{:.3f}") for n in levels),
              _fmt(by.get((levels[-1], "cpu_ms_per_task", label)), "{:.3f}")]
             for label in labels]
    return "-- memory (MiB) and CPU per process; 'system' sums all but the model server and " \
        "the bench client --\n" + _grid(headers, lines)
