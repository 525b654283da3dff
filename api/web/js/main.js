// The lab console: routes (#/ overview, #/device/<id>), the header (connection
// state, API key) and keyboard shortcuts.  Reads only the public HTTP API.

import { apiKey, getJSON, setApiKey } from "./api.js";
import { DeviceView } from "./device.js";
import { Overview } from "./overview.js";
import { LiveStream } from "./stream.js";

const $ = (s) => document.querySelector(s);

const overview = new Overview($("#overview-table"), {
  onOpen: (id) => (location.hash = `#/device/${encodeURIComponent(id)}`),
});
let overviewStream = null;
let overviewTimers = [];
let deviceView = null;

const STATE_TEXT = {
  connecting: "connecting…",
  live: "live",
  stale: "no data — stale",
  down: "disconnected — retrying",
};

function showConnection(state, detail) {
  const pill = $("#connection");
  pill.className = `conn conn-${state}`;
  pill.textContent = STATE_TEXT[state] || state;
  pill.title = detail || "";
}

async function pollOverview() {
  try {
    overview.setDevices(await getJSON("/devices"));
    $("#overview-note").textContent = "";
  } catch (err) {
    $("#overview-note").textContent = `devices: ${err.message}`;
  }
  try {
    overview.setActiveAlarms((await getJSON("/alarms?active=true")).active);
  } catch {
    /* shown by the devices error, or transient */
  }
}

function openOverview() {
  $("#overview").hidden = false;
  $("#device").hidden = true;
  document.title = "odpm — overview";
  pollOverview();
  overviewStream = new LiveStream("/stream", (event, data) => {
    if (event === "summary") overview.summary(data);
    else if (event === "alarm") overview.alarm(data);
    else if (event === "gap") pollOverview(); // events were lost: re-read the alarms
  }, showConnection);
  overviewTimers = [setInterval(pollOverview, 5000), setInterval(() => overview.tick(), 1000)];
}

function closeOverview() {
  if (overviewStream) overviewStream.close();
  overviewStream = null;
  for (const t of overviewTimers) clearInterval(t);
  overviewTimers = [];
}

function route() {
  const m = location.hash.match(/^#\/device\/(.+)$/);
  if (deviceView) {
    deviceView.close();
    deviceView = null;
  }
  closeOverview();
  if (m) {
    const id = decodeURIComponent(m[1]);
    $("#overview").hidden = true;
    $("#device").hidden = false;
    document.title = `odpm — ${id}`;
    deviceView = new DeviceView(id, { onState: showConnection });
  } else {
    openOverview();
  }
}

// --- API key (sessionStorage only) ---------------------------------------------------

function showKeyState() {
  $("#key-button").textContent = apiKey() ? "API key ✓" : "API key";
  $("#key-button").classList.toggle("on", apiKey() !== "");
}

$("#key-button").addEventListener("click", () => {
  const form = $("#key-form");
  form.hidden = !form.hidden;
  if (!form.hidden) $("#key-input").focus();
});
$("#key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  setApiKey($("#key-input").value.trim());
  $("#key-input").value = "";
  $("#key-form").hidden = true;
  showKeyState();
  if (deviceView) deviceView.control.render();
});
$("#key-forget").addEventListener("click", () => {
  setApiKey("");
  $("#key-form").hidden = true;
  showKeyState();
  if (deviceView) deviceView.control.render();
});

// --- device view buttons --------------------------------------------------------------

$("#unit-button").addEventListener("click", () => deviceView && deviceView.toggleUnit());
$("#zoom-reset").addEventListener("click", () => deviceView && deviceView.spectrum.resetZoom());
$("#stored-clear").addEventListener("click", () => deviceView && deviceView.archive.clear());
$("#pause-button").addEventListener("click", () => deviceView && deviceView.togglePause());
for (const b of document.querySelectorAll("#history-ranges button")) {
  b.addEventListener("click", () => deviceView && deviceView.setRange(b.dataset.range));
}

// --- keyboard shortcuts (listed in the footer and the README) -------------------------

const SHORTCUTS = {
  o: () => (location.hash = "#/"),
  Escape: () => (location.hash = "#/"),
  k: () => $("#key-button").click(),
  u: () => deviceView && deviceView.toggleUnit(),
  r: () => deviceView && deviceView.spectrum.resetZoom(),
  "+": () => deviceView && deviceView.spectrum.zoom(0.7),
  "=": () => deviceView && deviceView.spectrum.zoom(0.7),
  "-": () => deviceView && deviceView.spectrum.zoom(1 / 0.7),
  ArrowLeft: () => deviceView && deviceView.spectrum.pan(-0.2),
  ArrowRight: () => deviceView && deviceView.spectrum.pan(0.2),
  "[": () => deviceView && deviceView.selectChannel((deviceView.selected || 1) - 1),
  "]": () => deviceView && deviceView.selectChannel((deviceView.selected || 0) + 1),
  h: () => deviceView && deviceView.setRange("hour"),
  d: () => deviceView && deviceView.setRange("day"),
  w: () => deviceView && deviceView.setRange("week"),
  p: () => deviceView && deviceView.togglePause(),
  ",": () => deviceView && deviceView.archive.available && deviceView.archive.step(-1),
  ".": () => deviceView && deviceView.archive.available && deviceView.archive.step(1),
  c: () => deviceView && deviceView.archive.clear(),
  " ": () => deviceView && deviceView.togglePause(),
};

document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement) return;
  if (!deviceView && /^[1-9]$/.test(ev.key)) {
    const row = document.querySelectorAll("#overview-table tbody tr")[Number(ev.key) - 1];
    if (row) location.hash = `#/device/${encodeURIComponent(row.dataset.device)}`;
    return;
  }
  const fn = SHORTCUTS[ev.key];
  if (fn) {
    ev.preventDefault();
    fn();
  }
});

showKeyState();
window.addEventListener("hashchange", route);
route();
