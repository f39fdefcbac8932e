// Charts drawn as SVG, no library: horizontal bars per label, and a run's span waterfall.

import { el, number, svg } from "./dom.js";

const ROW = 22;
const LABEL = 180;
const WIDTH = 640;

// Horizontal bars: `labels` and one `values` array (numbers; null counts as 0).
export function barChart({ key, title, labels, values, unit = "" }) {
  const max = Math.max(0, ...values.map((v) => Number(v) || 0)) || 1;
  const plot = WIDTH - LABEL - 90;
  const chart = svg("svg", {
    class: "chart", "data-section": key, role: "img", "aria-label": title,
    viewBox: `0 0 ${WIDTH} ${labels.length * ROW + 8}`, width: WIDTH,
    height: labels.length * ROW + 8,
  });
  labels.forEach((label, i) => {
    const value = Number(values[i]) || 0;
    const y = 4 + i * ROW;
    chart.append(
      svg("text", { x: LABEL - 6, y: y + 15, "text-anchor": "end", class: "label" },
          String(label).slice(0, 28)),
      svg("rect", { x: LABEL, y: y + 3, height: ROW - 6, class: "bar",
                    width: Math.max(1, (value / max) * plot) },
          svg("title", {}, `${label}: ${number(value, 6)} ${unit}`)),
      svg("text", { x: LABEL + Math.max(1, (value / max) * plot) + 4, y: y + 15,
                    class: "value" }, `${number(value, 4)} ${unit}`.trim()),
    );
  });
  return el("figure", { class: "figure" }, el("figcaption", {}, title), chart);
}

// Each event that reports a span (span_id), as a bar from its start (at - duration) to its
// end (at, Unix seconds), indented under its parent span; ordered by start.
export function waterfall(events) {
  const spans = events.filter((e) => e.span_id && typeof e.at === "number");
  if (!spans.length) {
    return el("p", { class: "empty", id: "waterfall-empty" }, "No spans yet.");
  }
  const byId = new Map(spans.map((e) => [e.span_id, e]));
  const depth = (event) => {
    let d = 0;
    let parent = byId.get(event.parent_span_id);
    const seen = new Set();
    while (parent && !seen.has(parent.span_id) && d < 12) {
      seen.add(parent.span_id);
      d += 1;
      parent = byId.get(parent.parent_span_id);
    }
    return d;
  };
  const rows = spans
    .map((e) => ({ e, start: e.at - (e.duration_ms || 0) / 1000, end: e.at, depth: depth(e) }))
    .sort((a, b) => a.start - b.start);
  const t0 = Math.min(...rows.map((r) => r.start));
  const t1 = Math.max(...rows.map((r) => r.end));
  const scale = (WIDTH - LABEL - 10) / Math.max(t1 - t0, 0.001);
  const chart = svg("svg", {
    id: "waterfall", class: "waterfall", role: "img", "aria-label": "span waterfall",
    viewBox: `0 0 ${WIDTH} ${rows.length * ROW + 24}`, width: WIDTH,
    height: rows.length * ROW + 24,
  });
  chart.append(svg("text", { x: WIDTH - 4, y: 14, "text-anchor": "end", class: "value" },
                   `${number((t1 - t0) * 1000, 0)} ms`));
  rows.forEach((row, i) => {
    const { e } = row;
    const y = 20 + i * ROW;
    const name = `${e.actor} · ${e.kind}${e.model ? " · " + e.model : ""}`;
    chart.append(
      svg("text", { x: 4 + row.depth * 10, y: y + 15, class: "label" }, name.slice(0, 30)),
      svg("rect", {
        class: "span", "data-kind": e.kind, "data-span-id": e.span_id,
        x: LABEL + (row.start - t0) * scale, y: y + 4, height: ROW - 8,
        width: Math.max(2, (row.end - row.start) * scale),
      }, svg("title", {}, `${name}: ${number(e.duration_ms, 1)} ms`)),
    );
  });
  return chart;
}
