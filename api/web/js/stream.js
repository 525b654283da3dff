// Server-Sent Events over fetch (not EventSource): fetch can send the API key
// header when reads require one, and lets us see the HTTP status of a refusal.
//
// The stream reconnects by itself (after a service restart, a network blip) with
// a growing delay, and reports its state: "connecting", "live", "stale" (connected
// but nothing received for `staleAfterMs`), "down" (retrying).

import { API, authHeaders } from "./api.js";

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5000;

export class LiveStream {
  /**
   * @param {string} path  under /api/v1, e.g. "/stream" or "/devices/sim1/stream"
   * @param {(event: string, data: any) => void} onEvent
   * @param {(state: string, detail?: string) => void} onState
   * @param {number} staleAfterMs  silence after which the data is called stale
   */
  constructor(path, onEvent, onState, staleAfterMs = 5000) {
    this.path = path;
    this.onEvent = onEvent;
    this.onState = onState;
    this.staleAfterMs = staleAfterMs;
    this.state = "";
    this.lastEventAt = 0;
    this.controller = null;
    this.stopped = false;
    this.retryMs = RETRY_MIN_MS;
    this.timer = setInterval(() => this.checkStale(), 1000);
    this.run();
  }

  setState(state, detail) {
    if (state !== this.state || detail) {
      this.state = state;
      this.onState(state, detail);
    }
  }

  checkStale() {
    if (this.state === "live" && performance.now() - this.lastEventAt > this.staleAfterMs) {
      this.setState("stale");
    }
  }

  async run() {
    while (!this.stopped) {
      this.setState(this.state === "" ? "connecting" : this.state);
      let detail = "";
      try {
        this.controller = new AbortController();
        const resp = await fetch(API + this.path, {
          headers: { Accept: "text/event-stream", ...authHeaders() },
          signal: this.controller.signal,
          cache: "no-store",
        });
        if (!resp.ok) {
          detail = `HTTP ${resp.status}`;
          try {
            detail = (await resp.json()).detail || detail;
          } catch {
            /* not JSON */
          }
        } else {
          this.retryMs = RETRY_MIN_MS;
          this.lastEventAt = performance.now();
          this.setState("live");
          await this.read(resp.body);
          detail = "the service closed the stream";
        }
      } catch (err) {
        if (this.stopped) return;
        detail = String(err.message || err);
      }
      if (this.stopped) return;
      this.setState("down", detail);
      await new Promise((r) => setTimeout(r, this.retryMs));
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    }
  }

  /** Parse the text/event-stream body (WHATWG HTML, "Server-sent events"). */
  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = "message";
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      // Split once per chunk (a chunk may hold hundreds of events at 300 devices).
      const lines = (buffer + value).split("\n");
      buffer = lines.pop();
      for (const raw of lines) {
        const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
        if (line === "") {
          if (data.length) this.dispatch(event, data.join("\n"));
          event = "message";
          data = [];
        } else if (line.startsWith(":")) {
          this.lastEventAt = performance.now(); // keep-alive comment
        } else {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event = val;
          else if (field === "data") data.push(val);
        }
      }
    }
  }

  dispatch(event, text) {
    this.lastEventAt = performance.now();
    if (this.state !== "live") this.setState("live");
    let payload;
    try {
      payload = JSON.parse(text);
    } catch {
      return;
    }
    this.onEvent(event, payload);
  }

  close() {
    this.stopped = true;
    clearInterval(this.timer);
    if (this.controller) this.controller.abort();
  }
}
