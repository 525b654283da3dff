// Reference ("golden") traces: pick one of the device's references to overlay it on the
// spectrum, see the per-channel power difference against it, and (with the API key)
// save the stored trace shown -- or the newest one -- as a reference.
//
// Routes: GET .../references (names, default), GET .../references/{name} (levels, for
// the overlay), GET .../compare?reference=NAME[&trace_id=N] (per channel
// power_delta_db = power now - power in the reference, of the stored trace shown or
// else the newest), PUT .../references/{name} {"trace_id": N} (key).

import { API, ApiError, apiKey, authHeaders, getJSON, send } from "./api.js";
import { el, fmt, localTime } from "./format.js";

/** The bars' scale: at least +/- this many dB, else the largest |delta| rounded up. */
const MIN_SCALE_DB = 1;

export class ReferencePanel {
  /**
   * archive: the ArchivePanel (selected and newest stored traces); onOverlay(ref|null):
   * draw the reference on the spectrum; onPickChannel(ch): a bar was clicked.
   */
  constructor(panel, { archive, onOverlay, onPickChannel } = {}) {
    this.panel = panel;
    this.archive = archive;
    this.onOverlay = onOverlay || (() => {});
    this.onPickChannel = onPickChannel || (() => {});
    this.select = panel.querySelector("#reference-select");
    this.bars = panel.querySelector("#diff-bars");
    this.summary = panel.querySelector("#diff-summary");
    this.nameInput = panel.querySelector("#reference-name");
    this.saveButton = panel.querySelector("#reference-save");
    this.result = panel.querySelector("#reference-result");
    this.report = panel.querySelector("#report-link");
    this.name = null;
    this.comparedId = null;
    // The panel's elements outlive this device view: listeners go with close().
    this.listening = new AbortController();
    const signal = this.listening.signal;
    this.select.addEventListener("change", () => this.choose(this.select.value || null), { signal });
    this.report.addEventListener("click", (ev) => this.openReport(ev), { signal });
    panel.querySelector("#reference-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.save();
    }, { signal });
    this.select.replaceChildren();
    this.bars.replaceChildren();
    this.summary.textContent = "Pick a reference to see each channel's power against it.";
    this.result.textContent = "";
  }

  close() {
    this.listening.abort();
  }

  get path() {
    return `/devices/${encodeURIComponent(this.device)}`;
  }

  async load(device) {
    this.device = device;
    this.updateReportLink();
    await this.loadNames();
    // The device's default reference (archive.reference) is chosen to start with.
    if (this.name == null && this.defaultName) await this.choose(this.defaultName);
  }

  async loadNames() {
    try {
      const body = await getJSON(`${this.path}/references`);
      this.defaultName = body.default;
      this.names = body.references.map((r) => r.name);
      this.select.replaceChildren(
        el("option", { value: "" }, this.names.length ? "(none)" : "(no reference yet)"),
        ...body.references.map((r) =>
          el("option", { value: r.name, selected: r.name === this.name },
            `${r.name}${r.name === body.default ? " (default)" : ""} · ${localTime(r.time)}`)),
      );
    } catch (err) {
      this.say(`references: ${err.message}`, false);
    }
  }

  say(text, ok = true) {
    this.result.textContent = text;
    this.result.className = `control-result ${ok ? "ok" : "error"}`;
  }

  /** Overlay reference `name` (null: none) and compare against it. */
  async choose(name) {
    this.name = name;
    this.select.value = name || "";
    this.updateReportLink();
    if (!name) {
      this.onOverlay(null);
      this.comparedId = null;
      this.bars.replaceChildren();
      this.bars.dataset.trace = "";
      this.summary.textContent = "Pick a reference to see each channel's power against it.";
      return;
    }
    try {
      const ref = await getJSON(`${this.path}/references/${encodeURIComponent(name)}`);
      if (this.name !== name) return;
      this.onOverlay(ref);
    } catch (err) {
      this.say(`reference ${name}: ${err.message}`, false);
    }
    await this.compare();
  }

  /** The stored trace compared: the one shown on the spectrum, else the newest. */
  traceId() {
    if (this.archive.selectedId != null) return this.archive.selectedId;
    const newest = this.archive.newest();
    return newest ? newest.id : null;
  }

  /** Called when the archive's listing or selection changes: compare again if the
   * trace to compare is another one. */
  traceChanged() {
    this.updateReportLink();
    if (this.name && this.traceId() !== this.comparedId) this.compare();
  }

  async compare() {
    const name = this.name;
    const id = this.traceId();
    if (!name || id == null) return;
    this.comparedId = id;
    try {
      const q = `reference=${encodeURIComponent(name)}&trace_id=${encodeURIComponent(id)}`;
      const body = await getJSON(`${this.path}/compare?${q}`);
      if (this.name === name && this.comparedId === id) this.renderBars(body);
    } catch (err) {
      this.comparedId = null;
      this.summary.textContent = `compare: ${err.message}`;
    }
  }

  /** One bar per channel: power now - power in the reference (dB), up orange / down blue;
   * a channel lit in only one of them (new / missing) is a full red bar, and is left out
   * of the scale so that it does not flatten the others. */
  renderBars(body) {
    const deltas = body.channels
      .filter((c) => c.status === "both" && c.power_delta_db != null)
      .map((c) => c.power_delta_db);
    const scale = Math.max(MIN_SCALE_DB, Math.ceil(Math.max(0, ...deltas.map(Math.abs))));
    this.bars.dataset.trace = String(body.trace.id);
    this.bars.dataset.scaleDb = String(scale);
    this.bars.replaceChildren(
      ...body.channels.map((c) => {
        const d = c.power_delta_db;
        const odd = c.status === "new" || c.status === "missing";
        const h = odd ? 50 : d == null ? 0 : (Math.min(Math.abs(d), scale) / scale) * 50;
        const title =
          `ch ${c.channel} (${c.status}): ${d == null ? "no delta" : fmt(d, 2, "dB")}; ` +
          `now ${fmt(c.power_dbm, 2, "dBm")}, reference ${fmt(c.reference_power_dbm, 2, "dBm")}`;
        return el(
          "div",
          {
            class: `diff-bar status-${c.status}`,
            title,
            dataset: { channel: c.channel, delta: d == null ? "" : String(d) },
            onclick: () => this.onPickChannel(c.channel),
          },
          el("span", {
            class: d != null && d < 0 ? "down" : "up",
            style: d != null && d < 0 ? `top: 50%; height: ${h}%` : `bottom: 50%; height: ${h}%`,
          }),
        );
      }),
    );
    let worst = null;
    for (const c of body.channels) {
      if (c.status === "both" && c.power_delta_db != null && (!worst || Math.abs(c.power_delta_db) > Math.abs(worst.power_delta_db))) worst = c;
    }
    const parts = [
      `trace ${body.trace.id} (${body.trace.reason}, ${localTime(body.trace.time)}) against "${body.reference.name}"`,
      worst ? `largest: ch ${worst.channel} ${fmt(worst.power_delta_db, 2, "dB")}` : "no channel in both",
      `scale ±${scale} dB`,
    ];
    if (body.new_channels.length) parts.push(`new: ${body.new_channels.join(", ")}`);
    if (body.missing_channels.length) parts.push(`missing: ${body.missing_channels.join(", ")}`);
    this.summary.textContent = parts.join(" · ");
  }

  /** PUT .../references/{name} from the stored trace shown, else the newest (key). */
  async save() {
    const name = this.nameInput.value.trim();
    if (!apiKey()) {
      this.say("saving a reference needs the API key (k, or the API key button)", false);
      return;
    }
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
      this.say("a reference name is 1-64 letters, digits, '_', '.' or '-'", false);
      return;
    }
    const id = this.traceId();
    if (id == null) {
      this.say("no stored trace to save yet", false);
      return;
    }
    try {
      await send("PUT", `${this.path}/references/${encodeURIComponent(name)}`, { trace_id: id });
      this.say(`saved trace ${id} as "${name}"`);
      this.name = name;
      await this.loadNames();
      await this.choose(name);
    } catch (err) {
      this.say(`save: ${err.message}`, false);
    }
  }

  /**
   * A link cannot send the key, and a service that locks reads answers it 401: with a key
   * set, the report is fetched with it and opened from a blob in the new tab instead.
   */
  async openReport(ev) {
    if (!apiKey()) return; // reads are open (or no key yet): the plain link works
    ev.preventDefault();
    const tab = window.open("", "_blank");
    try {
      const resp = await fetch(this.report.href, { headers: authHeaders() });
      if (!resp.ok) throw new ApiError(resp.status, `${resp.status} ${resp.statusText}`);
      const url = URL.createObjectURL(await resp.blob());
      if (tab) tab.location.href = url;
      else window.location.href = url;
    } catch (err) {
      if (tab) tab.close();
      this.say(`report: ${err.message}`, false);
    }
  }

  /** The commissioning report of the trace compared, against the chosen reference. */
  updateReportLink() {
    const q = new URLSearchParams({ format: "html" });
    if (this.name) q.set("reference", this.name);
    const id = this.archive.selectedId;
    if (id != null) q.set("trace_id", String(id));
    this.report.href = `${API}${this.path}/report?${q}`;
  }
}
