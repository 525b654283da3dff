"""A bench OSA's own channel analysis, kept beside odpm's so the two can be compared.

The AQ6370 computes its own WDM table (peak wavelength, level, OSNR) with its own
noise algorithm and settings.  With ``instrument_analysis = true`` the worker reads it
after each sweep (:func:`read_instrument_analysis`), the service keeps the latest per
device in memory and in ``instrument_analysis.sqlite3`` beside the journal
(:class:`InstrumentAnalysisStore`; one row per device, so it never grows), and the API
serves it matched to odpm's reading of the same sweep (:func:`compare`).
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from odpm.grid import wavelength_nm_to_frequency_thz
from odpm.models import InstrumentAnalysis, Reading

STORE_FILE = "instrument_analysis.sqlite3"


def read_instrument_analysis(driver: object) -> InstrumentAnalysis | None:
    """The driver's WDM analysis of its last sweep, or None if the driver has none."""
    read = getattr(driver, "read_wdm_analysis", None)
    if read is None:
        return None
    wdm = read()
    return InstrumentAnalysis(
        source=f"{getattr(driver, 'model_name', 'instrument')} WDM analysis",
        frequency_thz=wavelength_nm_to_frequency_thz(wdm.wavelength_nm),
        power_dbm=np.asarray(wdm.power_dbm, dtype=np.float64),
        osnr_db=np.asarray(wdm.osnr_db, dtype=np.float64),
    )


def _num(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 3)


def compare(analysis: InstrumentAnalysis, reading: Reading | None) -> list[dict[str, Any]]:
    """One row per instrument peak, with odpm's values for the plan channel it falls in.

    A peak belongs to the channel whose centre is nearest, if within half a channel
    spacing; otherwise its ``channel`` is null (the instrument saw something off-plan).
    """
    f = analysis.frequency_thz
    channel = np.full(f.size, -1, dtype=np.int64)
    if reading is not None and reading.frequency_thz.size and f.size:
        centres = reading.frequency_thz
        nearest = np.abs(f[:, None] - centres[None, :]).argmin(axis=1)
        spacing_thz = float(np.median(np.diff(centres))) if centres.size > 1 else 0.05
        inside = np.abs(f - centres[nearest]) <= spacing_thz / 2
        channel = np.where(inside, nearest, -1)
    rows = []
    for i in range(f.size):
        k = int(channel[i])
        row: dict[str, Any] = {
            "channel": None if k < 0 or reading is None else int(reading.channel[k]),
            "frequency_thz": round(float(f[i]), 6),
            "power_dbm": _num(analysis.power_dbm[i]),
            "osnr_db": _num(analysis.osnr_db[i]),
            "odpm_signal_power_dbm": None,
            "odpm_osnr_db": None,
            "osnr_difference_db": None,
        }
        if k >= 0 and reading is not None:
            row["odpm_signal_power_dbm"] = _num(reading.signal_power_dbm[k])
            row["odpm_osnr_db"] = _num(reading.osnr_db[k])
            diff = analysis.osnr_db[i] - reading.osnr_db[k]
            row["osnr_difference_db"] = _num(diff)
        rows.append(row)
    return rows


class InstrumentAnalysisStore:
    """The latest instrument analysis per device, in its own small SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS instrument_analysis(device TEXT PRIMARY KEY, "
            "time_us INTEGER NOT NULL, source TEXT NOT NULL, frequency_thz BLOB NOT NULL, "
            "power_dbm BLOB NOT NULL, osnr_db BLOB NOT NULL)"
        )

    def put(self, device: str, time: datetime, analysis: InstrumentAnalysis) -> None:
        time_us = round(time.timestamp() * 1e6)
        blobs = [
            np.asarray(a, dtype="<f8").tobytes()
            for a in (analysis.frequency_thz, analysis.power_dbm, analysis.osnr_db)
        ]
        with self._lock:
            self._conn.execute(
                "INSERT INTO instrument_analysis VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(device) "
                "DO UPDATE SET time_us=excluded.time_us, source=excluded.source, "
                "frequency_thz=excluded.frequency_thz, power_dbm=excluded.power_dbm, "
                "osnr_db=excluded.osnr_db",
                (device, time_us, analysis.source, *blobs),
            )

    def get(self, device: str) -> tuple[datetime, InstrumentAnalysis] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT time_us, source, frequency_thz, power_dbm, osnr_db "
                "FROM instrument_analysis WHERE device=?",
                (device,),
            ).fetchone()
        if row is None:
            return None
        arrays = [np.frombuffer(b, dtype="<f8").copy() for b in row[2:]]
        when = datetime.fromtimestamp(row[0] / 1e6, tz=UTC)
        return when, InstrumentAnalysis(row[1], arrays[0], arrays[1], arrays[2])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
