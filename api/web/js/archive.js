// The trace archive (its own issue): a timeline of stored traces to pick one, and a
// reference trace overlaid on the live spectrum.  The panel probes the archive
// routes and hides itself when this service does not have them (404).
//
// Shapes are read defensively: a list (or {traces: [...]}) of items with an id
// (`id` or `trace_id`) and a `time`; a stored trace shaped like GET .../trace.

import { API, getJSON, getOptional } from "./api.js";
import { el, localTime } from "./format.js";

let archiveRoutes = null;

/** Whether this service has the trace archive routes (read once from /openapi.json). */
async function hasArchive() {
  if (archiveRoutes === null) {
    archiveRoutes = fetch("/openapi.json")
      .then((r) => (r.ok ? r.json() : { paths: {} }))
      .then((doc) => `${API}/devices/{device_id}/traces` in (doc.paths || {}))
      .catch(() => false);
  }
  return archiveRoutes;
}

export class ArchivePanel {
  constructor(panel, list, { onReference } = {}) {
    this.panel = panel;
    this.list = list;
    this.onReference = onReference || (() => {});
    this.available = false;
    this.items = [];
  }

  async load(device) {
    this.device = device;
    // Ask the API's own description whether the routes exist (no 404 in the console).
    this.available = await hasArchive();
    let body = null;
    if (this.available) {
      try {
        body = await getOptional(`/devices/${encodeURIComponent(device)}/traces`);
      } catch {
        body = null;
      }
    }
    this.available = body !== null;
    this.panel.hidden = !this.available;
    if (!this.available) return;
    this.items = Array.isArray(body) ? body : body.traces || body.items || [];
    this.render();
  }

  idOf(item) {
    return item.id ?? item.trace_id;
  }

  render() {
    this.list.replaceChildren(
      ...this.items.slice(0, 200).map((item) =>
        el("li", {}, el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); this.pick(item); } },
          localTime(item.time)), item.reason ? el("span", { class: "hint" }, ` ${item.reason}`) : null)),
    );
  }

  async pick(item) {
    const dev = encodeURIComponent(this.device);
    const trace = await getJSON(`/devices/${dev}/traces/${encodeURIComponent(this.idOf(item))}`);
    this.onReference(trace, item);
  }

  /** A link next to an alarm event to the stored trace nearest to its time. */
  linkFor(event) {
    if (!this.available || !this.items.length) return null;
    const t = Date.parse(event.time);
    let best = this.items[0];
    for (const item of this.items) {
      if (Math.abs(Date.parse(item.time) - t) < Math.abs(Date.parse(best.time) - t)) best = item;
    }
    return el("a", { href: "#", class: "trace-link", onclick: (ev) => { ev.preventDefault(); this.pick(best); } }, "spectrum");
  }
}
