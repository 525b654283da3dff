// Control of one device and of the thresholds: needs an API key (entered in the
// header, kept in sessionStorage).  Without one, the panel says how to get one.

import { apiKey, send } from "./api.js";
import { el } from "./format.js";

const THRESHOLD_FIELDS = [
  ["power_low_dbm", "Power low (dBm)"],
  ["power_high_dbm", "Power high (dBm)"],
  ["osnr_low_db", "OSNR low (dB)"],
  ["offset_high_ghz", "Offset high (GHz)"],
  ["total_power_low_dbm", "Total power low (dBm)"],
  ["total_power_high_dbm", "Total power high (dBm)"],
  ["hysteresis_db", "Hysteresis (dB)"],
];

export class ControlPanel {
  constructor(container, { onChanged } = {}) {
    this.container = container;
    this.onChanged = onChanged || (() => {});
    this.device = null;
    this.thresholds = null;
  }

  setDevice(device) {
    this.device = device;
    // Not while someone is typing in the form (the device is re-read every 5 s).
    if (!this.container.contains(document.activeElement)) this.render();
  }

  setThresholds(body) {
    this.thresholds = body;
    if (!this.container.contains(document.activeElement)) this.render();
  }

  say(text, ok = true) {
    this.message = { text, ok };
    const out = this.container.querySelector(".control-result");
    if (out) {
      out.textContent = text;
      out.className = `control-result ${ok ? "ok" : "error"}`;
    }
  }

  async act(label, method, path, body) {
    try {
      const answer = await send(method, path, body);
      this.say(`${label}: done`);
      this.onChanged(answer);
      return answer;
    } catch (err) {
      this.say(`${label}: ${err.message}`, false);
      return null;
    }
  }

  render() {
    const d = this.device;
    const haveKey = apiKey() !== "";
    const path = d ? `/devices/${encodeURIComponent(d.id)}` : "";
    const disabled = !haveKey || !d;
    const button = (label, onclick, extra = {}) =>
      el("button", { type: "button", disabled, onclick, title: haveKey ? label : "needs an API key", ...extra }, label);
    const mode = el("select", { name: "mode", disabled },
      ...["trace", "power", "stream"].map((m) => el("option", { value: m, selected: d && d.mode === m }, m)));
    const interval = el("input", { name: "interval_s", type: "number", min: "0", step: "0.1", value: d ? d.interval_s : "", disabled });
    const averaging = el("input", { name: "averaging", type: "number", min: "1", max: "64", step: "1", value: d ? d.averaging : "", disabled });
    const children = [];
    if (!haveKey) {
      children.push(
        el("p", { class: "needs-key" },
          "Control needs an API key. Make one with ", el("code", {}, "odpm config hash-key"),
          ", put the printed hash in api.api_key_sha256 of the service's config, restart it, " +
          "and enter the key with the “API key” button at the top (or press k). The key stays in this tab only."),
      );
    }
    children.push(
      el("div", { class: "control-row" },
        button("Start", () => this.act("start", "PUT", `${path}/acquisition`, { running: true }), { class: "start" }),
        button("Stop", () => this.act("stop", "PUT", `${path}/acquisition`, { running: false }), { class: "stop" }),
        button("Scan now", () => this.act("scan", "POST", `${path}/scan`, {}), { class: "scan" }),
      ),
      el("form", { class: "control-form", onsubmit: (ev) => {
        ev.preventDefault();
        this.act("settings", "PUT", `${path}/acquisition`, {
          mode: mode.value, interval_s: Number(interval.value), averaging: Number(averaging.value),
        });
      } },
        el("label", {}, "Mode ", mode),
        el("label", {}, "Interval (s) ", interval),
        el("label", {}, "Averaging ", averaging),
        el("button", { type: "submit", disabled }, "Apply"),
      ),
      this.thresholdForm(disabled),
      el("p", { class: `control-result ${this.message && this.message.ok ? "ok" : "error"}` },
        this.message ? this.message.text : ""),
    );
    this.container.replaceChildren(...children);
  }

  thresholdForm(disabled) {
    const t = this.thresholds || {};
    const current = t.overrides || t;
    const inputs = THRESHOLD_FIELDS.map(([name, label]) =>
      el("label", {}, label + " ",
        el("input", { name, type: "number", step: "0.1", value: current[name] ?? "", placeholder: "off", disabled })));
    return el("form", { class: "threshold-form", onsubmit: (ev) => {
      ev.preventDefault();
      const body = {};
      for (const [name] of THRESHOLD_FIELDS) {
        const v = ev.target.elements[name].value.trim();
        body[name] = v === "" ? null : Number(v);
      }
      if (body.hysteresis_db === null) delete body.hysteresis_db;
      this.act("thresholds", "PUT", "/thresholds", body);
    } },
      el("fieldset", {}, el("legend", {}, "Thresholds (every device; empty = off)"), ...inputs,
        el("button", { type: "submit", disabled }, "Save thresholds")));
  }
}
