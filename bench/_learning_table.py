"""The ``learning`` scenario's figures as a text table (``python -m bench run`` / ``report``)."""

from __future__ import annotations

from typing import Any

from bench._learning import IN_FLIGHT, PRICES, SCENARIO
from bench._learning_kinds import KINDS

_TABLE = (("tasks", "{:.0f}"), ("finished", "{:.0f}"), ("escalations_per_task", "{:.3f}"),
          ("model_calls_per_task", "{:.2f}"), ("agent_calls_per_task", "{:.2f}"),
          ("router_calls_per_task", "{:.2f}"),
          ("turns_per_task", "{:.2f}"), ("cost_per_task", "{:.4f}"),
          ("agent_cost_per_task", "{:.4f}"), ("tasks_per_s", "{:.2f}"),
          ("latency_p50", "{:.0f}"), ("latency_p90", "{:.0f}"),
          ("latency_p50_first_quarter", "{:.0f}"), ("latency_p50_last_quarter", "{:.0f}"),
          ("cpu_ms_per_task", "{:.0f}"),
          ("stuck_at_top", "{:.0f}"),
          ("started_from_case", "{:.0f}"), ("started_above_role_tier", "{:.0f}"),
          ("planned_after_same_kind_case", "{:.0f}"), ("later_escalations_per_task", "{:.3f}"),
          ("cases_stored", "{:.0f}"), ("lost", "{:.0f}"), ("error_replies", "{:.0f}"),
          ("trouble_events", "{:.0f}"), ("escalations_inconsistent", "{:.0f}"),
          ("leftover_processes", "{:.0f}"))


def learning_table(rows: list[dict[str, Any]]) -> str:
    """The ``learning`` figures of ``rows`` as text: one column per mode and the ratio, then
    escalations and starting tier by the tier each kind needs ("" when there are none)."""
    per: dict[str, dict[str, float]] = {}
    delays = set()
    for row in rows:
        if row["scenario"] == SCENARIO:
            per.setdefault(row["label"], {})[row["metric"]] = row["value"]
            delays.add(row["delay_s"])
    if not per:
        return ""
    columns = ["off", "on", "on/off"]
    lines = [f"{'metric':<30}" + "".join(f"{c:>12}" for c in columns)]
    for metric, pattern in _TABLE:
        if not any(metric in per.get(c, {}) for c in columns):
            continue
        shown = []
        for column in columns:
            value = per.get(column, {}).get(metric)
            fmt = "{:.3f}" if column == "on/off" else pattern
            shown.append("-" if value is None else fmt.format(value))
        lines.append(f"{metric:<30}" + "".join(f"{c:>12}" for c in shown))
    lines += ["", f"{'by tier the kind needs':<30}"
                  + "".join(f"{h:>12}" for h in ("tasks", "esc off", "esc on", "start off",
                                                 "start on", "$ off", "$ on"))]
    for need in sorted({k.min_tier for k in KINDS}):
        off, on = per.get(f"off needs {need}", {}), per.get(f"on needs {need}", {})
        cells: list[float | None] = [
            off.get("tasks"), off.get("escalations_per_task"), on.get("escalations_per_task"),
            off.get("start_tier_mean"), on.get("start_tier_mean"), off.get("cost_per_task"),
            on.get("cost_per_task")]
        patterns = ["{:.0f}", "{:.2f}", "{:.2f}", "{:.2f}", "{:.2f}", "{:.4f}", "{:.4f}"]
        lines.append(f"{'needs tier ' + str(need):<30}" + "".join(
            f"{'-' if v is None else p.format(v):>12}" for v, p in zip(cells, patterns,
                                                                       strict=True)))
    latency = ", ".join(f"{d:g}" for d in sorted(delays, key=lambda d: d or 0))
    prices = ", ".join(f"tier {t} ${p:g}" for t, p in PRICES.items())
    title = (f"== Learning the starting tier (SEQUENTIAL, {IN_FLIGHT} in flight, model latency "
             f"{latency} s; $ per model call: {prices}) ==")
    return title + "\n" + "\n".join(lines)
