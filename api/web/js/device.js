// The device view: live spectrum, channel bars, a channel's history, alarms,
// the trace archive (when present) and control, for one device.
//
// Data: the device's stream (GET .../stream: a `reading` per scan, `alarm` events);
// on each trace-mode reading the spectrum is fetched from GET .../trace (one
// request in flight at most, so a slow link skips frames instead of queueing).

import { getJSON, getOptional } from "./api.js";
import { AlarmPanel } from "./alarms.js";
import { ArchivePanel, kindOf } from "./archive.js";
import { ChannelTable } from "./channels.js";
import { ControlPanel } from "./control.js";
import { age, fmt } from "./format.js";
import { HistoryChart, RANGES } from "./history.js";
import { ReferencePanel } from "./reference.js";
import { Spectrum } from "./spectrum.js";
import { LiveStream } from "./stream.js";
import { Thresholds } from "./thresholds.js";

const $ = (s) => document.querySelector(s);

export class DeviceView {
  constructor(id, { onState }) {
    this.id = id;
    this.path = `/devices/${encodeURIComponent(id)}`;
    this.onState = onState;
    this.reading = null;
    this.device = null;
    this.paused = false;
    this.traceInFlight = false;
    this.selected = null;
    this.range = "hour";
    this.unit = sessionStorage.getItem("odpm.unit") || "thz";
    this.timers = [];

    $("#device-name").textContent = id;
    this.spectrum = new Spectrum($("#spectrum"), { onPickChannel: (ch) => this.selectChannel(ch) });
    this.spectrum.setUnit(this.unit);
    this.table = new ChannelTable($("#channel-table"), $("#channel-detail"), {
      onSelect: (ch) => this.selectChannel(ch),
    });
    this.table.setUnit(this.unit);
    this.history = new HistoryChart($("#history-chart"), $("#history-status"));
    this.archive = new ArchivePanel($("#archive-panel"), {
      onPick: (trace) => this.showStored(trace),
      onChange: () => {
        this.alarms.render(); // links to the spectrum at each event follow the listing
        this.reference.traceChanged();
      },
    });
    this.reference = new ReferencePanel($("#reference-panel"), {
      archive: this.archive,
      onOverlay: (ref) => this.showReference(ref),
      onPickChannel: (ch) => this.selectChannel(ch),
    });
    this.alarms = new AlarmPanel($("#alarm-list"), {
      onPickChannel: (ch) => this.selectChannel(ch),
      archive: this.archive,
    });
    this.alarms.onChange((active) => this.table.setAlarms(active));
    this.control = new ControlPanel($("#control-panel"), {
      onChanged: () => {
        this.refreshDevice();
        this.refreshThresholds();
      },
    });
    this.stream = new LiveStream(
      `${this.path}/stream`,
      (event, data) => this.onEvent(event, data),
      (state, detail) => this.onState(state, detail),
    );
    this.refreshDevice();
    this.refreshThresholds();
    this.alarms.load(id).catch((err) => this.note(`alarms: ${err.message}`));
    $("#stored-note").hidden = true;
    $("#reference-note").hidden = true;
    $("#reference-panel").hidden = true;
    this.archive.load(id).then(() => {
      $("#reference-panel").hidden = !this.archive.available;
      if (this.archive.available && !this.closed) this.reference.load(id);
    });
    this.timers.push(setInterval(() => this.refreshDevice(), 5000));
    this.timers.push(setInterval(() => this.refreshThresholds(), 30000));
    this.timers.push(setInterval(() => this.alarms.load(id).catch(() => {}), 30000));
    this.timers.push(setInterval(() => this.showAge(), 1000));
    this.timers.push(setInterval(() => this.loadHistory(), 60000));
    this.renderRange();
  }

  note(text) {
    $("#device-note").textContent = text;
  }

  async refreshDevice() {
    try {
      this.device = await getJSON(this.path);
      const d = this.device;
      const st = $("#device-state");
      st.textContent = d.state;
      st.className = `state state-${d.state}`;
      $("#device-meta").textContent =
        `${d.identity || d.driver} · ${d.address} · ${d.mode}, every ${d.interval_s} s, averaging ${d.averaging}`;
      this.control.setDevice(d);
      this.note(d.last_error ? `last error: ${d.last_error}` : "");
      if (!this.reading && d.last_scan_time) {
        const latest = await getOptional(`${this.path}/latest`);
        if (latest && !this.reading) this.onReading(latest);
      }
    } catch (err) {
      this.note(`device: ${err.message}`);
    }
  }

  async refreshThresholds() {
    try {
      const body = await getJSON("/thresholds");
      this.thresholds = new Thresholds(body);
      this.table.setThresholds(this.thresholds);
      this.control.setThresholds(body);
    } catch (err) {
      this.note(`thresholds: ${err.message}`);
    }
  }

  onEvent(event, data) {
    if (event === "reading") this.onReading(data);
    else if (event === "alarm") this.alarms.add(data);
    else if (event === "gap") this.alarms.load(this.id).catch(() => {}); // lost events: re-read
  }

  onReading(reading) {
    this.reading = reading;
    this.showSummary(reading);
    if (this.paused) return;
    this.table.update(reading);
    if (this.selected == null) {
      const first = reading.channels.find((c) => c.present) || reading.channels[0];
      if (first) this.selectChannel(first.channel);
    }
    if (reading.mode === "trace") this.fetchTrace(reading);
    else $("#spectrum-note").textContent = `No spectrum: the device scans in ${reading.mode} mode (set mode "trace" to see it).`;
  }

  async fetchTrace(reading) {
    if (this.traceInFlight) return;
    this.traceInFlight = true;
    try {
      const trace = await getOptional(`${this.path}/trace`);
      if (trace && !this.paused && !this.closed) {
        this.spectrum.update(trace, reading);
        $("#spectrum-note").textContent = `${trace.frequency_thz.length} points, RBW ${trace.rbw_ghz} GHz, ${new Date(trace.time).toLocaleTimeString()}`;
      }
    } catch (err) {
      $("#spectrum-note").textContent = `trace: ${err.message}`;
    } finally {
      this.traceInFlight = false;
    }
  }

  showSummary(r) {
    $("#device").dataset.readingTime = r.time;
    $("#sum-total").textContent = fmt(r.total_power_dbm, 2, "dBm");
    $("#sum-lit").textContent = `${r.lit_channels} / ${r.channels.length}`;
    $("#sum-osnr").textContent = fmt(r.min_osnr_db, 1, "dB");
    $("#sum-tilt").textContent = fmt(r.tilt_db, 2, "dB");
    $("#sum-flat").textContent = fmt(r.flatness_db, 2, "dB");
    $("#sum-temp").textContent = fmt(r.temperature_c, 1, "°C");
    this.showAge();
  }

  /** Age of the last scan, and the stale banner when scans stop arriving. */
  showAge() {
    const t = this.reading && this.reading.time;
    $("#sum-age").textContent = age(t);
    const interval = (this.device && this.device.interval_s) || 1;
    const limitS = Math.max(5, 3 * interval);
    const stale = !t || (Date.now() - Date.parse(t)) / 1000 > limitS;
    const running = !this.device || this.device.enabled;
    const banner = $("#stale-banner");
    banner.hidden = !stale || !this.reading;
    banner.textContent = running
      ? `STALE: no scan for ${age(t)} (expected every ${interval} s). Data below is old.`
      : `Acquisition stopped: last scan ${age(t)} ago.`;
    $("#device").classList.toggle("stale", stale && !!this.reading);
  }

  selectChannel(ch) {
    if (!this.reading) return;
    const n = this.reading.channels.length;
    ch = Math.min(Math.max(1, ch), n);
    this.selected = ch;
    this.spectrum.select(ch);
    this.table.select(ch);
    $("#history-channel").textContent = `Channel ${ch}`;
    this.loadHistory();
  }

  loadHistory() {
    if (this.selected != null) this.history.load(this.id, this.selected, RANGES[this.range]);
  }

  setRange(range) {
    this.range = range;
    this.renderRange();
    this.loadHistory();
  }

  renderRange() {
    for (const b of document.querySelectorAll("#history-ranges button")) {
      b.classList.toggle("on", b.dataset.range === this.range);
    }
  }

  toggleUnit() {
    this.unit = this.unit === "thz" ? "nm" : "thz";
    sessionStorage.setItem("odpm.unit", this.unit);
    this.spectrum.setUnit(this.unit);
    this.table.setUnit(this.unit);
    if (this.reading) this.fetchTrace(this.reading);
    return this.unit;
  }

  togglePause() {
    this.paused = !this.paused;
    $("#pause-button").textContent = this.paused ? "Resume" : "Pause";
    $("#device").classList.toggle("paused", this.paused);
  }

  /** Draw a stored trace beside the live one (null: remove it). */
  showStored(trace) {
    this.spectrum.setOverlay("stored", trace);
    $("#stored-note").hidden = trace == null;
    if (trace) {
      $("#stored-label").textContent =
        `stored #${trace.id}: ${new Date(trace.time).toLocaleString()}, ${trace.reason}` +
        ` (${kindOf(trace.reason)}), ${trace.frequency_thz.length} points`;
    }
  }

  /** Draw a reference trace (GET .../references/{name}) on the spectrum (null: none). */
  showReference(ref) {
    this.spectrum.setOverlay("reference", ref);
    $("#reference-note").hidden = ref == null;
    if (ref) $("#reference-label").textContent = `reference "${ref.name}" of ${new Date(ref.time).toLocaleString()}`;
  }

  close() {
    this.closed = true;
    this.stream.close();
    this.archive.close();
    this.reference.close();
    for (const t of this.timers) clearInterval(t);
    this.spectrum.destroy();
    this.history.plot.destroy();
    this.history.resizer.disconnect();
  }
}
