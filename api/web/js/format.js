// Small formatting and DOM helpers shared by the panels.

export function fmt(value, digits = 1, unit = "") {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return `${Number(value).toFixed(digits)}${unit ? " " + unit : ""}`;
}

/** "3 s", "2 min", "5 h" since an ISO time (or "—"). */
export function age(isoTime, nowMs = Date.now()) {
  if (!isoTime) return "—";
  const s = Math.max(0, (nowMs - Date.parse(isoTime)) / 1000);
  if (s < 90) return `${s.toFixed(0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(0)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(0)} h`;
  return `${(s / 86400).toFixed(0)} d`;
}

export function localTime(isoTime) {
  return isoTime ? new Date(isoTime).toLocaleString() : "—";
}

/** Create an element: el("td", {class: "x", title: "y"}, "text" | node, ...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

/** Severity of an alarm kind, for colours and ordering (los is the worst). */
const SEVERITY = {
  los: "critical",
  device_lost: "critical",
  total_power_low: "major",
  total_power_high: "major",
  power_low: "major",
  power_high: "major",
  osnr_low: "minor",
  offset_high: "minor",
};
export const SEVERITIES = ["critical", "major", "minor"];

export function severity(kind) {
  return SEVERITY[kind] || "minor";
}

export function alarmLabel(e) {
  const where = e.channel == null ? "device" : `ch ${e.channel}`;
  return `${e.kind} ${where}`;
}
