// A run's page: its state, answer and files, the Stop / Terminate / Retry / Approve / Deny
// buttons, its timeline followed live over Server-Sent Events and its span waterfall.

import { call, download } from "./api.js";
import { waterfall } from "./charts.js";
import { badge, clear, el, link, number, when } from "./dom.js";
import { follow } from "./sse.js";

const ACTIVE = new Set(["queued", "running", "awaiting_approval"]);
// Only a failed run is retried (POST .../retry goes on from its checkpoint).
const RETRYABLE = new Set(["failed"]);
// Event kinds shown highlighted: the moments an operator looks for.
const NOTABLE = {
  escalation: "escalation", escalated: "escalation", paused: "escalation",
  fallback: "fallback", model_error: "error", failed: "error", retry: "error",
  dead_letter: "error", tool_refused: "error",
  approval: "approval", approval_requested: "approval", approval_decided: "approval",
  approval_skipped: "approval",
};

function field(name, value) {
  return el("div", { class: "field" }, el("span", { class: "name" }, name),
            el("span", { class: "value", "data-field": name }, value ?? ""));
}

export function runView(root, runId, notify) {
  const abort = new AbortController();
  const events = [];
  let run = null;
  const head = el("section", { id: "run-head" });
  const actions = el("div", { id: "run-actions", class: "actions" });
  const answer = el("pre", { id: "run-answer", class: "answer" });
  const files = el("ul", { id: "run-files" });
  const stream = el("span", { id: "stream-state", class: "muted" }, "connecting");
  const timeline = el("tbody");
  const fall = el("div", { id: "waterfall-box" });
  clear(root).append(
    el("h2", {}, "Run ", el("code", {}, runId)), head, actions,
    el("h3", {}, "Answer"), answer, el("h3", {}, "Files"), files,
    el("h3", {}, "Timeline ", stream),
    el("table", { id: "timeline", class: "grid" },
       el("thead", {}, el("tr", {}, ...["time", "event", "actor", "model", "tokens in/out",
                                        "cost $", "ms", "detail"].map((h) => el("th", {}, h)))),
       timeline),
    el("h3", {}, "Span waterfall"), fall);

  function act(label, id, handler) {
    return el("button", { type: "button", id, onclick: async (event) => {
      event.target.disabled = true;
      try {
        await handler();
        await refresh();
      } catch (error) {
        notify(error.describe ? error.describe() : String(error));
      } finally {
        event.target.disabled = false;
      }
    } }, label);
  }

  function render() {
    clear(head).append(
      el("div", { class: "fields" },
         field("status", badge(run.status)), field("session", link(run.session, "sessions",
                                                                   run.session)),
         field("user", run.user), field("flow", run.flow), field("role", run.role),
         field("model", run.model),
         field("turn", run.max_turns ? `${run.turn}/${run.max_turns}` : ""),
         field("confidence", run.confidence), field("created", when(run.created_at)),
         field("tags", (run.tags || []).join(", ")),
         run.error ? field("error", `${run.error.code}: ${run.error.message}`) : null));
    head.setAttribute("data-status", run.status);
    clear(actions);
    if (ACTIVE.has(run.status)) {
      actions.append(act("Stop", "stop", () => call("POST", `/v1/runs/${runId}/stop`)));
      actions.append(act("Terminate", "terminate",
                         () => call("POST", `/v1/runs/${runId}/terminate`)));
    }
    if (RETRYABLE.has(run.status)) {
      actions.append(act("Retry", "retry", async () => {
        await call("POST", `/v1/runs/${runId}/retry`);
        location.reload(); // the same run again: its page and its event stream afresh
      }));
    }
    if (run.status === "awaiting_approval" && run.approval) {
      const approval = run.approval;
      const decide = (decision) => call(
        "POST", `/v1/runs/${runId}/approvals/${encodeURIComponent(approval.approval_id)}`,
        { decision });
      actions.append(el("div", { id: "approval", class: "approval" },
        el("strong", {}, `${approval.role} asks to run:`),
        el("ul", {}, ...approval.calls.map((c) => el("li", {}, el("code", {}, c.name), " ",
                                                     el("code", {}, c.arguments)))),
        el("span", { class: "muted" }, `decide before ${when(approval.expires_at)}`),
        act("Approve", "approve", () => decide("approve")),
        act("Deny", "deny", () => decide("deny"))));
    }
    answer.textContent = run.answer || "";
    clear(files).append(...(run.files || []).map((path) => el("li", {},
      el("button", { type: "button", class: "file", "data-path": path, onclick: () =>
        download(`/v1/runs/${runId}/files/${path.split("/").map(encodeURIComponent).join("/")}`,
                 path.split("/").pop()).catch((e) => notify(e.describe ? e.describe() : e)) },
         path))));
  }

  async function refresh() {
    run = await call("GET", `/v1/runs/${encodeURIComponent(runId)}`);
    render();
  }

  function addRow(type, data) {
    const exec = data && data.type === "execution_event";
    const kind = exec ? data.kind : type;
    const notable = NOTABLE[kind];
    const tokens = exec && (data.prompt_tokens || data.completion_tokens)
      ? `${number(data.prompt_tokens)}/${number(data.completion_tokens)}` : "";
    let detail = "";
    if (exec) {
      detail = [data.source, data.detail].filter(Boolean).join(": ");
    } else if (type === "progress") {
      detail = [data.stage, data.text].filter(Boolean).join(": ");
    } else if (type === "reply") {
      detail = data.text || "";
    } else if (type === "approval") {
      detail = (data.calls || []).map((c) => c.name).join(", ");
    } else if (type === "run") {
      detail = data.status;
    } else if (type === "end") {
      detail = data.reason || "";
    }
    timeline.append(el("tr", { "data-kind": kind, class: notable ? `notable ${notable}` : "" },
      el("td", {}, exec && data.at ? new Date(data.at * 1000).toLocaleTimeString() : ""),
      el("td", {}, el("span", { class: "kind" }, kind)),
      el("td", {}, exec ? data.actor : ""), el("td", {}, exec ? data.model : ""),
      el("td", { class: "num", "data-tokens": tokens }, tokens),
      el("td", { class: "num" }, exec && data.cost_usd ? number(data.cost_usd, 6) : ""),
      el("td", { class: "num" }, exec && data.duration_ms ? number(data.duration_ms, 1) : ""),
      el("td", { class: "detail" }, String(detail).slice(0, 300))));
  }

  let drawn = 0;
  function redrawWaterfall() {
    if (events.length !== drawn) {
      drawn = events.length;
      clear(fall).append(waterfall(events));
    }
  }
  const timer = setInterval(redrawWaterfall, 1000);

  refresh().then(() => follow(`/v1/runs/${encodeURIComponent(runId)}/events`, {
    signal: abort.signal,
    onState: (state) => {
      stream.textContent = state;
      stream.setAttribute("data-state", state);
    },
    onEvent: (type, data) => {
      addRow(type, data);
      if (type === "run" && data && data.status) {
        run = data;
        render();
      } else if (data && data.type === "execution_event") {
        events.push(data);
      } else if (type === "end") {
        redrawWaterfall();
        refresh();
      }
    },
  })).then(() => redrawWaterfall()).catch((error) => {
    if (!abort.signal.aborted) {
      notify(error.describe ? error.describe() : String(error));
    }
  });

  return () => {
    abort.abort();
    clearInterval(timer);
  };
}
