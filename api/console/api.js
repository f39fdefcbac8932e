// Calls to the HTTP API with the key the person entered: `Authorization: Bearer <key>` on
// every request; a 401 forgets the key and asks again, other errors carry the API's
// {"error": {"code", "message"}}.

const KEY = "switchboard.apiKey";
let askForKey = () => {};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  // A sentence for people: a 403 says what the key may not do (the API names the scope).
  describe() {
    if (this.status === 403) {
      return `Not allowed with this key (${this.code}): ${this.message}`;
    }
    return `${this.status} ${this.code}: ${this.message}`;
  }
}

export function key() {
  return sessionStorage.getItem(KEY) || "";
}

export function setKey(value) {
  sessionStorage.setItem(KEY, value.trim());
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

// `handler(reason)` shows the key prompt; called on every 401.
export function onUnauthorized(handler) {
  askForKey = handler;
}

export function authHeaders(extra = {}) {
  return { ...extra, Authorization: `Bearer ${key()}` };
}

// The ApiError of a failed response (its JSON error body, else the status text).
export async function errorOf(response) {
  let code = "http_error";
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.error) {
      code = String(body.error.code);
      message = String(body.error.message);
    }
  } catch (_) {
    // not JSON: keep the status text
  }
  if (response.status === 401) {
    forgetKey();
    askForKey("The API refused the key: enter it again.");
  }
  return new ApiError(response.status, code, message);
}

// One JSON call; `body` (an object) goes as application/json. Resolves to the JSON answer.
export async function call(method, path, body = undefined) {
  const init = { method, headers: authHeaders() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    throw await errorOf(response);
  }
  return response.status === 204 ? null : response.json();
}

// Fetch a file with the key and hand it to the browser as a download (a blob URL).
export async function download(path, name) {
  const response = await fetch(path, { headers: authHeaders() });
  if (!response.ok) {
    throw await errorOf(response);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
