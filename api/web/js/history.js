// A channel's history: power and OSNR means with their min..max band per bucket
// (GET .../channels/{ch}/history), and the channel's alarm raise/clear events
// (GET /api/v1/alarms) marked as vertical lines: red raised, green cleared.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { getJSON } from "./api.js";
import { axisStyle } from "./spectrum.js";

export const RANGES = { hour: 3600, day: 86400, week: 7 * 86400 };
const POWER = "#58a6ff";
const OSNR = "#3fb950";

export class HistoryChart {
  constructor(container, status) {
    this.container = container;
    this.status = status;
    this.events = [];
    this.request = 0;
    this.plot = new uPlot(this.options(), [[], [], [], [], [], [], []], container);
    this.resizer = new ResizeObserver(() => {
      const w = container.clientWidth;
      const h = container.clientHeight;
      if (w > 0 && h > 0) this.plot.setSize({ width: w, height: Math.max(160, h - 30) });
    });
    this.resizer.observe(container);
  }

  options() {
    const band = (colour) => ({ stroke: colour, width: 0.5, alpha: 0.5, points: { show: false } });
    return {
      width: Math.max(300, this.container.clientWidth),
      height: Math.max(160, this.container.clientHeight - 30),
      scales: { x: { time: true }, p: { auto: true }, o: { auto: true } },
      axes: [
        axisStyle({}),
        axisStyle({ scale: "p", label: "Power (dBm)", size: 55 }),
        axisStyle({ scale: "o", label: "OSNR (dB)", side: 1, size: 50, grid: { show: false } }),
      ],
      series: [
        {},
        { label: "Power", scale: "p", stroke: POWER, width: 1.5, points: { show: false }, value: (u, v) => fmtv(v, "dBm") },
        { label: "min", scale: "p", ...band(POWER), value: (u, v) => fmtv(v, "") },
        { label: "max", scale: "p", ...band(POWER), value: (u, v) => fmtv(v, "") },
        { label: "OSNR", scale: "o", stroke: OSNR, width: 1.5, points: { show: false }, value: (u, v) => fmtv(v, "dB") },
        { label: "min", scale: "o", ...band(OSNR), value: (u, v) => fmtv(v, "") },
        { label: "max", scale: "o", ...band(OSNR), value: (u, v) => fmtv(v, "") },
      ],
      bands: [
        { series: [3, 2], fill: "rgba(88,166,255,0.15)" },
        { series: [6, 5], fill: "rgba(63,185,80,0.15)" },
      ],
      hooks: { draw: [(u) => this.drawEvents(u)] },
    };
  }

  /** Load `seconds` of history of `channel` on `device` and its alarm events. */
  async load(device, channel, seconds) {
    const id = ++this.request;
    const end = new Date();
    const start = new Date(end.getTime() - seconds * 1000);
    const q = `start=${encodeURIComponent(start.toISOString())}&end=${encodeURIComponent(end.toISOString())}`;
    this.status.textContent = `loading channel ${channel}…`;
    try {
      const [hist, alarms] = await Promise.all([
        getJSON(`/devices/${encodeURIComponent(device)}/channels/${channel}/history?${q}`),
        getJSON(`/alarms?device=${encodeURIComponent(device)}&limit=1000`),
      ]);
      if (id !== this.request) return; // a newer request won
      const pts = hist.points;
      const col = (k) => pts.map((p) => p[k]);
      const data = [
        pts.map((p) => Date.parse(p.time) / 1000),
        col("power_dbm_mean"), col("power_dbm_min"), col("power_dbm_max"),
        col("osnr_db_mean"), col("osnr_db_min"), col("osnr_db_max"),
      ];
      const t0 = start.getTime() / 1000;
      this.events = alarms.recent
        .filter((e) => e.channel === channel && Date.parse(e.time) / 1000 >= t0)
        .map((e) => ({ t: Date.parse(e.time) / 1000, active: e.active, kind: e.kind }));
      this.container.dataset.points = String(pts.length);
      this.container.dataset.events = String(this.events.length);
      this.container.dataset.channel = String(channel);
      this.plot.setData(data);
      this.plot.setScale("x", { min: t0, max: end.getTime() / 1000 });
      const every = hist.every_s >= 60 ? `${(hist.every_s / 60).toFixed(0)} min` : `${hist.every_s} s`;
      this.status.textContent =
        `channel ${channel}: ${pts.length} buckets of ${every} (${hist.source}), ${this.events.length} alarm events`;
    } catch (err) {
      if (id !== this.request) return;
      this.status.textContent = `history unavailable: ${err.message}`;
    }
  }

  drawEvents(u) {
    if (!this.events.length) return;
    const ctx = u.ctx;
    const { top, height } = u.bbox;
    ctx.save();
    ctx.lineWidth = 1.5 * uPlot.pxRatio;
    ctx.setLineDash([4 * uPlot.pxRatio, 3 * uPlot.pxRatio]);
    for (const e of this.events) {
      const x = u.valToPos(e.t, "x", true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.strokeStyle = e.active ? "#f85149" : "#3fb950";
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
    }
    ctx.restore();
  }
}

function fmtv(v, unit) {
  return v == null ? "—" : `${v.toFixed(2)}${unit ? " " + unit : ""}`;
}
