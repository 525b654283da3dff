"""Reading OSA-style trace exports for ``odpm analyze``.

The required format is a CSV with a header row: the first column is the axis,
``wavelength_nm``, ``frequency_thz`` or ``frequency_ghz``, the second
``power_dbm``; further columns are ignored; rows may come in any order; blank
lines and lines starting with ``#`` are ignored.

The Yokogawa AQ6370 legacy CSV is also accepted (recognised by ``70BCSV`` on its
first line): the settings block is skipped except ``"RESLN"`` (the resolution in
nm, kept as a hint), and the rows after ``"[TRACE DATA]"`` are ``wavelength_nm,
level_dbm``.  Levels of -210 dBm and below are the instrument's "no data" marker
and are dropped.

Every problem is a :class:`~odpm.errors.UserError` naming the file, the line and
what is wrong, so a technician can open the file at that line and see it.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from odpm.errors import UserError
from odpm.grid import SPEED_OF_LIGHT_M_S, frequency_thz_to_wavelength_nm

__all__ = ["AXIS_COLUMNS", "TraceFile", "read_trace_file"]

#: Accepted first-column names and the factor to THz (None: wavelength, c / lambda).
AXIS_COLUMNS: dict[str, float | None] = {
    "wavelength_nm": None,
    "frequency_thz": 1.0,
    "frequency_ghz": 1e-3,
}
_POWER_COLUMN = "power_dbm"
_YOKOGAWA_MAGIC = "70BCSV"
_YOKOGAWA_DATA = "[TRACE DATA]"
_YOKOGAWA_NO_DATA_DBM = -210.0


@dataclass(frozen=True)
class TraceFile:
    """A trace as read: points sorted by ascending frequency, with their line numbers."""

    path: Path
    axis: str
    frequency_thz: npt.NDArray[np.float64]
    power_dbm: npt.NDArray[np.float64]
    line: npt.NDArray[np.int64]
    #: The instrument's own resolution setting, GHz, when the file states it.
    rbw_hint_ghz: float | None = None

    def describe_point(self, i: int) -> str:
        """``line N`` plus the point in the file's own unit."""
        f = float(self.frequency_thz[i])
        if self.axis == "wavelength_nm":
            where = f"{float(frequency_thz_to_wavelength_nm(f)):.4f} nm ({f:.4f} THz)"
        else:
            where = f"{f:.4f} THz"
        return f"line {int(self.line[i])}: {where}"


def read_trace_file(path: str | Path) -> TraceFile:
    """Read a trace CSV (either format); UserError names file, line and problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{p}: is a directory, not a trace file") from None
    except PermissionError:
        raise UserError(f"{p}: permission denied") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{p}: not a text file ({exc.reason} at byte {exc.start})") from None
    lines = text.splitlines()
    if lines and lines[0].strip().startswith(_YOKOGAWA_MAGIC):
        return _read_yokogawa(p, lines)
    return _read_csv(p, lines)


def _fields(line: str) -> list[str]:
    return [f.strip() for f in next(csv.reader([line]))]


def _number(p: Path, lineno: int, text: str, column: str) -> float:
    try:
        v = float(text)
    except ValueError:
        shown = text if text else "(empty)"
        raise UserError(
            f"{p}: line {lineno}: {shown!r} in column {column} is not a number"
        ) from None
    if not math.isfinite(v):
        raise UserError(f"{p}: line {lineno}: {text!r} in column {column} is not a finite number")
    return v


def _read_csv(p: Path, lines: list[str]) -> TraceFile:
    header: list[str] | None = None
    header_line = 0
    axis_vals: list[float] = []
    power_vals: list[float] = []
    line_nos: list[int] = []
    expected = "/".join(AXIS_COLUMNS)
    for lineno, raw in enumerate(lines, 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        fields = _fields(s)
        if header is None:
            names = [f.lower() for f in fields]
            if len(names) < 2 or names[0] not in AXIS_COLUMNS or names[1] != _POWER_COLUMN:
                raise UserError(
                    f"{p}: line {lineno}: expected a header '<{expected}>,{_POWER_COLUMN}', "
                    f"got {s[:60]!r}"
                )
            header, header_line = names, lineno
            continue
        if len(fields) != len(header):
            raise UserError(
                f"{p}: line {lineno}: {len(fields)} values, but the header on line "
                f"{header_line} names {len(header)} columns"
            )
        x = _number(p, lineno, fields[0], header[0])
        if x <= 0:
            raise UserError(f"{p}: line {lineno}: {header[0]} must be positive, got {fields[0]}")
        axis_vals.append(x)
        power_vals.append(_number(p, lineno, fields[1], _POWER_COLUMN))
        line_nos.append(lineno)
    if header is None:
        raise UserError(f"{p}: no header line '<{expected}>,{_POWER_COLUMN}' (the file is empty)")
    return _finish(p, header[0], axis_vals, power_vals, line_nos, None)


def _read_yokogawa(p: Path, lines: list[str]) -> TraceFile:
    rbw_hint: float | None = None
    data_from: int | None = None
    for lineno, raw in enumerate(lines, 1):
        s = raw.strip()
        if s.strip('"') == _YOKOGAWA_DATA:
            data_from = lineno
            break
        fields = _fields(s) if s else []
        if fields and fields[0] == "RESLN" and len(fields) > 1:
            resln_nm = _number(p, lineno, fields[1], "RESLN")
            if resln_nm > 0:
                # Bandwidth in GHz of resln_nm at 1550 nm: c x dlambda / lambda^2.
                rbw_hint = SPEED_OF_LIGHT_M_S * resln_nm / 1550.0**2
    if data_from is None:
        raise UserError(f'{p}: AQ6370 file without a "{_YOKOGAWA_DATA}" line')
    axis_vals: list[float] = []
    power_vals: list[float] = []
    line_nos: list[int] = []
    for lineno in range(data_from + 1, len(lines) + 1):
        s = lines[lineno - 1].strip()
        if not s or s.startswith("#"):
            continue
        fields = _fields(s)
        if len(fields) < 2:
            raise UserError(f"{p}: line {lineno}: expected 'wavelength_nm, level_dbm', got {s!r}")
        wl = _number(p, lineno, fields[0], "wavelength (nm)")
        level = _number(p, lineno, fields[1], "level (dBm)")
        if wl <= 0:
            raise UserError(f"{p}: line {lineno}: wavelength must be positive, got {fields[0]}")
        if level <= _YOKOGAWA_NO_DATA_DBM:
            continue
        axis_vals.append(wl)
        power_vals.append(level)
        line_nos.append(lineno)
    return _finish(p, "wavelength_nm", axis_vals, power_vals, line_nos, rbw_hint)


def _finish(
    p: Path,
    axis: str,
    axis_vals: list[float],
    power_vals: list[float],
    line_nos: list[int],
    rbw_hint: float | None,
) -> TraceFile:
    if len(axis_vals) < 2:
        raise UserError(f"{p}: {len(axis_vals)} data point(s); a trace needs at least 2")
    x = np.asarray(axis_vals, dtype=np.float64)
    factor = AXIS_COLUMNS[axis]
    f = SPEED_OF_LIGHT_M_S / x / 1e3 if factor is None else x * factor
    order = np.argsort(f, kind="stable")
    f, lines = f[order], np.asarray(line_nos, dtype=np.int64)[order]
    dup = np.flatnonzero(np.diff(f) <= 0)
    if dup.size:
        i = int(dup[0])
        raise UserError(
            f"{p}: line {int(lines[i + 1])}: the point {axis_vals[order[i + 1]]:g} {axis} "
            f"repeats line {int(lines[i])}"
        )
    return TraceFile(
        path=p,
        axis=axis,
        frequency_thz=f,
        power_dbm=np.asarray(power_vals, dtype=np.float64)[order],
        line=lines,
        rbw_hint_ghz=rbw_hint,
    )
