// A run's Server-Sent Events read with fetch, so the key goes in a header (an EventSource
// cannot send one): the text/event-stream format parsed as the WHATWG HTML standard says
// (https://html.spec.whatwg.org/multipage/server-sent-events.html), and a dropped connection
// resumed with Last-Event-ID after the stream's `retry` delay.

import { authHeaders, errorOf } from "./api.js";

// Parses a text/event-stream: feed it text, it calls `dispatch({type, data, id})` per event.
export class EventStreamParser {
  constructor(dispatch) {
    this.dispatch = dispatch;
    this.buffer = "";
    this.type = "";
    this.data = "";
    this.lastId = "";
    this.retry = null;
  }

  feed(text) {
    this.buffer += text;
    let end;
    while ((end = this.buffer.indexOf("\n")) >= 0) {
      const line = this.buffer.slice(0, end).replace(/\r$/, "");
      this.buffer = this.buffer.slice(end + 1);
      this.line(line);
    }
  }

  line(line) {
    if (line === "") {
      this.flush();
      return;
    }
    if (line.startsWith(":")) {
      return; // a comment (keep-alive)
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) {
      value = value.slice(1);
    }
    if (field === "event") {
      this.type = value;
    } else if (field === "data") {
      this.data += value + "\n";
    } else if (field === "id" && !value.includes("\0")) {
      this.lastId = value;
    } else if (field === "retry" && /^\d+$/.test(value)) {
      this.retry = Number(value);
    }
  }

  flush() {
    if (this.data !== "") {
      this.dispatch({ type: this.type || "message", data: this.data.slice(0, -1),
                      id: this.lastId });
    }
    this.type = "";
    this.data = "";
  }
}

// Follow `path` until its `end` event or until `signal` aborts: `onEvent(type, data)` gets
// each event with its JSON data parsed. Reconnects with Last-Event-ID when the connection
// drops; `onState(text)` says so. Resolves when the stream ended; rejects on an API error.
export async function follow(path, { onEvent, onState = () => {}, signal }) {
  let lastId = "";
  let retryMs = 2000;
  for (;;) {
    const headers = authHeaders(lastId ? { "Last-Event-ID": lastId } : {});
    let ended = false;
    try {
      const response = await fetch(path, { headers, signal, cache: "no-store" });
      if (response.status === 204) {
        return; // resumed after `end`: nothing follows
      }
      if (!response.ok) {
        throw await errorOf(response);
      }
      onState("live");
      const parser = new EventStreamParser((event) => {
        lastId = event.id || lastId;
        if (event.type === "end") {
          ended = true;
        }
        let data = null;
        try {
          data = JSON.parse(event.data);
        } catch (_) {
          data = event.data;
        }
        onEvent(event.type, data);
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          break;
        }
        parser.feed(value);
        if (ended) {
          await reader.cancel();
          break;
        }
      }
      retryMs = parser.retry ?? retryMs;
    } catch (error) {
      if (signal.aborted || error.status) {
        throw error; // left the page, or the API refused: no retry
      }
    }
    if (ended) {
      onState("ended");
      return;
    }
    onState("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, retryMs));
    if (signal.aborted) {
      return;
    }
  }
}
