// The trace archive: a timeline of the device's stored traces over the last day
// (periodic / alarm / manual in their own colours), to pick one and draw it on the
// spectrum beside the live trace; and, for the alarms panel, a link to the spectrum
// stored at an event's time (GET .../trace?at=).
//
// Routes: GET .../traces?start= (listing, oldest first; re-read every 10 s from the
// newest time known), GET .../traces/{id}, GET .../trace?at=ISO8601.  The panel asks
// /openapi.json once whether the service has them, and hides itself when not (so the
// console makes no request that 404s on a service without the archive).

import { API, getJSON, getOptional } from "./api.js";
import { el, localTime } from "./format.js";

let archiveRoutes = null;

/** Whether this service has the trace archive routes (read once from /openapi.json). */
export async function hasArchive() {
  if (archiveRoutes === null) {
    archiveRoutes = fetch("/openapi.json")
      .then((r) => (r.ok ? r.json() : { paths: {} }))
      .then((doc) => `${API}/devices/{device_id}/traces` in (doc.paths || {}))
      .catch(() => false);
  }
  return archiveRoutes;
}

/** The traces read (the last day), the timeline's shortest span, and how often it is re-read. */
const WINDOW_MS = 24 * 3600 * 1000;
const MIN_SPAN_MS = 10 * 60 * 1000;
const REFRESH_MS = 10_000;
/** Most rows in the list under the timeline (the newest). */
const LISTED = 100;
/** GET .../trace?at= answers the nearest stored trace within this many seconds (its default). */
const AT_WITHIN_S = 300;

/** "periodic", "alarm" or "manual": why a trace was kept (reason alarm:<kind>:<channel>). */
export function kindOf(reason) {
  if (reason && reason.startsWith("alarm")) return "alarm";
  return reason === "manual" ? "manual" : "periodic";
}

/** "15 min", "6 h": a time span for the strip's axis. */
function spanLabel(ms) {
  const min = ms / 60000;
  return min < 90 ? `${+min.toFixed(1)} min` : `${+(min / 60).toFixed(1)} h`;
}

export const KIND_COLOURS = { periodic: "#8b949e", alarm: "#f85149", manual: "#58a6ff" };

export class ArchivePanel {
  /**
   * panel: the panel element (hidden without the archive); onPick(trace|null): draw or
   * remove a stored trace; onChange(): the listing changed (new traces, selection).
   */
  constructor(panel, { onPick, onChange } = {}) {
    this.panel = panel;
    this.strip = panel.querySelector("#archive-strip");
    this.axis = panel.querySelector("#archive-axis");
    this.list = panel.querySelector("#archive-list");
    this.filter = panel.querySelector("#archive-filter");
    this.status = panel.querySelector("#archive-status");
    this.onPick = onPick || (() => {});
    this.onChange = onChange || (() => {});
    this.available = false;
    this.items = [];
    this.byId = new Map();
    this.selectedId = null;
    this.timer = null;
    // The panel's elements outlive this device view: listeners go with close().
    this.listening = new AbortController();
    const signal = this.listening.signal;
    this.filter.addEventListener("change", () => this.renderList(), { signal });
    this.strip.addEventListener("click", (ev) => this.pickAtX(ev.offsetX), { signal });
    this.list.replaceChildren();
    this.say("");
    this.resizer = new ResizeObserver(() => this.drawStrip());
    this.resizer.observe(this.strip.parentElement);
  }

  get path() {
    return `/devices/${encodeURIComponent(this.device)}`;
  }

  async load(device) {
    this.device = device;
    this.available = await hasArchive();
    if (this.available) {
      try {
        const since = new Date(Date.now() - WINDOW_MS).toISOString();
        const body = await getOptional(`${this.path}/traces?start=${encodeURIComponent(since)}&limit=10000`);
        this.available = body !== null;
        if (body) this.merge(body.traces);
      } catch (err) {
        this.say(`stored traces: ${err.message}`);
      }
    }
    this.panel.hidden = !this.available;
    if (!this.available || this.closed) return;
    this.render();
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  /** Read the traces stored since the newest one known (the listing includes its start). */
  async refresh() {
    const newest = this.items[this.items.length - 1];
    const since = newest ? newest.time : new Date(Date.now() - WINDOW_MS).toISOString();
    try {
      const body = await getJSON(`${this.path}/traces?start=${encodeURIComponent(since)}&limit=10000`);
      const before = this.items.length;
      this.merge(body.traces);
      this.prune();
      if (this.items.length !== before) this.render();
    } catch (err) {
      this.say(`stored traces: ${err.message}`);
    }
  }

  merge(traces) {
    for (const t of traces) {
      if (this.byId.has(t.id)) continue;
      this.byId.set(t.id, t);
      this.items.push(t);
    }
    this.items.sort((a, b) => Date.parse(a.time) - Date.parse(b.time) || a.id - b.id);
  }

  /** Forget traces older than the window (the page stays open for days). */
  prune() {
    const limit = Date.now() - WINDOW_MS;
    while (this.items.length && Date.parse(this.items[0].time) < limit) {
      this.byId.delete(this.items.shift().id);
    }
  }

  newest() {
    return this.items[this.items.length - 1] || null;
  }

  say(text) {
    this.status.textContent = text;
  }

  render() {
    this.drawStrip();
    this.renderList();
    const counts = { periodic: 0, alarm: 0, manual: 0 };
    for (const t of this.items) counts[kindOf(t.reason)]++;
    this.say(
      `${this.items.length} stored in the last 24 h: ${counts.periodic} periodic, ` +
        `${counts.alarm} alarm, ${counts.manual} manual`,
    );
    this.onChange();
  }

  /** The stored traces as a strip from the oldest (at least 10 min, at most 24 h ago) to now:
   * one tick per trace, coloured by why it was kept. */
  drawStrip() {
    const canvas = this.strip;
    const w = canvas.parentElement.clientWidth;
    if (w <= 0) return;
    const dpr = window.devicePixelRatio || 1;
    const h = 28;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    canvas.style.width = `${w}px`;
    canvas.style.height = `${h}px`;
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    ctx.fillStyle = "#0d1117";
    ctx.fillRect(0, 0, w, h);
    const end = Date.now();
    const oldest = this.items.length ? Date.parse(this.items[0].time) : end;
    const span = Math.min(WINDOW_MS, Math.max(MIN_SPAN_MS, end - oldest));
    this.stripRange = [end - span, end];
    ctx.fillStyle = "rgba(139,148,158,0.35)";
    for (let i = 0; i <= 4; i++) ctx.fillRect(Math.round((i / 4) * (w - 1)), h - 4, 1, 4);
    this.axis.replaceChildren(
      ...[4, 3, 2, 1].map((i) => el("span", {}, `−${spanLabel((span * i) / 4)}`)),
      el("span", {}, "now"),
    );
    // Periodic first, so alarm and manual ticks are drawn over them.
    for (const kind of ["periodic", "manual", "alarm"]) {
      ctx.fillStyle = KIND_COLOURS[kind];
      const top = kind === "periodic" ? 10 : 2;
      for (const t of this.items) {
        if (kindOf(t.reason) !== kind) continue;
        ctx.fillRect(Math.round(this.xOf(t.time, w)), top, 1.5, h - 6 - top);
      }
    }
    const sel = this.byId.get(this.selectedId);
    if (sel) {
      ctx.strokeStyle = "#f2cc60";
      ctx.lineWidth = 2;
      const x = this.xOf(sel.time, w);
      ctx.strokeRect(x - 3, 1, 7, h - 6);
    }
  }

  xOf(time, w) {
    const [a, b] = this.stripRange;
    return ((Date.parse(time) - a) / (b - a)) * (w - 1);
  }

  /** A click on the strip picks the stored trace nearest that time. */
  pickAtX(x) {
    if (!this.items.length || !this.stripRange) return;
    const w = this.strip.clientWidth;
    const [a, b] = this.stripRange;
    const t = a + (x / Math.max(1, w - 1)) * (b - a);
    const best = this.nearest(t);
    if (best) this.pick(best.id);
  }

  nearest(tMs) {
    let best = null;
    for (const item of this.items) {
      if (!best || Math.abs(Date.parse(item.time) - tMs) < Math.abs(Date.parse(best.time) - tMs)) best = item;
    }
    return best;
  }

  renderList() {
    const want = this.filter.value;
    const shown = [];
    for (let i = this.items.length - 1; i >= 0 && shown.length < LISTED; i--) {
      const t = this.items[i];
      if (want === "all" || kindOf(t.reason) === want) shown.push(t);
    }
    this.list.replaceChildren(
      ...shown.map((t) =>
        el(
          "li",
          {
            class: `kind-${kindOf(t.reason)}${t.id === this.selectedId ? " selected" : ""}`,
            dataset: { traceId: t.id, kind: kindOf(t.reason) },
          },
          el("a", { href: `${API}${this.path}/traces/${t.id}`, onclick: (ev) => { ev.preventDefault(); this.pick(t.id); } },
            localTime(t.time)),
          el("span", { class: "reason" }, t.reason),
          el("span", { class: "hint" }, ` ${t.points} pts`),
        ),
      ),
    );
  }

  /** Fetch a stored trace by id and draw it. */
  async pick(id) {
    try {
      const trace = await getJSON(`${this.path}/traces/${encodeURIComponent(id)}`);
      this.show(trace);
    } catch (err) {
      this.say(`trace ${id}: ${err.message}`);
    }
  }

  /** Step to the previous (-1) or next (+1) stored trace from the one shown. */
  step(delta) {
    if (!this.items.length) return;
    const i = this.items.findIndex((t) => t.id === this.selectedId);
    const j = i < 0 ? this.items.length - 1 : Math.min(Math.max(0, i + delta), this.items.length - 1);
    this.pick(this.items[j].id);
  }

  /** Fetch the spectrum stored nearest `time` (GET .../trace?at=) and draw it. */
  async openAt(time) {
    try {
      const trace = await getJSON(`${this.path}/trace?at=${encodeURIComponent(time)}`);
      this.show(trace);
    } catch (err) {
      this.say(`spectrum at ${localTime(time)}: ${err.message}`);
    }
  }

  show(trace) {
    if (trace && !this.byId.has(trace.id)) this.merge([trace]);
    this.selectedId = trace ? trace.id : null;
    this.onPick(trace);
    this.drawStrip();
    this.renderList();
    this.onChange();
  }

  clear() {
    this.show(null);
  }

  /** A link next to an alarm event to the spectrum stored at its time; none when the
   * listing shows that nothing was stored near it (the link would answer 404). */
  linkFor(event) {
    if (!this.available || !event.time) return null;
    const t = Date.parse(event.time);
    const known = t >= Date.now() - WINDOW_MS;
    const near = this.nearest(t);
    if (known && (!near || Math.abs(Date.parse(near.time) - t) > AT_WITHIN_S * 1000)) return null;
    const href = `${API}${this.path}/trace?at=${encodeURIComponent(event.time)}`;
    return el("a", {
      href,
      class: "trace-link",
      title: "open the spectrum stored at this moment",
      onclick: (ev) => { ev.preventDefault(); this.openAt(event.time); },
    }, "spectrum");
  }

  close() {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.resizer.disconnect();
    this.listening.abort();
  }
}
