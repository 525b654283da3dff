"""``odpm analyze``: OSNR and channel analysis of an OSA-style trace file."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from odpm.commands import Subparsers
from odpm.config import AlarmConfig, CalibrationConfig, PipelineConfig
from odpm.errors import UserError
from odpm.grid import ChannelPlan
from odpm.models import Reading, TraceScan
from odpm.osnr_traces import CompanionError, load_companion
from odpm.pipeline import Pipeline, TraceAxis
from odpm.planfile import PlanFileError, read_plan_csv
from odpm.tracefile import TraceFile, read_trace_file

log = logging.getLogger(__name__)


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "analyze",
        help="analyse a trace CSV (power, OSNR, offset per channel)",
        description="Reads a CSV whose header names the axis (wavelength_nm, frequency_thz or "
        "frequency_ghz) and power_dbm (lines starting with # are ignored), or a Yokogawa "
        'AQ6370 legacy CSV export (70BCSV, its [TRACE DATA] rows; its "RESLN" gives '
        "--rbw-ghz when that is not given).",
    )
    p.add_argument("trace", metavar="TRACE.csv")
    p.add_argument(
        "--rbw-ghz",
        type=float,
        default=None,
        help="noise-equivalent bandwidth of each trace point, GHz (default: the file's "
        "resolution, an AQ6370 export's RESLN, converted at 1550 nm; required for other files)",
    )
    p.add_argument(
        "--spacing-ghz", type=float, default=50.0, help="channel spacing of the plan, GHz"
    )
    p.add_argument("--first-channel-thz", type=float, default=192.1, help="channel 1's centre, THz")
    p.add_argument("--channels", type=int, default=80, help="number of channels in the plan")
    p.add_argument(
        "--plan",
        metavar="PLAN.csv",
        default=None,
        help="a flexible-grid channel plan (ITU-T G.694.1): a CSV with the header "
        "channel,centre_thz,width_ghz, one row per channel in ascending frequency; "
        "replaces --spacing-ghz, --first-channel-thz and --channels",
    )
    p.add_argument(
        "--noise",
        choices=["midpoint", "pit"],
        default="midpoint",
        help="where the noise is read: midpoint (IEC 61280-2-9 interpolation between the "
        "midpoints) or pit (the minimum between channels)",
    )
    p.add_argument(
        "--format", choices=["json", "csv", "table"], default="table", help="output format"
    )
    companion = p.add_mutually_exclusive_group()
    companion.add_argument(
        "--noise-trace",
        metavar="OFF.csv",
        help="the same span with the channels switched off: OSNR by the signal-off method",
    )
    companion.add_argument(
        "--reference",
        metavar="REF.csv",
        help="the same channels at high OSNR: OSNR by the reference-trace method",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.rbw_ghz is not None and not (args.rbw_ghz > 0 and math.isfinite(args.rbw_ghz)):
        raise UserError(f"--rbw-ghz must be a positive number, got {args.rbw_ghz}")
    try:
        if args.plan is not None:
            plan = read_plan_csv(args.plan)
        else:
            plan = ChannelPlan(args.first_channel_thz, args.spacing_ghz, args.channels)
        config = PipelineConfig(noise_method=args.noise)
    except PlanFileError as exc:
        raise UserError(str(exc)) from None
    except (ValueError, ValidationError) as exc:
        raise UserError(f"bad channel plan: {exc}") from None
    trace = read_trace_file(args.trace)
    _check_coverage(trace, plan, config)
    if args.rbw_ghz is None:
        if not trace.rbw_hint_ghz:
            raise UserError(
                f"{trace.path}: the file does not state its resolution; give --rbw-ghz "
                "(the noise-equivalent bandwidth of one trace point; 0.1 nm = 12.5 GHz)"
            )
        args.rbw_ghz = trace.rbw_hint_ghz
        # Said on stderr, so a JSON or CSV on stdout stays clean.
        print(
            f"odpm analyze: {trace.path}: --rbw-ghz not given; using the file's resolution "
            f"(RESLN) {trace.rbw_hint_ghz:.3f} GHz",
            file=sys.stderr,
        )
    elif trace.rbw_hint_ghz and abs(trace.rbw_hint_ghz / args.rbw_ghz - 1) > 0.25:
        log.warning(
            "%s: the instrument's resolution is %.2f GHz but --rbw-ghz is %.2f GHz; "
            "OSNR and power use --rbw-ghz (the noise-equivalent bandwidth)",
            trace.path,
            trace.rbw_hint_ghz,
            args.rbw_ghz,
        )
    pipeline = Pipeline(plan, config, AlarmConfig(), CalibrationConfig())
    scan = TraceScan(
        device_id=trace.path.name,
        time=datetime.now(UTC),
        frequency_thz=trace.frequency_thz,
        power_dbm=trace.power_dbm,
        rbw_ghz=float(args.rbw_ghz),
        noise_power_dbm=_companion("noise trace", args.noise_trace, trace),
        reference_power_dbm=_companion("reference", args.reference, trace),
    )
    try:
        reading = pipeline.process(scan)
    except ValueError as exc:
        raise UserError(f"{trace.path}: {exc}") from None
    sys.stdout.write(_FORMATTERS[args.format](reading))
    return 0


def _companion(kind: str, path: str | None, trace: TraceFile) -> npt.NDArray[np.float32] | None:
    """A second trace (signal-off or reference) on the live trace's axis: read, checked
    to cover it and to share its resolution (when both files state one), and
    interpolated linearly in mW onto its points (odpm.osnr_traces, as the service does)."""
    if path is None:
        return None
    try:
        other = load_companion(kind, path, "", None)
        return other.on_axis(trace.frequency_thz, trace.rbw_hint_ghz)
    except CompanionError as exc:
        raise UserError(f"{trace.path}: {exc}") from None


def _check_coverage(trace: TraceFile, plan: ChannelPlan, config: PipelineConfig) -> None:
    """The axis must span every slot and noise window; name the end point that falls short."""
    lo, hi = TraceAxis.required_span_thz(plan, config)
    f = trace.frequency_thz
    need = f"the {plan.count}-channel plan needs {lo:.4f}-{hi:.4f} THz"
    if f[0] > lo + 1e-9:
        raise UserError(
            f"{trace.path}: {trace.describe_point(0)} is the lowest frequency; "
            f"the axis does not cover the channel plan ({need})"
        )
    if f[-1] < hi - 1e-9:
        raise UserError(
            f"{trace.path}: {trace.describe_point(f.size - 1)} is the highest frequency; "
            f"the axis does not cover the channel plan ({need})"
        )


def analysis_dict(reading: Reading) -> dict[str, Any]:
    """The JSON shape of ``odpm analyze``: channels plus the per-scan summary."""
    return {"channels": reading.channels_as_dicts(), **reading.summary_dict()}


def _json(reading: Reading) -> str:
    return json.dumps(analysis_dict(reading), indent=2) + "\n"


_COLUMNS = (
    "channel",
    "frequency_thz",
    "width_ghz",
    "present",
    "power_dbm",
    "signal_power_dbm",
    "osnr_db",
    "offset_ghz",
    "quality",
    "osnr_method",
    "osnr_uncertainty_db",
)


def _csv(reading: Reading) -> str:
    """One row per channel (empty cell = no value), then the summary as # comments."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(_COLUMNS)
    for row in reading.channels_as_dicts():
        w.writerow(["" if row[k] is None else row[k] for k in _COLUMNS])
    for k, v in reading.summary_dict().items():
        out.write(f"# {k}: {'' if v is None else v}\n")
    return out.getvalue()


def _table(reading: Reading) -> str:
    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = [
        f"{'ch':>3} {'THz':>9} {'power dBm':>10} {'signal dBm':>10} {'OSNR dB':>8} "
        f"{'offset GHz':>10}  {'method':<13} quality"
    ]
    for r in reading.channels_as_dicts():
        lines.append(
            f"{r['channel']:>3} {r['frequency_thz']:>9.3f} {num(r['power_dbm'], '.2f'):>10} "
            f"{num(r['signal_power_dbm'], '.2f'):>10} {num(r['osnr_db'], '.2f'):>8} "
            f"{num(r['offset_ghz'], '+.2f'):>10}  {r['osnr_method'] or '-':<13} {r['quality']}"
        )
    s = reading.summary_dict()
    lines.append("")
    lines.append(
        f"total {num(s['total_power_dbm'], '.2f')} dBm, {s['lit_channels']} lit, "
        f"tilt {num(s['tilt_db'], '+.2f')} dB, flatness {num(s['flatness_db'], '.2f')} dB, "
        f"min OSNR {num(s['min_osnr_db'], '.2f')} dB"
    )
    return "\n".join(lines) + "\n"


_FORMATTERS: dict[str, Callable[[Reading], str]] = {"json": _json, "csv": _csv, "table": _table}
