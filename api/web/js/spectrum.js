// The live spectrum: power (dBm) against frequency (THz) or wavelength (nm), with the
// channel grid, each channel's measured centre (coloured by its quality flag) and the
// noise level its OSNR used.  uPlot draws 17,000 points in a few milliseconds;
// the overlay is drawn in uPlot's draw hook, so a redraw never creates DOM nodes.
//
// Mouse: drag to zoom, wheel to zoom around the cursor, shift+wheel to pan,
// double-click to reset, click to pick the nearest channel.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { noiseLevelDbm, wavelengthNm } from "./optics.js";

export const QUALITY_COLOURS = {
  ok: "#3fb950",
  noise_unresolved: "#d29922",
  power_only: "#58a6ff",
  dark: "#6e7681",
};
const GRID_COLOUR = "rgba(139,148,158,0.18)";
const NOISE_COLOUR = "#f0883e";
const SELECT_COLOUR = "rgba(88,166,255,0.14)";
const STORED_COLOUR = "#f2cc60";
const REFERENCE_COLOUR = "#a371f7";
// Series index of each overlay and of the live trace (0 is x): the live trace is the
// last, so it is drawn over the others.
const OVERLAY_SERIES = { reference: 1, stored: 2 };
const LIVE_SERIES = 3;

export class Spectrum {
  constructor(container, { onPickChannel } = {}) {
    this.container = container;
    this.onPickChannel = onPickChannel || (() => {});
    this.unit = "thz";
    this.channels = [];
    this.rbwGhz = null;
    this.selected = null;
    this.points = 0;
    this.fullRange = null;
    this.xCache = { key: "", x: null };
    this.live = null; // the last live trace drawn
    // Traces drawn beside the live one ({frequency_thz, power_dbm}): a stored trace picked
    // from the archive, and a reference.  Resampled onto the live axis when it differs.
    this.overlays = { stored: null, reference: null };
    this.overlayCache = { stored: { key: "", y: null }, reference: { key: "", y: null } };
    for (const k of ["storedId", "storedPoints", "storedResampled", "reference"]) delete container.dataset[k];
    this.plot = new uPlot(this.options(), [[], [], [], []], container);
    this.installMouse();
    this.resizer = new ResizeObserver(() => this.fit());
    this.resizer.observe(container);
  }

  options() {
    const self = this;
    return {
      width: Math.max(300, this.container.clientWidth),
      height: Math.max(240, this.container.clientHeight - 30),
      cursor: { drag: { x: true, y: false, setScale: true }, points: { show: false } },
      legend: { show: true, live: true },
      scales: { x: { time: false }, y: { range: (u, min, max) => yRange(min, max) } },
      axes: [
        axisStyle({
          label: this.unit === "nm" ? "Wavelength (nm)" : "Frequency (THz)",
          values: (u, v) => v.map((x) => x.toFixed(this.unit === "nm" ? 1 : 2)),
        }),
        axisStyle({ label: "Power (dBm)", size: 60 }),
      ],
      series: [
        {
          label: this.unit === "nm" ? "nm" : "THz",
          value: (u, v) => (v == null ? "—" : v.toFixed(4)),
        },
        {
          label: "Reference",
          stroke: REFERENCE_COLOUR,
          width: 1,
          dash: [6, 3],
          show: false,
          points: { show: false },
          value: (u, v) => (v == null ? "—" : `${v.toFixed(2)} dBm`),
        },
        {
          label: "Stored",
          stroke: STORED_COLOUR,
          width: 1,
          show: false,
          points: { show: false },
          value: (u, v) => (v == null ? "—" : `${v.toFixed(2)} dBm`),
        },
        {
          label: "Trace",
          stroke: "#58a6ff",
          width: 1,
          spanGaps: false,
          points: { show: false },
          value: (u, v) => (v == null ? "—" : `${v.toFixed(2)} dBm`),
        },
      ],
      hooks: { draw: [(u) => self.drawOverlay(u)] },
    };
  }

  fit() {
    const w = this.container.clientWidth;
    const h = this.container.clientHeight;
    if (w > 0 && h > 0) this.plot.setSize({ width: w, height: Math.max(200, h - 30) });
  }

  xOf(frequencyThz) {
    return this.unit === "nm" ? wavelengthNm(frequencyThz) : frequencyThz;
  }

  /** Frequencies -> ascending x values (uPlot needs ascending x); cached per axis. */
  xValues(freq) {
    const key = `${this.unit}:${freq.length}:${freq[0]}:${freq[freq.length - 1]}`;
    if (this.xCache.key !== key) {
      const n = freq.length;
      const x = new Float64Array(n);
      if (this.unit === "nm") for (let i = 0; i < n; i++) x[i] = wavelengthNm(freq[n - 1 - i]);
      else for (let i = 0; i < n; i++) x[i] = freq[i];
      this.xCache = { key, x };
    }
    return this.xCache.x;
  }

  yValues(power) {
    if (this.unit !== "nm") return power;
    return power.slice().reverse();
  }

  /** An overlay's levels on the axis `freq` (frequency order), cached per overlay and axis:
   * the trace itself when its axis is the same, else linear interpolation (null outside it). */
  overlayValues(kind, freq) {
    const o = this.overlays[kind];
    if (!o) return null;
    const key = `${this.unit}:${freq.length}:${freq[0]}:${freq[freq.length - 1]}`;
    const cache = this.overlayCache[kind];
    if (cache.key === key && cache.trace === o) return cache.y;
    const same = sameAxis(o.frequency_thz, freq);
    const y = this.yValues(same ? o.power_dbm : resample(o.frequency_thz, o.power_dbm, freq));
    this.overlayCache[kind] = { key, trace: o, y };
    if (kind === "stored") {
      this.container.dataset.storedPoints = String(same ? o.power_dbm.length : freq.length);
      this.container.dataset.storedResampled = same ? "" : "1";
    }
    return y;
  }

  isZoomed() {
    const s = this.plot.scales.x;
    const f = this.fullRange;
    return f != null && s.min != null && (s.min > f[0] + 1e-9 || s.max < f[1] - 1e-9);
  }

  /** Draw a trace (TraceOut) with the channel marks of its reading (ReadingOut). */
  update(trace, reading) {
    this.live = trace;
    this.rbwGhz = trace.rbw_ghz;
    this.channels = reading ? reading.channels : [];
    this.points = trace.frequency_thz.length;
    this.container.dataset.points = String(this.points);
    this.draw();
  }

  /** Draw the live trace and the overlays; without a live trace, on the first overlay's axis. */
  draw() {
    const base = this.live || this.overlays.stored || this.overlays.reference;
    if (!base) return;
    const freq = base.frequency_thz;
    const n = freq.length;
    const x = this.xValues(freq);
    if (!this.nulls || this.nulls.length !== n) this.nulls = new Array(n).fill(null);
    const y = this.live ? this.yValues(this.live.power_dbm) : this.nulls;
    const zoomed = this.isZoomed();
    this.fullRange = [x[0], x[n - 1]];
    const data = [x, null, null, null];
    data[LIVE_SERIES] = y;
    for (const [kind, idx] of Object.entries(OVERLAY_SERIES)) {
      const shown = this.overlays[kind] != null;
      data[idx] = shown ? this.overlayValues(kind, freq) : this.nulls;
      if (this.plot.series[idx].show !== shown) this.plot.setSeries(idx, { show: shown });
    }
    this.plot.setData(data, !zoomed);
    if (zoomed) this.plot.redraw(false, true);
  }

  /** Draw a stored trace ("stored") or a reference ("reference") beside the live one;
   * null removes it. */
  setOverlay(kind, trace) {
    this.overlays[kind] = trace;
    this.overlayCache[kind] = { key: "", y: null };
    if (kind === "stored") {
      this.container.dataset.storedId = trace && trace.id != null ? String(trace.id) : "";
      if (!trace) this.container.dataset.storedPoints = "";
    }
    if (kind === "reference") this.container.dataset.reference = trace ? trace.name || "" : "";
    this.draw();
  }

  /** Switch the x axis between "thz" and "nm"; the caller draws the data again. */
  setUnit(unit) {
    if (unit === this.unit) return;
    this.unit = unit;
    this.xCache = { key: "", x: null };
    this.fullRange = null;
    this.plot.destroy();
    this.plot = new uPlot(this.options(), [[], [], [], []], this.container);
    this.installMouse();
    this.overlayCache = { stored: { key: "", y: null }, reference: { key: "", y: null } };
  }

  select(channel) {
    this.selected = channel;
    this.plot.redraw(false, false);
  }

  resetZoom() {
    if (this.fullRange) this.plot.setScale("x", { min: this.fullRange[0], max: this.fullRange[1] });
  }

  zoom(factor, centre) {
    const s = this.plot.scales.x;
    if (s.min == null) return;
    const c = centre ?? (s.min + s.max) / 2;
    let min = c - (c - s.min) * factor;
    let max = c + (s.max - c) * factor;
    if (this.fullRange) {
      min = Math.max(min, this.fullRange[0]);
      max = Math.min(max, this.fullRange[1]);
    }
    if (max - min > 1e-6) this.plot.setScale("x", { min, max });
  }

  pan(fraction) {
    const s = this.plot.scales.x;
    if (s.min == null || !this.fullRange) return;
    const span = s.max - s.min;
    let min = s.min + span * fraction;
    min = Math.min(Math.max(min, this.fullRange[0]), this.fullRange[1] - span);
    this.plot.setScale("x", { min, max: min + span });
  }

  installMouse() {
    const over = this.plot.over;
    over.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        const u = this.plot;
        if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
          this.pan(Math.sign(e.deltaX || e.deltaY) * 0.1);
        } else {
          const centre = u.posToVal(e.offsetX, "x");
          this.zoom(e.deltaY < 0 ? 0.8 : 1.25, centre);
        }
      },
      { passive: false },
    );
    let downX = null;
    over.addEventListener("mousedown", (e) => (downX = e.clientX));
    over.addEventListener("click", (e) => {
      if (downX !== null && Math.abs(e.clientX - downX) > 3) return; // that was a drag-zoom
      const x = this.plot.posToVal(e.offsetX, "x");
      const ch = this.nearestChannel(x);
      if (ch != null) this.onPickChannel(ch);
    });
  }

  nearestChannel(xVal) {
    let best = null;
    let bestD = Infinity;
    for (const c of this.channels) {
      const d = Math.abs(this.xOf(c.frequency_thz) - xVal);
      if (d < bestD) {
        bestD = d;
        best = c.channel;
      }
    }
    return best;
  }

  /** Grid lines, selected slot, measured centres (quality colour) and noise levels. */
  drawOverlay(u) {
    if (!this.channels.length) return;
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    const dpr = uPlot.pxRatio;
    const xMin = u.scales.x.min;
    const xMax = u.scales.x.max;
    const visible = (v) => v >= Math.min(xMin, xMax) && v <= Math.max(xMin, xMax);
    // Half a slot in x units, for the selected band and the noise ticks.
    const c0 = this.channels[0];
    const c1 = this.channels[1] || c0;
    const slot = Math.abs(this.xOf(c1.frequency_thz) - this.xOf(c0.frequency_thz)) || 0.05;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    ctx.lineWidth = dpr;
    ctx.strokeStyle = GRID_COLOUR;
    ctx.beginPath();
    for (const c of this.channels) {
      const gx = this.xOf(c.frequency_thz);
      if (!visible(gx)) continue;
      const px = Math.round(u.valToPos(gx, "x", true)) + 0.5;
      ctx.moveTo(px, top);
      ctx.lineTo(px, top + height);
    }
    ctx.stroke();
    if (this.selected != null) {
      const c = this.channels.find((ch) => ch.channel === this.selected);
      if (c) {
        // The channel's own slot (flex grid: widths differ), else the centre spacing.
        const [lo, hi] = slotEdges(c, this.xOf.bind(this), slot);
        const a = u.valToPos(lo, "x", true);
        const b = u.valToPos(hi, "x", true);
        ctx.fillStyle = SELECT_COLOUR;
        ctx.fillRect(Math.min(a, b), top, Math.abs(b - a), height);
      }
    }
    const tri = 5 * dpr;
    for (const c of this.channels) {
      if (!c.present || c.offset_ghz == null) continue;
      const cx = this.xOf(c.frequency_thz + c.offset_ghz / 1000);
      if (!visible(cx)) continue;
      const px = u.valToPos(cx, "x", true);
      ctx.fillStyle = QUALITY_COLOURS[c.quality] || QUALITY_COLOURS.ok;
      ctx.beginPath();
      ctx.moveTo(px - tri, top);
      ctx.lineTo(px + tri, top);
      ctx.lineTo(px, top + tri * 1.6);
      ctx.closePath();
      ctx.fill();
    }
    ctx.strokeStyle = NOISE_COLOUR;
    ctx.lineWidth = 2 * dpr;
    ctx.beginPath();
    for (const c of this.channels) {
      const n = noiseLevelDbm(c.signal_power_dbm, c.osnr_db, this.rbwGhz);
      if (n == null) continue;
      const gx = this.xOf(c.frequency_thz);
      if (!visible(gx)) continue;
      const py = u.valToPos(n, "y", true);
      const [lo, hi] = slotEdges(c, this.xOf.bind(this), slot);
      ctx.moveTo(u.valToPos((gx + lo) / 2, "x", true), py);
      ctx.lineTo(u.valToPos((gx + hi) / 2, "x", true), py);
    }
    ctx.stroke();
    ctx.restore();
  }

  destroy() {
    this.resizer.disconnect();
    this.plot.destroy();
  }
}

/** Whether two frequency axes are the same points (same length and ends). */
function sameAxis(a, b) {
  return a.length === b.length && a[0] === b[0] && a[a.length - 1] === b[b.length - 1];
}

/** Levels `power` on axis `freq` (both ascending) linearly interpolated onto `onto`;
 * null outside `freq` or next to a null level. One pass over both axes. */
function resample(freq, power, onto) {
  const out = new Array(onto.length).fill(null);
  let j = 0;
  for (let i = 0; i < onto.length; i++) {
    const f = onto[i];
    if (f < freq[0] || f > freq[freq.length - 1]) continue;
    while (j < freq.length - 2 && freq[j + 1] < f) j++;
    const a = power[j];
    const b = power[j + 1];
    if (a == null || b == null) continue;
    const span = freq[j + 1] - freq[j];
    out[i] = span > 0 ? a + ((b - a) * (f - freq[j])) / span : a;
  }
  return out;
}

function yRange(min, max) {
  if (min == null || max == null) return [-80, 0];
  return [Math.floor((min - 3) / 5) * 5, Math.ceil((max + 3) / 5) * 5];
}

export function axisStyle(extra) {
  return {
    stroke: "#8b949e",
    grid: { stroke: "rgba(139,148,158,0.12)", width: 1 },
    ticks: { stroke: "rgba(139,148,158,0.3)", width: 1 },
    font: "12px system-ui, sans-serif",
    labelFont: "12px system-ui, sans-serif",
    ...extra,
  };
}

/** A channel's slot [lower, upper] in x units: its own width_ghz when the reading has
 * one (ITU-T G.694.1 flex plans mix 50/75/150 GHz slots), else +/- half of `slot`. */
function slotEdges(c, xOf, slot) {
  const gx = xOf(c.frequency_thz);
  if (c.width_ghz == null) return [gx - slot / 2, gx + slot / 2];
  const a = xOf(c.frequency_thz - c.width_ghz / 2000);
  const b = xOf(c.frequency_thz + c.width_ghz / 2000);
  return [Math.min(a, b), Math.max(a, b)];
}
