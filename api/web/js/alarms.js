// A device's alarms: the active ones first (worst severity first), then recent
// raise/clear events, each with its value and threshold.  Kept current from the
// device's live stream (`alarm` events) and re-read from GET /api/v1/alarms.

import { getJSON } from "./api.js";
import { alarmLabel, el, fmt, localTime, SEVERITIES, severity } from "./format.js";

const RECENT_SHOWN = 60;

export const alarmKey = (e) => `${e.kind}/${e.channel ?? "-"}`;

export class AlarmPanel {
  constructor(container, { onPickChannel, archive } = {}) {
    this.container = container;
    this.onPickChannel = onPickChannel || (() => {});
    this.archive = archive || null; // set when the trace archive exists
    this.active = new Map();
    this.recent = [];
    this.listeners = [];
  }

  onChange(fn) {
    this.listeners.push(fn);
  }

  async load(device) {
    this.device = device;
    const body = await getJSON(`/alarms?device=${encodeURIComponent(device)}&limit=${RECENT_SHOWN}`);
    this.active = new Map(body.active.map((e) => [alarmKey(e), e]));
    this.recent = body.recent;
    this.changed();
  }

  /** An `alarm` event from the live stream. */
  add(e) {
    if (e.active) this.active.set(alarmKey(e), e);
    else this.active.delete(alarmKey(e));
    this.recent.unshift(e);
    if (this.recent.length > RECENT_SHOWN) this.recent.length = RECENT_SHOWN;
    this.changed();
  }

  changed() {
    for (const fn of this.listeners) fn(this.active);
    this.render();
  }

  render() {
    const active = [...this.active.values()].sort(
      (a, b) => SEVERITIES.indexOf(severity(a.kind)) - SEVERITIES.indexOf(severity(b.kind)) ||
        (a.channel ?? 0) - (b.channel ?? 0),
    );
    const row = (e, cls) =>
      el(
        "li",
        { class: `${cls} sev-${severity(e.kind)}`, dataset: { channel: e.channel ?? "", kind: e.kind } },
        el("span", { class: "sev" }, e.active === false ? "clear" : severity(e.kind)),
        el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); if (e.channel != null) this.onPickChannel(e.channel); } }, alarmLabel(e)),
        el("span", { class: "num" }, `${fmt(e.value, 2)} / ${fmt(e.threshold, 2)}`),
        el("time", {}, localTime(e.time)),
        this.archive ? this.archive.linkFor(e) : null,
      );
    this.container.replaceChildren(
      el("h3", {}, `Active (${active.length})`),
      active.length ? el("ul", { class: "alarm-list active-alarms" }, ...active.map((e) => row(e, "active"))) : el("p", { class: "hint" }, "No active alarm."),
      el("h3", {}, "Recent events"),
      this.recent.length
        ? el("ul", { class: "alarm-list recent-alarms" }, ...this.recent.map((e) => row(e, e.active ? "raised" : "cleared")))
        : el("p", { class: "hint" }, "No alarm event stored."),
    );
  }
}
