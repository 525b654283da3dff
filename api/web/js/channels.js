// Channel bars: one row per channel with its power and OSNR as bars, coloured by the
// thresholds in force (GET /api/v1/thresholds), its quality flag and its active
// alarms.  Rows are built once and updated in place, so a reading per second
// creates no DOM nodes.  Hover or tap a row for all its fields in the detail box.

import { alarmLabel, el, fmt, severity } from "./format.js";
import { wavelengthNm } from "./optics.js";

// Bar scales: the span of an OCM's channel input range, and of useful OSNR.
const POWER_SCALE_DBM = [-45, 5];
const OSNR_SCALE_DB = [0, 40];

// Short quality labels for the table (the detail box shows the API's own).
const QUALITY_SHORT = { ok: "", dark: "dark", noise_unresolved: "unresolved", power_only: "power only" };

function fraction(value, [lo, hi]) {
  return Math.min(1, Math.max(0, (value - lo) / (hi - lo)));
}

export class ChannelTable {
  constructor(table, detail, { onSelect } = {}) {
    this.table = table;
    this.body = table.tBodies[0];
    this.detail = detail;
    this.onSelect = onSelect || (() => {});
    this.rows = new Map();
    this.reading = null;
    this.thresholds = null;
    this.alarms = new Map();
    this.selected = null;
    this.hovered = null;
    this.unit = "thz";
  }

  build(channels) {
    this.body.replaceChildren();
    this.rows.clear();
    for (const c of channels) {
      const cells = {
        freq: el("td", { class: "num" }),
        power: el("td", { class: "barcell" }),
        osnr: el("td", { class: "barcell" }),
        offset: el("td", { class: "num" }),
        quality: el("td", { class: "q" }),
        alarm: el("td", { class: "alarmcell" }),
      };
      for (const k of ["power", "osnr"]) {
        cells[k + "Fill"] = el("div", { class: "fill" });
        cells[k + "Mark"] = el("div", { class: "mark" });
        cells[k + "Text"] = el("span", { class: "val" });
        cells[k].append(el("div", { class: "bar" }, cells[k + "Fill"], cells[k + "Mark"]), cells[k + "Text"]);
      }
      const tr = el(
        "tr",
        {
          class: "chan-row",
          dataset: { channel: String(c.channel) },
          onmouseenter: () => this.hover(c.channel),
          onmouseleave: () => this.hover(null),
          onclick: () => this.onSelect(c.channel),
        },
        el("td", { class: "num ch" }, String(c.channel)),
        cells.freq,
        cells.power,
        cells.osnr,
        cells.offset,
        cells.quality,
        cells.alarm,
      );
      this.rows.set(c.channel, { tr, ...cells });
      this.body.append(tr);
    }
  }

  setUnit(unit) {
    this.unit = unit;
    this.table.querySelector("th.freq").textContent = unit === "nm" ? "λ nm" : "THz";
    if (this.reading) this.update(this.reading);
  }

  setThresholds(t) {
    this.thresholds = t;
    if (this.reading) this.update(this.reading);
  }

  /** Active alarms of this device: Map "kind/channel" -> AlarmEventOut. */
  setAlarms(active) {
    this.alarms = active;
    if (this.reading) this.update(this.reading);
  }

  alarmsOf(channel) {
    const out = [];
    for (const e of this.alarms.values()) if (e.channel === channel) out.push(e);
    return out;
  }

  update(reading) {
    if (!this.reading || this.reading.channels.length !== reading.channels.length || this.rows.size === 0) {
      this.build(reading.channels);
    }
    this.reading = reading;
    const t = this.thresholds;
    for (const c of reading.channels) {
      const r = this.rows.get(c.channel);
      if (!r) continue;
      r.freq.textContent = this.unit === "nm" ? wavelengthNm(c.frequency_thz).toFixed(2) : c.frequency_thz.toFixed(3);
      this.bar(r, "power", c.power_dbm, POWER_SCALE_DBM, t ? t.powerState(c.channel, c.power_dbm) : "ok",
        t ? t.get(c.channel, "power_low_dbm") : null, 2);
      this.bar(r, "osnr", c.osnr_db, OSNR_SCALE_DB, t ? t.osnrState(c.channel, c.osnr_db) : "ok",
        t ? t.get(c.channel, "osnr_low_db") : null, 1);
      r.offset.textContent = fmt(c.offset_ghz, 1);
      r.quality.textContent = QUALITY_SHORT[c.quality] ?? c.quality;
      r.quality.className = `q q-${c.quality}`;
      const alarms = this.alarmsOf(c.channel);
      const worst = alarms.length ? severityRank(alarms) : "";
      r.tr.classList.toggle("alarmed", alarms.length > 0);
      r.tr.classList.toggle("dark", !c.present);
      r.tr.classList.toggle("selected", c.channel === this.selected);
      r.tr.dataset.severity = worst;
      r.alarm.textContent = alarms.map((a) => a.kind).join(" ");
    }
    if (this.hovered != null || this.selected != null) this.showDetail(this.hovered ?? this.selected);
  }

  bar(r, key, value, scale, state, limit, digits) {
    const fill = r[key + "Fill"];
    fill.style.width = value == null ? "0" : `${(fraction(value, scale) * 100).toFixed(1)}%`;
    fill.className = `fill ${state}`;
    const mark = r[key + "Mark"];
    if (limit == null) mark.style.display = "none";
    else {
      mark.style.display = "";
      mark.style.left = `${(fraction(limit, scale) * 100).toFixed(1)}%`;
    }
    r[key + "Text"].textContent = fmt(value, digits);
  }

  select(channel) {
    this.selected = channel;
    for (const [ch, r] of this.rows) r.tr.classList.toggle("selected", ch === channel);
    const r = this.rows.get(channel);
    if (r) r.tr.scrollIntoView({ block: "nearest" });
    this.showDetail(channel);
  }

  hover(channel) {
    this.hovered = channel;
    this.showDetail(channel ?? this.selected);
  }

  showDetail(channel) {
    const c = this.reading && this.reading.channels.find((x) => x.channel === channel);
    if (!c) {
      this.detail.replaceChildren(el("p", { class: "hint" }, "Hover or tap a channel for its details."));
      return;
    }
    const t = this.thresholds ? this.thresholds.forChannel(channel) : {};
    const rows = [
      ["Channel", c.channel],
      ["Frequency", `${c.frequency_thz.toFixed(4)} THz · ${wavelengthNm(c.frequency_thz).toFixed(3)} nm`],
      ["Slot width", c.width_ghz == null ? "—" : `${c.width_ghz} GHz`],
      ["Present", c.present ? "yes" : "no"],
      ["Power", fmt(c.power_dbm, 2, "dBm")],
      ["Signal power", fmt(c.signal_power_dbm, 2, "dBm")],
      ["OSNR (0.1 nm)", fmt(c.osnr_db, 2, "dB")],
      ["Offset", fmt(c.offset_ghz, 2, "GHz")],
      ["Quality", c.quality],
      ["Power limits", `${fmt(t.power_low_dbm, 1)} … ${fmt(t.power_high_dbm, 1)} dBm`],
      ["OSNR limit", fmt(t.osnr_low_db, 1, "dB")],
      ["Offset limit", fmt(t.offset_high_ghz, 1, "GHz")],
    ];
    const alarms = this.alarmsOf(channel);
    this.detail.replaceChildren(
      el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))])),
      alarms.length
        ? el("ul", { class: "detail-alarms" }, ...alarms.map((a) =>
            el("li", { class: `sev-${severity(a.kind)}` },
              `${alarmLabel(a)}: ${fmt(a.value, 2)} vs ${fmt(a.threshold, 2)}`)))
        : el("p", { class: "hint" }, "No active alarm."),
    );
  }
}

function severityRank(alarms) {
  const order = ["critical", "major", "minor"];
  let best = 2;
  for (const a of alarms) best = Math.min(best, order.indexOf(severity(a.kind)));
  return order[best];
}
