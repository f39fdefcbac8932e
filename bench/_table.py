"""The readable summary of bench figures: one line per run setting, the main metrics as
columns."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

_THROUGHPUT_COLUMNS = (
    ("tasks_per_s", "tasks/s", "{:.1f}"), ("latency_p50", "p50 ms", "{:.1f}"),
    ("latency_p90", "p90 ms", "{:.1f}"), ("latency_p99", "p99 ms", "{:.1f}"),
    ("reply_latency_p50", "reply p50", "{:.1f}"), ("finished", "done", "{:.0f}"),
    ("lost", "lost", "{:.0f}"), ("duplicates", "dup", "{:.0f}"),
    ("redeliveries", "redeliv", "{:.0f}"), ("error_replies", "err", "{:.0f}"),
    ("trouble_events", "trouble", "{:.0f}"),
)
_RUNTIME_COLUMNS = (
    ("tasks_per_s", "tasks/s", "{:.1f}"), ("latency_p50", "p50 ms", "{:.2f}"),
    ("latency_p90", "p90 ms", "{:.2f}"), ("latency_p99", "p99 ms", "{:.2f}"),
    ("finished", "done", "{:.0f}"), ("lost", "lost", "{:.0f}"), ("duplicates", "dup", "{:.0f}"),
    ("redeliveries", "redeliv", "{:.0f}"), ("error_replies", "err", "{:.0f}"),
    ("ratio_to_thin", "tasks/s ÷ thin", "{:.2f}"),
    ("latency_p50_ratio_to_thin", "p50 ÷ thin", "{:.2f}"),
)
_KEY_FIELDS = ("flow", "delay_s", "replicas", "in_flight")


def _fmt(value: Any, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)


def _render(headers: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(headers)]
    out = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def load_table(rows: Iterable[Mapping[str, Any]], scenario: str,
               columns: tuple[tuple[str, str, str], ...] = _THROUGHPUT_COLUMNS) -> str:
    """Throughput-like figures of ``scenario`` (throughput, replicas, memory_load, runtime):
    one line per setting, a column per (metric, header, format) of ``columns``."""
    groups: dict[tuple[Any, ...], dict[str, float]] = {}
    for row in rows:
        if row["scenario"] != scenario or row["label"] is not None:
            continue
        key = tuple(row[k] for k in _KEY_FIELDS)
        groups.setdefault(key, {})[row["metric"]] = row["value"]
    headers = ["flow", "delay s", "replicas", "in flight", *(h for _, h, _ in columns)]
    lines = []
    for key in sorted(groups, key=lambda k: tuple("" if v is None else str(v).zfill(6)
                                                  for v in k)):
        metrics = groups[key]
        if "tasks_per_s" not in metrics:
            continue
        lines.append([_fmt(key[0], "{}"), _fmt(key[1], "{:g}"), _fmt(key[2], "{}"),
                      _fmt(key[3], "{}")]
                     + [_fmt(metrics.get(m), p) for m, _, p in columns])
    return _render(headers, lines)


def cpu_table(rows: Iterable[Mapping[str, Any]], scenario: str, *, top: int = 6) -> str:
    """CPU milliseconds per finished task, by process, for each run of ``scenario``."""
    groups: dict[tuple[Any, ...], list[tuple[str, float]]] = {}
    for row in rows:
        if row["scenario"] == scenario and row["metric"] == "cpu_per_task":
            key = tuple(row[k] for k in _KEY_FIELDS)
            groups.setdefault(key, []).append((row["label"], row["value"]))
    lines = []
    for key in sorted(groups, key=lambda k: tuple(str(v).zfill(6) for v in k)):
        per = dict(groups[key])
        total = per.pop("total", float("nan"))
        busiest = sorted(per.items(), key=lambda kv: -kv[1])[:top]
        lines.append([_fmt(key[0], "{}"), _fmt(key[1], "{:g}"), _fmt(key[2], "{}"),
                      _fmt(key[3], "{}"), f"{total:.2f}",
                      ", ".join(f"{name} {ms:.2f}" for name, ms in busiest)])
    return _render(["flow", "delay s", "replicas", "in flight", "CPU ms/task",
                    "busiest processes (CPU ms/task)"], lines)


def memory_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """PSS and RSS by process, at idle and after load, with totals (MB)."""
    per: dict[str, dict[str, float]] = {}
    totals: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["scenario"] != "memory":
            continue
        state = _state(row)
        if row["metric"] in {"pss", "rss"}:
            per.setdefault(row["label"], {})[f"{row['metric']} {state}"] = row["value"]
        elif row["metric"] in {"pss_total", "rss_total", "processes"}:
            totals.setdefault(row["metric"], {})[state] = row["value"]
    columns = ["pss idle", "pss after load", "rss idle", "rss after load"]
    lines = [[name, *(_fmt(v.get(c), "{:.1f}") for c in columns)]
             for name, v in sorted(per.items(), key=lambda kv: -kv[1].get("pss idle", 0))]
    for metric in ("pss_total", "rss_total"):
        values = totals.get(metric, {})
        kind = metric.split("_")[0]
        line = ["TOTAL " + kind.upper(), "", "", "", ""]
        idx = 1 if kind == "pss" else 3
        line[idx] = _fmt(values.get("idle"), "{:.1f}")
        line[idx + 1] = _fmt(values.get("after load"), "{:.1f}")
        lines.append(line)
    count = totals.get("processes", {})
    lines.append([f"processes: {_fmt(count.get('idle'), '{:.0f}')} idle, "
                  f"{_fmt(count.get('after load'), '{:.0f}')} after load", "", "", "", ""])
    return _render(["process", "PSS idle MB", "PSS after MB", "RSS idle MB", "RSS after MB"],
                   lines)


def _state(row: Mapping[str, Any]) -> str:
    return json.loads(row.get("params") or "{}").get("state", "")


def coldstart_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """Cold start seconds per attempt."""
    per: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["scenario"] == "coldstart":
            per.setdefault(row["label"], {})[row["metric"]] = row["value"]
    columns = [("ready", "to 'Switchboard is up' s"), ("first_answer", "to first answer s"),
               ("warm_chat", "one chat, warm system s"), ("chat_attempts", "chat attempts")]
    lines = [[label, *(_fmt(v.get(m), "{:.2f}") for m, _ in columns)]
             for label, v in sorted(per.items())]
    return _render(["attempt", *(h for _, h in columns)], lines)


def runtime_cpu_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """CPU microseconds per step of each process of the ``runtime`` scenario, by flow and
    load: the actors' mean, nats-server and the client (per task), then each actor."""
    per: dict[tuple[str, int], dict[str, float]] = {}
    for row in rows:
        if row["scenario"] == "runtime" and row["metric"] == "cpu_per_step":
            per.setdefault((row["flow"] or "", row["in_flight"]), {})[row["label"]] = row["value"]
    shared = ("actors mean", "nats-server", "bench client")
    lines = []
    for (flow, in_flight), v in sorted(per.items()):
        actors = ", ".join(f"{name} {us:.0f}" for name, us in v.items() if name not in shared)
        lines.append([flow, str(in_flight), *(_fmt(v.get(n), "{:.0f}") for n in shared),
                      actors])
    return _render(["flow", "in flight", *shared, "each actor"], lines)


def summary(rows: list[dict[str, Any]]) -> str:
    """Every section for the scenarios present in ``rows``."""
    present = {row["scenario"] for row in rows}
    parts = []
    for scenario, title in (("throughput", "Throughput and latency (latency: send to finish)"),
                            ("replicas", "Scaling with replicas (classifier + researcher)"),
                            ("memory_load", "Load during the memory scenario")):
        if scenario in present:
            parts += [f"== {title} ==", load_table(rows, scenario), "",
                      f"-- CPU per task ({scenario}) --", cpu_table(rows, scenario), ""]
    if "runtime" in present:
        parts += ["== Runtime alone: 5 durable hops, bench actors, beside the thin layer and the "
                  "peers (latency: send to Reply) ==",
                  load_table(rows, "runtime", _RUNTIME_COLUMNS), "",
                  "-- CPU µs per step (per task for nats-server and the client) --",
                  runtime_cpu_table(rows), ""]
    if "memory" in present:
        parts += ["== Memory of the default deployment (MB) ==", memory_table(rows), ""]
    if "coldstart" in present:
        parts += ["== Cold start ==", coldstart_table(rows), ""]
    return "\n".join(parts)
