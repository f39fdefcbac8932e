"""PNG plots of the latest bench figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

Rows = list[dict[str, Any]]


def _series(rows: Rows, scenario: str, metric: str, x: str) -> dict[str, list[tuple[Any, float]]]:
    """``{series name: [(x, value), ...]}`` of one metric, a series per flow and latency."""
    series: dict[str, list[tuple[Any, float]]] = defaultdict(list)
    for row in rows:
        if row["scenario"] == scenario and row["metric"] == metric and row["label"] is None:
            name = f"{row['flow']} (model {row['delay_s']:g} s)"
            series[name].append((row[x], row["value"]))
    return {k: sorted(v) for k, v in series.items()}


def _commit(rows: Rows, scenario: str) -> str:
    found = {(r["git_commit"], r["run_id"]) for r in rows if r["scenario"] == scenario}
    return ", ".join(f"{c} @ {r}" for c, r in sorted(found))


def throughput(rows: Rows, path: Path) -> Path | None:
    """Tasks/s against requests in flight, one line per flow and model latency."""
    series = _series(rows, "throughput", "tasks_per_s", "in_flight")
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in series.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("requests in flight")
    ax.set_ylabel("tasks / s")
    ax.set_title(f"Throughput by requests in flight\n{_commit(rows, 'throughput')}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency(rows: Rows, path: Path) -> Path | None:
    """p50 / p90 / p99 latency (ms, log scale) against requests in flight, a panel per
    flow and model latency."""
    names = sorted(_series(rows, "throughput", "latency_p50", "in_flight"))
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for q in (50, 90, 99):
            points = _series(rows, "throughput", f"latency_p{q}", "in_flight")[name]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"p{q}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("requests in flight")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("latency, send to finish (ms)")
    fig.suptitle(f"Latency percentiles — {_commit(rows, 'throughput')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def replicas(rows: Rows, path: Path) -> Path | None:
    """Tasks/s against replicas of the classifier and the researcher."""
    series = _series(rows, "replicas", "tasks_per_s", "replicas")
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(series)
    for i, (name, points) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(points))]
        bars = ax.bar(xs, [p[1] for p in points], width=width, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
        ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(points))],
                      [str(p[0]) for p in points])
    ax.set_xlabel("replicas of classifier and researcher (SIMPLE, 64 in flight)")
    ax.set_ylabel("tasks / s")
    ax.set_title(f"Scaling with replicas on this machine\n{_commit(rows, 'replicas')}",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def memory(rows: Rows, path: Path) -> Path | None:
    """PSS per process (MB) at idle and after load, with the totals in the title."""
    per: dict[str, dict[str, float]] = defaultdict(dict)
    totals: dict[str, float] = {}
    for row in rows:
        if row["scenario"] != "memory":
            continue
        state = json.loads(row["params"] or "{}").get("state", "")
        if row["metric"] == "pss":
            per[row["label"]][state] = row["value"]
        elif row["metric"] == "pss_total":
            totals[state] = row["value"]
    if not per:
        return None
    names = sorted(per, key=lambda n: -per[n].get("after load", per[n].get("idle", 0)))
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(names) + 1.8))
    ys = range(len(names))
    for offset, state in ((-0.2, "idle"), (0.2, "after load")):
        ax.barh([y + offset for y in ys], [per[n].get(state, 0) for n in names], height=0.4,
                label=state)
    ax.set_yticks(list(ys), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("PSS (MB)")
    total = ", ".join(f"{s} {v:.0f} MB" for s, v in totals.items())
    ax.set_title(f"Memory per process, default deployment (PSS total: {total})\n"
                 f"{_commit(rows, 'memory')}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_all(rows: Rows, out_dir: Path) -> list[Path]:
    """Every plot whose figures are present; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = [
        throughput(rows, out_dir / "throughput_vs_in_flight.png"),
        latency(rows, out_dir / "latency_percentiles.png"),
        replicas(rows, out_dir / "tasks_per_s_vs_replicas.png"),
        memory(rows, out_dir / "memory_per_process.png"),
    ]
    return [p for p in drawn if p is not None]
