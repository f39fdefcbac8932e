// The console's list views: runs (filters, cursor paging, a submit form, live status), a
// session, the roles' load, and the analytics report as charts.

import { call } from "./api.js";
import { barChart } from "./charts.js";
import { badge, clear, el, link, number, when } from "./dom.js";

const POLL_MS = 2500;
const STATUSES = ["", "queued", "running", "awaiting_approval", "paused", "done", "failed",
                  "aborted"];

// Calls `tick` now and every POLL_MS until the returned function is called; `tick` errors go
// to `notify` (a 401 already asked for the key).
function polling(tick, notify) {
  let stopped = false;
  let timer = null;
  const loop = async () => {
    try {
      await tick();
    } catch (error) {
      notify(error.describe ? error.describe() : String(error));
    }
    if (!stopped) {
      timer = setTimeout(loop, POLL_MS);
    }
  };
  loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function runsTable(runs) {
  return el("table", { id: "runs-table", class: "grid" },
    el("thead", {}, el("tr", {}, ...["run", "status", "session", "user", "flow", "role",
                                     "tags", "created"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...runs.map((r) => el("tr", { "data-run-id": r.run_id },
      el("td", {}, link(r.run_id.slice(0, 12), "runs", r.run_id)),
      el("td", {}, badge(r.status)),
      el("td", {}, link(r.session, "sessions", r.session)),
      el("td", {}, r.user), el("td", {}, r.flow ?? ""), el("td", {}, r.role ?? ""),
      el("td", {}, (r.tags || []).join(", ")), el("td", {}, when(r.created_at))))));
}

// Pages of runs from `base` (a path with its query), newest first; a "More" button follows
// next_cursor. Every poll reloads the pages shown.
function pagedRuns(box, base, notify) {
  let pages = 1;
  let more = null;
  const tick = async () => {
    const runs = [];
    let cursor = null;
    for (let i = 0; i < pages; i += 1) {
      const sep = base.includes("?") ? "&" : "?";
      const page = await call("GET", cursor ? `${base}${sep}cursor=${encodeURIComponent(cursor)}`
                                            : base);
      runs.push(...page.runs);
      cursor = page.next_cursor;
      if (!cursor) {
        break;
      }
    }
    more = cursor;
    clear(box).append(
      runs.length ? runsTable(runs) : el("p", { class: "empty" }, "No runs."),
      more ? el("button", { type: "button", id: "more", onclick: () => {
        pages += 1;
        tick().catch((e) => notify(e.describe ? e.describe() : String(e)));
      } }, "More") : null);
  };
  return polling(tick, notify);
}

export function runsView(root, params, notify) {
  const filters = el("form", { id: "filters", class: "row" },
    el("label", {}, "status ", el("select", { name: "status" },
       ...STATUSES.map((s) => el("option", { value: s, selected: params.get("status") === s },
                                 s || "any")))),
    ...["user", "tag", "session"].map((name) => el("label", {}, `${name} `,
      el("input", { name, value: params.get(name) || "", size: 14 }))),
    el("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [name, value] of new FormData(filters)) {
      if (String(value).trim()) {
        query.set(name, String(value).trim());
      }
    }
    location.hash = `#/runs?${query}`;
  });
  const submit = el("form", { id: "submit-run", class: "row" },
    el("input", { name: "message", id: "message", placeholder: "Ask the agents…",
                  required: true, size: 48 }),
    el("input", { name: "session", id: "submit-session", placeholder: "session (optional)",
                  size: 16 }),
    el("button", { type: "submit", id: "submit" }, "Submit"));
  submit.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(submit);
    const body = { message: String(data.get("message")) };
    if (String(data.get("session")).trim()) {
      body.session = String(data.get("session")).trim();
    }
    try {
      const accepted = await call("POST", "/v1/runs", body);
      location.hash = `#/runs/${encodeURIComponent(accepted.run_id)}`;
    } catch (error) {
      notify(error.describe ? error.describe() : String(error));
    }
  });
  const box = el("div", { id: "runs" });
  clear(root).append(el("h2", {}, "Runs"), submit, filters, box);
  const query = new URLSearchParams();
  for (const name of ["status", "user", "tag", "session"]) {
    if (params.get(name)) {
      query.set(name, params.get(name));
    }
  }
  const qs = query.toString();
  return pagedRuns(box, `/v1/runs${qs ? "?" + qs : ""}`, notify);
}

export function sessionView(root, session, notify) {
  const state = el("div", { id: "session-state", class: "fields" });
  const box = el("div", { id: "runs" });
  clear(root).append(el("h2", {}, "Session ", el("code", {}, session)), state,
                     el("h3", {}, "Runs"), box);
  const path = `/v1/sessions/${encodeURIComponent(session)}`;
  const stopState = polling(async () => {
    const view = await call("GET", path);
    clear(state).append(
      el("div", { class: "field" }, el("span", { class: "name" }, "busy"),
         el("span", { "data-field": "busy" }, view.busy ? "yes" : "no")),
      el("div", { class: "field" }, el("span", { class: "name" }, "active"),
         view.active ? link(view.active.slice(0, 12), "runs", view.active) : "none"),
      el("div", { class: "field" }, el("span", { class: "name" }, "queued"),
         ...(view.queued || []).map((id) => link(id.slice(0, 12) + " ", "runs", id))),
      el("div", { class: "field" }, el("span", { class: "name" }, "last status"),
         view.last ? badge(view.last.status) : ""));
  }, notify);
  const stopRuns = pagedRuns(box, `${path}/runs`, notify);
  return () => {
    stopState();
    stopRuns();
  };
}

export function rolesView(root, notify) {
  const box = el("div", { id: "roles" });
  clear(root).append(el("h2", {}, "Roles"),
    el("p", { class: "muted" }, "lag: tasks not yet delivered; held: being worked on; "
       + "replicas: replicas free for work now (a busy replica asks for none)."), box);
  return polling(async () => {
    const body = await call("GET", "/v1/roles");
    const advice = body.scale
      ? el("p", { id: "scale", class: "scale" }, "Scale this role: ",
           el("strong", {}, body.scale))
      : el("p", { id: "scale", class: "muted" }, "No role has a backlog.");
    clear(box).append(advice,
      el("table", { id: "roles-table", class: "grid" },
        el("thead", {}, el("tr", {}, ...["role", "lag", "held", "redelivered", "replicas",
                                         "ready", "last active", "error"]
          .map((h) => el("th", {}, h)))),
        el("tbody", {}, ...body.roles.map((r) => el("tr", {
          "data-role": r.role, "data-scale": r.role === body.scale ? "true" : null,
          class: r.role === body.scale ? "scale" : (r.ready ? "" : "not-ready") },
          el("td", {}, r.role), el("td", { class: "num", "data-field": "lag" }, r.lag),
          el("td", { class: "num" }, r.held), el("td", { class: "num" }, r.redelivered),
          el("td", { class: "num", "data-field": "replicas" }, r.replicas),
          el("td", {}, r.ready ? "yes" : "no"), el("td", {}, when(r.last_active)),
          el("td", { class: "detail" }, r.error ?? ""))))));
  }, notify);
}

// Which report sections become charts: the label column and the value column.
const CHARTS = [
  { key: "outcomes", label: "flow", value: "requests", unit: "requests", skip: "(all)" },
  { key: "model_usage", label: "model", value: "calls", unit: "calls" },
  { key: "model_usage", label: "model", value: "tokens_out", unit: "tokens out",
    id: "model_tokens" },
  { key: "model_usage", label: "model", value: "cost_usd", unit: "$", id: "model_cost" },
  { key: "latency_by_actor", label: "actor", value: "p95_ms", unit: "ms p95" },
  { key: "user_usage", label: "user_id", value: "tokens_out", unit: "tokens out" },
  { key: "router_decisions", label: "source", value: "decisions", unit: "decisions" },
  { key: "errors", label: "kind", value: "events", unit: "events" },
];

function sectionTable(section) {
  return el("details", { class: "section", "data-section": section.key },
    el("summary", {}, `${section.title} (${section.rows.length})`),
    el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, ...section.columns.map((c) => el("th", {}, c)))),
      el("tbody", {}, ...section.rows.map((row) => el("tr", {},
        ...row.map((v) => el("td", {}, typeof v === "number" ? number(v, 6) : v ?? "")))))));
}

export function analyticsView(root, params, notify) {
  const since = params.get("since") || "24h";
  const choose = el("select", { id: "since" }, ...["1h", "24h", "7d", "30d"].map((s) =>
    el("option", { value: s, selected: s === since }, s)));
  choose.addEventListener("change", () => { location.hash = `#/analytics?since=${choose.value}`; });
  const status = el("p", { id: "analytics-status", class: "muted" }, "Exporting the events…");
  const charts = el("div", { id: "charts", class: "charts" });
  const tables = el("div", { id: "report-tables" });
  clear(root).append(el("h2", {}, "Analytics"), el("label", {}, "since ", choose), status,
                     charts, tables);
  call("GET", `/v1/analytics/report?since=${encodeURIComponent(since)}`).then((report) => {
    status.textContent = `${number(report.export.total)} events in the API's copy `
      + `(${number(report.export.added)} new); since ${when(report.from_time)}.`;
    status.setAttribute("data-ready", "true");
    const sections = new Map(report.sections.map((s) => [s.key, s]));
    for (const spec of CHARTS) {
      const section = sections.get(spec.key);
      if (!section || !section.rows.length) {
        continue;
      }
      const li = section.columns.indexOf(spec.label);
      const vi = section.columns.indexOf(spec.value);
      if (li < 0 || vi < 0) {
        continue;
      }
      const rows = section.rows.filter((r) => r[li] !== spec.skip);
      charts.append(barChart({
        key: spec.id || spec.key, title: `${section.title}: ${spec.value}`,
        labels: rows.map((r) => r[li] ?? "-"), values: rows.map((r) => r[vi]), unit: spec.unit,
      }));
    }
    if (!charts.childElementCount) {
      charts.append(el("p", { class: "empty" }, "No events in this window."));
    }
    tables.append(...report.sections.map(sectionTable));
  }).catch((error) => {
    status.textContent = "The report failed.";
    notify(error.describe ? error.describe() : String(error));
  });
  return () => {};
}
