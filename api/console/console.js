// The console's entry point: asks for the API key once (kept in sessionStorage), then shows
// the view the address's #/... names; a 401 asks for the key again.

import { forgetKey, key, onUnauthorized, setKey } from "./api.js";
import { runView } from "./run.js";
import { analyticsView, rolesView, runsView, sessionView } from "./views.js";

const view = document.getElementById("view");
const notice = document.getElementById("notice");
const overlay = document.getElementById("key-overlay");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key-input");
const keyReason = document.getElementById("key-reason");
let dispose = () => {};

function notify(text) {
  notice.textContent = String(text);
  notice.hidden = false;
}

function askKey(reason) {
  dispose();
  dispose = () => {};
  if (reason) {
    keyReason.textContent = reason;
  }
  overlay.hidden = false;
  keyInput.value = "";
  keyInput.focus();
}

function route() {
  dispose();
  dispose = () => {};
  notice.hidden = true;
  if (!key()) {
    askKey();
    return;
  }
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("current", a.getAttribute("href") === `#/${parts[0] || "runs"}`);
  }
  if (parts[0] === "runs" && parts[1]) {
    dispose = runView(view, parts[1], notify);
  } else if (parts[0] === "sessions" && parts[1]) {
    dispose = sessionView(view, parts[1], notify);
  } else if (parts[0] === "roles") {
    dispose = rolesView(view, notify);
  } else if (parts[0] === "analytics") {
    dispose = analyticsView(view, params, notify);
  } else {
    dispose = runsView(view, params, notify);
  }
}

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!keyInput.value.trim()) {
    return;
  }
  setKey(keyInput.value);
  keyInput.value = "";
  overlay.hidden = true;
  route();
});
document.getElementById("change-key").addEventListener("click", () => {
  forgetKey();
  askKey("Enter the API key to use.");
});
onUnauthorized(askKey);
window.addEventListener("hashchange", route);
route();
