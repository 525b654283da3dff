"""The instrument's own analysis kept beside odpm's: matching peaks to plan channels, and the
one-row-per-device store surviving a reopen (what the API serves after a restart)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from odpm.config import AlarmConfig, CalibrationConfig, PipelineConfig, PlanConfig
from odpm.instrument_analysis import InstrumentAnalysisStore, compare
from odpm.models import InstrumentAnalysis, PortScan, Reading
from odpm.pipeline import Pipeline


def _reading() -> Reading:
    plan = PlanConfig().to_plan()
    pipeline = Pipeline(plan, PipelineConfig(), AlarmConfig(), CalibrationConfig())
    ports = plan.frequencies_thz
    scan = PortScan("d", datetime(2026, 1, 1, tzinfo=UTC), np.full(ports.size, -20.0), ports)
    return pipeline.process(scan)


def test_peaks_are_matched_to_the_nearest_plan_channel_within_half_a_slot() -> None:
    reading = _reading()
    analysis = InstrumentAnalysis(
        "AQ6370D WDM analysis",
        frequency_thz=np.array([192.1004, 192.1497, 192.17, 196.2]),
        power_dbm=np.array([-20.0, -21.0, -40.0, -30.0]),
        osnr_db=np.array([30.0, 31.0, np.nan, 10.0]),
    )
    rows = compare(analysis, reading)
    # 192.17 THz is 20 GHz from channel 2, inside its slot; 196.2 THz is off the plan.
    assert [r["channel"] for r in rows] == [1, 2, 2, None]
    assert rows[0]["osnr_db"] == 30.0 and rows[2]["osnr_db"] is None
    # Port readings carry no OSNR: nothing to compare with.
    assert rows[0]["odpm_osnr_db"] is None and rows[0]["osnr_difference_db"] is None
    assert rows[3]["frequency_thz"] == 196.2 and rows[3]["odpm_osnr_db"] is None


def test_store_keeps_the_latest_per_device_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "instrument_analysis.sqlite3"
    t1 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    t2 = datetime(2026, 1, 1, 12, 0, 5, 250000, tzinfo=UTC)
    a1 = InstrumentAnalysis("x", np.array([192.1]), np.array([-20.0]), np.array([30.0]))
    a2 = InstrumentAnalysis(
        "y", np.array([192.1, 192.15]), np.array([-20.0, -21.0]), np.array([30.5, np.nan])
    )
    store = InstrumentAnalysisStore(path)
    store.put("aq", t1, a1)
    store.put("aq", t2, a2)
    store.put("other", t1, a1)
    store.close()
    again = InstrumentAnalysisStore(path)
    try:
        got = again.get("aq")
        assert got is not None
        when, analysis = got
        assert when == t2 and analysis.source == "y"
        np.testing.assert_array_equal(analysis.osnr_db, a2.osnr_db)
        assert again.get("missing") is None
    finally:
        again.close()
