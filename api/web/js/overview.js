// The overview: one row per device with its state, age of the last scan, total
// power, lit channels, min OSNR, tilt and active alarms by severity.
//
// Per-scan values come from the one all-devices summary stream (GET /api/v1/stream);
// states from GET /api/v1/devices and active alarms from GET /api/v1/alarms, re-read
// every few seconds.  Rows are created once per device and updated in place, at
// most once per animation frame, so 300 devices at 1 scan/s stay smooth.

import { alarmKey } from "./alarms.js";
import { age, el, fmt, SEVERITIES, severity } from "./format.js";

// Redraws of the table per second at most: 4 (values arrive at about 1 Hz per device).
const RENDER_EVERY_MS = 250;

export class Overview {
  constructor(table, { onOpen } = {}) {
    this.table = table;
    this.body = table.tBodies[0];
    this.onOpen = onOpen || (() => {});
    this.devices = new Map(); // id -> DeviceOut
    this.summaries = new Map(); // id -> SummaryOut
    this.active = new Map(); // "device/kind/channel" -> AlarmEventOut
    this.rows = new Map();
    this.dirty = new Set();
    this.frame = 0;
    this.counts = new Map(); // device -> active alarms by severity
    this.received = 0; // summaries received (shown as data-summaries, for benchmarks)
  }

  setDevices(list) {
    const ids = new Set(list.map((d) => d.id));
    for (const id of [...this.rows.keys()]) {
      if (!ids.has(id)) {
        this.rows.get(id).tr.remove();
        this.rows.delete(id);
      }
    }
    for (const d of list) {
      this.devices.set(d.id, d);
      this.touch(d.id);
    }
  }

  setActiveAlarms(list) {
    this.active = new Map(list.map((e) => [`${e.device}/${alarmKey(e)}`, e]));
    this.counts = new Map();
    for (const e of this.active.values()) this.count(e.device, severity(e.kind), 1);
    for (const id of this.rows.keys()) this.touch(id);
  }

  count(device, sev, delta) {
    let c = this.counts.get(device);
    if (!c) this.counts.set(device, (c = { critical: 0, major: 0, minor: 0 }));
    c[sev] += delta;
  }

  summary(s) {
    this.received++;
    this.summaries.set(s.device, s);
    for (const e of s.alarms || []) this.alarm(e);
    this.touch(s.device);
  }

  alarm(e) {
    const key = `${e.device}/${alarmKey(e)}`;
    const had = this.active.has(key);
    if (e.active && !had) {
      this.active.set(key, e);
      this.count(e.device, severity(e.kind), 1);
    } else if (!e.active && had) {
      this.active.delete(key);
      this.count(e.device, severity(e.kind), -1);
    }
    this.touch(e.device);
  }

  /** Mark a row for the next redraw: at most every RENDER_EVERY_MS, in an animation
   *  frame.  Each redraw lays the table out once, however many rows changed (300
   *  devices at 1 scan/s would otherwise cost a layout per frame). */
  touch(id) {
    this.dirty.add(id);
    if (!this.frame) {
      this.frame = setTimeout(() => requestAnimationFrame(() => this.flush()), RENDER_EVERY_MS);
    }
  }

  /** Once a second: ages and staleness only (the rest changes with data). */
  tick() {
    const now = Date.now();
    for (const [id, r] of this.rows) this.renderAge(id, r, now);
  }

  flush() {
    this.frame = 0;
    for (const id of this.dirty) this.render(id);
    this.dirty.clear();
    this.renderTotals();
    this.table.dataset.summaries = String(this.received);
  }

  /** One line above the table: devices by state, active alarms by severity. */
  renderTotals() {
    const out = document.getElementById("overview-totals");
    if (!out) return;
    const states = {};
    for (const d of this.devices.values()) states[d.state] = (states[d.state] || 0) + 1;
    const sev = { critical: 0, major: 0, minor: 0 };
    for (const c of this.counts.values()) for (const k of SEVERITIES) sev[k] += c[k];
    const key = JSON.stringify([this.devices.size, states, sev]);
    if (key === this.totalsKey) return;
    this.totalsKey = key;
    out.replaceChildren(
      el("span", {}, `${this.devices.size} devices: `),
      ...Object.entries(states).map(([s, n]) => el("span", { class: `state state-${s}` }, `${n} ${s}`)),
      el("span", {}, " · active alarms: "),
      ...SEVERITIES.map((k) => el("span", { class: `chip sev-${k}` }, `${sev[k]} ${k}`)),
    );
  }

  row(id) {
    let r = this.rows.get(id);
    if (r) return r;
    const cell = (cls) => el("td", { class: cls });
    r = {
      name: el("a", { href: `#/device/${encodeURIComponent(id)}` }, id),
      state: el("span", { class: "state" }),
      age: cell("num age"),
      mode: cell("mode"),
      total: cell("num"),
      lit: cell("num"),
      osnr: cell("num"),
      tilt: cell("num"),
      alarms: cell("alarms"),
    };
    r.tr = el("tr", { class: "device-row", dataset: { device: id }, ondblclick: () => this.onOpen(id) },
      el("td", {}, r.name), el("td", {}, r.state), r.age, r.mode, r.total, r.lit, r.osnr, r.tilt, r.alarms);
    // Keep rows sorted by id (stable for a technician's eye).
    const after = [...this.rows.keys()].filter((k) => k > id).sort()[0];
    this.body.insertBefore(r.tr, after ? this.rows.get(after).tr : null);
    this.rows.set(id, r);
    return r;
  }

  renderAge(id, r, now) {
    const d = this.devices.get(id);
    const s = this.summaries.get(id);
    const last = s ? s.time : d && d.last_scan_time;
    setText(r.age, age(last, now));
    const staleS = Math.max(10, 3 * ((d && d.interval_s) || 1));
    r.tr.classList.toggle("stale", !last || (now - Date.parse(last)) / 1000 > staleS);
  }

  render(id) {
    const d = this.devices.get(id);
    if (!d) return;
    const s = this.summaries.get(id);
    const r = this.row(id);
    setText(r.state, d.state);
    r.state.className = `state state-${d.state}`;
    this.renderAge(id, r, Date.now());
    setText(r.mode, d.mode);
    setText(r.total, fmt(s && s.total_power_dbm, 2));
    setText(r.lit, s ? `${s.lit_channels}/${s.channels}` : "—");
    setText(r.osnr, fmt(s && s.min_osnr_db, 1));
    setText(r.tilt, fmt(s && s.tilt_db, 2));
    const counts = this.counts.get(id) || { critical: 0, major: 0, minor: 0 };
    const key = SEVERITIES.map((k) => counts[k]).join("/");
    if (r.alarmKey !== key) {
      r.alarmKey = key;
      r.alarms.replaceChildren(
        ...SEVERITIES.filter((k) => counts[k]).map((k) =>
          el("span", { class: `chip sev-${k}`, title: `${counts[k]} ${k}` }, `${counts[k]} ${k}`)),
      );
      r.tr.dataset.alarms = String(counts.critical + counts.major + counts.minor);
    }
  }
}

/** Change a node's text only when it differs (no needless layout work). */
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}
