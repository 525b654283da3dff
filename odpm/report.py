"""The commissioning report: one stored trace judged against the thresholds in force.

Per channel: power, OSNR and centre offset, each passed or failed by the rule
the alarms use (a fresh :class:`~odpm.alarms.AlarmEngine` evaluates the reading
once: a value that would raise an alarm fails), and, when a reference is given,
the power change from it against ``max_deviation_db`` (``alarms.deviation_db``
when set, else :data:`DEFAULT_MAX_DEVIATION_DB`).  Per device: total power, tilt,
flatness, minimum OSNR, empty-channel count and an overall PASS/FAIL.

Three forms from one :class:`Report` model: JSON (the model itself; its JSON
Schema is ``Report.model_json_schema()``), CSV (a row per channel, the summary as
``#`` lines) and HTML: one self-contained file with inline CSS and SVG plots (the
spectrum, with the reference, and the channel bars), nothing fetched, so it can
be mailed to a customer and opened anywhere.  Every form says which trace
(device, id, time, reason, identity, RBW) and which odpm version made it.
"""

from __future__ import annotations

import csv
import html
import io
import math
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from odpm import __version__
from odpm.alarms import AlarmEngine
from odpm.compare import Comparison, analyse_spectrum, compare_spectra
from odpm.config import AlarmConfig, DeviceConfig, PipelineConfig
from odpm.models import AlarmKind, Quality
from odpm.storage.traces import ReferenceTrace, StoredTrace, TraceArchive

__all__ = [
    "DEFAULT_MAX_DEVIATION_DB",
    "Report",
    "ReportError",
    "build_report",
    "render_report",
    "report_csv",
    "report_html",
]

#: Largest power change from the reference that passes when no deviation_db is set.
DEFAULT_MAX_DEVIATION_DB = 1.0

Verdict = Literal["pass", "fail", "n/a"]

#: Which channel value an alarm kind judges.
_FIELD_OF_KIND = {
    AlarmKind.LOSS_OF_SIGNAL: "power",
    AlarmKind.POWER_LOW: "power",
    AlarmKind.POWER_HIGH: "power",
    AlarmKind.OSNR_LOW: "osnr",
    AlarmKind.OFFSET_HIGH: "offset",
}


class ReportChannel(BaseModel):
    channel: int
    frequency_thz: float
    status: Literal["lit", "dark"]
    quality: str
    power_dbm: float | None
    osnr_db: float | None
    offset_ghz: float | None
    power: Verdict
    osnr: Verdict
    offset: Verdict
    reference_power_dbm: float | None = None
    power_delta_db: float | None = None
    reference: Verdict = "n/a"
    failures: list[str]
    result: Literal["pass", "fail"]


class ReportTrace(BaseModel):
    device: str
    id: int
    time: datetime
    reason: str
    identity: str | None
    rbw_ghz: float
    points: int


class ReportReference(BaseModel):
    name: str
    time: datetime
    source: str
    max_deviation_db: float


class ReportDevice(BaseModel):
    total_power_dbm: float | None
    total_power: Verdict
    tilt_db: float | None
    flatness_db: float | None
    min_osnr_db: float | None
    lit_channels: int
    empty_channels: int
    failed_channels: int


class Report(BaseModel):
    """The report as data (the JSON form)."""

    title: str
    generated: datetime
    software: str
    trace: ReportTrace
    reference: ReportReference | None
    thresholds: dict[str, object]
    device: ReportDevice
    channels: list[ReportChannel]
    result: Literal["PASS", "FAIL"]


def _num(v: float, nd: int = 2) -> float | None:
    return None if not math.isfinite(v) else round(float(v), nd)


def build_report(
    device: DeviceConfig,
    trace: StoredTrace,
    *,
    pipeline: PipelineConfig,
    alarms: AlarmConfig,
    reference: ReferenceTrace | None = None,
) -> tuple[Report, Comparison | None]:
    """Analyse ``trace`` with the device's plan and judge it (see the module docstring)."""
    plan = device.plan.to_plan()
    info = trace.info
    reading = analyse_spectrum(
        plan,
        pipeline,
        trace.frequency_thz,
        trace.power_dbm,
        info.rbw_ghz,
        device=device.id,
        time=info.time,
        calibration=device.calibration,
    )
    comparison = None
    if reference is not None:
        comparison = compare_spectra(
            plan,
            pipeline,
            trace=(trace.frequency_thz, trace.power_dbm, info.rbw_ghz),
            reference=(reference.frequency_thz, reference.power_dbm, reference.rbw_ghz),
            calibration=device.calibration,
        )
    # The alarm rule, once, on a fresh engine: what would raise fails.
    events = AlarmEngine(plan, alarms).evaluate(
        device.id,
        info.time,
        present=reading.present,
        power_dbm=reading.power_dbm,
        osnr_db=reading.osnr_db,
        offset_ghz=reading.offset_ghz,
        total_power_dbm=reading.total_power_dbm,
    )
    failed: dict[int, list[str]] = {}
    total_failed = False
    for e in events:
        if e.channel is None:
            total_failed = True
        else:
            failed.setdefault(e.channel, []).append(e.kind.value)
    max_dev = alarms.deviation_db or DEFAULT_MAX_DEVIATION_DB
    rows: list[ReportChannel] = []
    for i, ch in enumerate(reading.channel.tolist()):
        lit = bool(reading.present[i])
        kinds = failed.get(ch, [])
        verdict: dict[str, Verdict] = {}
        for name, value in (
            ("power", reading.power_dbm[i]),
            ("osnr", reading.osnr_db[i]),
            ("offset", reading.offset_ghz[i]),
        ):
            bad = any(_FIELD_OF_KIND.get(AlarmKind(k)) == name for k in kinds)
            verdict[name] = "fail" if bad else ("pass" if lit and math.isfinite(value) else "n/a")
        ref_power = delta = None
        ref_verdict: Verdict = "n/a"
        if comparison is not None:
            ref_power = _num(comparison.reference.power_dbm[i])
            delta = _num(comparison.power_delta_db[i])
            if lit or bool(comparison.reference.present[i]):
                ok = delta is not None and abs(delta) <= max_dev
                ref_verdict = "pass" if ok else "fail"
                if not ok:
                    kinds = [*kinds, "reference"]
        rows.append(
            ReportChannel(
                channel=ch,
                frequency_thz=round(float(reading.frequency_thz[i]), 6),
                status="lit" if lit else "dark",
                quality=Quality(int(reading.quality[i])).label,
                power_dbm=_num(reading.power_dbm[i]),
                osnr_db=_num(reading.osnr_db[i]),
                offset_ghz=_num(reading.offset_ghz[i]),
                power=verdict["power"],
                osnr=verdict["osnr"],
                offset=verdict["offset"],
                reference_power_dbm=ref_power,
                power_delta_db=delta,
                reference=ref_verdict,
                failures=kinds,
                result="fail" if kinds else "pass",
            )
        )
    n_failed = sum(1 for r in rows if r.result == "fail")
    checked_total = (
        alarms.total_power_low_dbm is not None or alarms.total_power_high_dbm is not None
    )
    summary = ReportDevice(
        total_power_dbm=_num(reading.total_power_dbm),
        total_power="fail" if total_failed else ("pass" if checked_total else "n/a"),
        tilt_db=_num(reading.tilt_db),
        flatness_db=_num(reading.flatness_db),
        min_osnr_db=_num(reading.min_osnr_db),
        lit_channels=int(reading.lit_channels),
        empty_channels=int((~reading.present).sum()),
        failed_channels=n_failed,
    )
    report = Report(
        title=f"Commissioning report: {device.id}",
        generated=datetime.now(UTC),
        software=f"odpm {__version__}",
        trace=ReportTrace(
            device=info.device,
            id=info.id,
            time=info.time,
            reason=info.reason,
            identity=info.identity,
            rbw_ghz=info.rbw_ghz,
            points=info.points,
        ),
        reference=None
        if reference is None
        else ReportReference(
            name=reference.name,
            time=reference.time,
            source=reference.source,
            max_deviation_db=max_dev,
        ),
        thresholds=alarms.model_dump(mode="json"),
        device=summary,
        channels=rows,
        result="FAIL" if n_failed or total_failed else "PASS",
    )
    # The plots need the arrays; keep them on the comparison or a self-comparison.
    return report, comparison


_CSV_COLUMNS = (
    "channel",
    "frequency_thz",
    "status",
    "quality",
    "power_dbm",
    "osnr_db",
    "offset_ghz",
    "power",
    "osnr",
    "offset",
    "reference_power_dbm",
    "power_delta_db",
    "reference",
    "result",
)


def report_csv(report: Report) -> str:
    """One row per channel; the trace, software and device summary as ``#`` lines first."""
    out = io.StringIO()
    t = report.trace
    out.write(f"# {report.title}: {report.result}\n")
    out.write(f"# trace {t.id} of {t.device} at {t.time.isoformat()} ({t.reason}), ")
    out.write(f"identity {t.identity or '-'}, rbw {t.rbw_ghz} GHz\n")
    out.write(f"# made by {report.software} at {report.generated.isoformat()}\n")
    if report.reference is not None:
        r = report.reference
        out.write(f"# reference {r.name} ({r.source}, {r.time.isoformat()}), ")
        out.write(f"max deviation {r.max_deviation_db} dB\n")
    for k, v in report.device.model_dump().items():
        out.write(f"# {k}: {'' if v is None else v}\n")
    w = csv.writer(out, lineterminator="\n")
    w.writerow(_CSV_COLUMNS)
    for row in report.channels:
        d = row.model_dump()
        w.writerow(["" if d[k] is None else d[k] for k in _CSV_COLUMNS])
    return out.getvalue()


# --- HTML with inline SVG ----------------------------------------------------------------

_W, _H, _PAD = 900, 300, 48
_CSS = """
body{font-family:system-ui,Arial,sans-serif;margin:24px;color:#1b1b1b;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 6px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#eef}.pass{color:#176b1e}.fail{color:#b00020;font-weight:bold}
.verdict{font-size:28px;font-weight:bold;padding:6px 14px;display:inline-block;color:#fff}
.PASS{background:#1e8c2a}.FAIL{background:#c62828}.meta td{text-align:left}
svg{border:1px solid #ccc;background:#fcfcfc}
"""


def _scale(
    values: npt.NDArray[np.float64], lo: float, hi: float, a: float, b: float
) -> npt.NDArray[np.float64]:
    return a + (values - lo) / ((hi - lo) or 1.0) * (b - a)


def _axes(
    x_lo: float,
    x_hi: float,
    y_lo: float,
    y_hi: float,
    x_label: str,
    y_label: str,
    x_ticks: list[float] | None = None,
) -> str:
    parts = [
        f'<rect x="{_PAD}" y="10" width="{_W - _PAD - 10}" height="{_H - _PAD - 10}" '
        'fill="none" stroke="#888"/>'
    ]
    for k in range(5):
        y = y_lo + (y_hi - y_lo) * k / 4
        py = float(_scale(np.array([y]), y_lo, y_hi, _H - _PAD, 10)[0])
        parts.append(
            f'<text x="{_PAD - 4}" y="{py + 4:.1f}" font-size="10" text-anchor="end">{y:.1f}</text>'
            f'<line x1="{_PAD}" x2="{_W - 10}" y1="{py:.1f}" y2="{py:.1f}" stroke="#e4e4e4"/>'
        )
    for k, x in enumerate(x_ticks or [x_lo + (x_hi - x_lo) * k / 4 for k in range(5)]):
        px = float(_scale(np.array([x]), x_lo, x_hi, _PAD, _W - 10)[0])
        anchor = "start" if k == 0 and x_ticks is None else "middle"
        anchor = "end" if x_ticks is None and k == 4 else anchor
        text = f"{x:.0f}" if x_ticks is not None else f"{x:.2f}"
        parts.append(
            f'<text x="{px:.1f}" y="{_H - _PAD + 14}" font-size="10" '
            f'text-anchor="{anchor}">{text}</text>'
        )
    parts.append(
        f'<text x="{_W / 2}" y="{_H - 8}" font-size="11" text-anchor="middle">{x_label}</text>'
        f'<text x="12" y="{_H / 2}" font-size="11" transform="rotate(-90 12 {_H / 2})" '
        f'text-anchor="middle">{y_label}</text>'
    )
    return "".join(parts)


def _polyline(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    box: tuple[float, float, float, float],
    colour: str,
) -> str:
    keep = np.isfinite(y)
    px = _scale(x[keep], box[0], box[1], _PAD, _W - 10)
    py = _scale(np.clip(y[keep], box[2], box[3]), box[2], box[3], _H - _PAD, 10)
    pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px.tolist(), py.tolist(), strict=True))
    return f'<polyline fill="none" stroke="{colour}" stroke-width="1" points="{pts}"/>'


def spectrum_svg(trace: StoredTrace, reference: ReferenceTrace | None) -> str:
    """The trace (blue) and the reference (grey) over frequency, dBm."""
    f, p = trace.frequency_thz, trace.power_dbm
    ys = [p] + ([reference.power_dbm] if reference is not None else [])
    finite = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.zeros(1)
    y_lo, y_hi = float(np.floor(finite.min() - 1)), float(np.ceil(finite.max() + 1))
    box = (float(f.min()), float(f.max()), y_lo, y_hi)
    body = _axes(*box, "frequency (THz)", "power (dBm)")
    if reference is not None:
        body += _polyline(reference.frequency_thz, reference.power_dbm, box, "#9a9a9a")
    body += _polyline(f, p, box, "#1f4fbf")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="spectrum">{body}</svg>'
    )


def bars_svg(report: Report, field: Literal["power_dbm", "osnr_db"], label: str) -> str:
    """One bar per channel, green when the channel passes, red when it fails."""
    rows = report.channels
    vals = np.array([np.nan if getattr(r, field) is None else getattr(r, field) for r in rows])
    finite = vals[np.isfinite(vals)]
    if finite.size == 0:
        finite = np.zeros(1)
    y_lo, y_hi = float(np.floor(finite.min() - 1)), float(np.ceil(finite.max() + 1))
    n = len(rows)
    box = (0.5, n + 0.5, y_lo, y_hi)
    ticks = sorted({1.0, *(float(c) for c in range(10, n + 1, 10)), float(n)})
    body = _axes(*box, "channel", label, ticks)
    width = (_W - _PAD - 10) / max(n, 1) * 0.8
    for i, r in enumerate(rows):
        v = vals[i]
        if not math.isfinite(v):
            continue
        x = float(_scale(np.array([i + 1.0]), box[0], box[1], _PAD, _W - 10)[0])
        y = float(_scale(np.array([v]), y_lo, y_hi, _H - _PAD, 10)[0])
        colour = "#c62828" if r.result == "fail" else "#2e7d32"
        body += (
            f'<rect x="{x - width / 2:.1f}" y="{y:.1f}" width="{width:.1f}" '
            f'height="{_H - _PAD - y:.1f}" fill="{colour}"><title>ch {r.channel}: '
            f"{v:.2f}</title></rect>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{html.escape(label)}">{body}</svg>'
    )


def report_html(report: Report, trace: StoredTrace, reference: ReferenceTrace | None = None) -> str:
    """The whole report as one self-contained HTML page (inline CSS and SVG)."""
    e = html.escape
    t, d = report.trace, report.device

    def cell(v: object) -> str:
        if v is None:
            return "<td>-</td>"
        cls = f' class="{v}"' if v in ("pass", "fail") else ""
        return f"<td{cls}>{e(str(v))}</td>"

    meta = [
        ("Device", t.device),
        ("Instrument", t.identity or "-"),
        (
            "Trace",
            f"#{t.id} at {t.time.isoformat()} ({t.reason}), {t.points} points, RBW {t.rbw_ghz} GHz",
        ),
        ("Software", report.software),
        ("Generated", report.generated.isoformat()),
    ]
    if report.reference is not None:
        r = report.reference
        meta.append(
            (
                "Reference",
                f"{r.name} ({r.source}, {r.time.isoformat()}), "
                f"max deviation {r.max_deviation_db} dB",
            )
        )
    summary = [
        ("Total power (dBm)", d.total_power_dbm, d.total_power),
        ("Tilt (dB)", d.tilt_db, None),
        ("Flatness (dB)", d.flatness_db, None),
        ("Min OSNR (dB)", d.min_osnr_db, None),
        ("Lit channels", d.lit_channels, None),
        ("Empty channels", d.empty_channels, None),
        ("Failed channels", d.failed_channels, "fail" if d.failed_channels else "pass"),
    ]
    cols = (
        ["Ch", "THz", "Status", "Power dBm", "", "OSNR dB", "", "Offset GHz", ""]
        + (["Ref dBm", "Delta dB", ""] if report.reference is not None else [])
        + ["Result"]
    )
    rows = []
    for c in report.channels:
        cells = [
            c.channel,
            f"{c.frequency_thz:.3f}",
            c.status,
            c.power_dbm,
            c.power,
            c.osnr_db,
            c.osnr,
            c.offset_ghz,
            c.offset,
        ]
        if report.reference is not None:
            cells += [c.reference_power_dbm, c.power_delta_db, c.reference]
        cells.append(c.result)
        rows.append("<tr>" + "".join(cell(v) for v in cells) + "</tr>")
    thresholds = ", ".join(
        f"{k} = {v}" for k, v in report.thresholds.items() if v not in (None, [], {})
    )
    return "".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            f"<title>{e(report.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{e(report.title)}</h1>",
            f'<div class="verdict {report.result}">{report.result}</div>',
            '<h2>What was measured</h2><table class="meta">',
            *(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in meta),
            "</table><h2>Device</h2><table><tr>",
            *(f"<th>{e(k)}</th>" for k, _, _ in summary),
            "</tr><tr>",
            *(
                cell(v)
                if verdict is None
                else f'<td class="{verdict}">{"-" if v is None else e(str(v))}</td>'
                for _, v, verdict in summary
            ),
            "</tr></table>",
            f"<p>Thresholds in force: {e(thresholds)}</p>",
            "<h2>Spectrum</h2>",
            spectrum_svg(trace, reference),
            "<h2>Channel power</h2>",
            bars_svg(report, "power_dbm", "power (dBm)"),
            "<h2>Channel OSNR (0.1 nm)</h2>",
            bars_svg(report, "osnr_db", "OSNR (dB)"),
            "<h2>Channels</h2><table><tr>",
            *(f"<th>{e(c)}</th>" for c in cols),
            "</tr>",
            *rows,
            "</table></body></html>\n",
        ]
    )


class ReportError(LookupError):
    """The trace or reference a report needs is not there (a one-line message)."""


def render_report(
    archive: TraceArchive,
    device: DeviceConfig,
    *,
    pipeline: PipelineConfig,
    alarms: AlarmConfig,
    trace_id: int | None = None,
    reference: str | None = None,
    fmt: Literal["html", "json", "csv"] = "html",
) -> str:
    """The report of a stored trace (default: the newest) in ``fmt``; ReportError if missing."""
    trace = archive.latest(device.id) if trace_id is None else archive.get(trace_id, device.id)
    if trace is None:
        what = "no stored trace" if trace_id is None else f"no stored trace {trace_id}"
        raise ReportError(f"{what} of device {device.id!r}")
    ref = None
    if reference:
        ref = archive.reference(device.id, reference)
        if ref is None:
            raise ReportError(f"device {device.id!r} has no reference {reference!r}")
    report, _ = build_report(device, trace, pipeline=pipeline, alarms=alarms, reference=ref)
    if fmt == "json":
        return report.model_dump_json(indent=2) + "\n"
    if fmt == "csv":
        return report_csv(report)
    return report_html(report, trace, ref)
