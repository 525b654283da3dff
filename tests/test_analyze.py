"""`odpm analyze` end to end through a subprocess, and the trace file reader."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from odpm.errors import UserError
from odpm.grid import ChannelPlan
from odpm.tracefile import read_trace_file
from tests.support.synthetic_traces import SyntheticTrace, make_trace, random_scenario

PLAN = ChannelPlan.c_band_50ghz()
KEYS = [
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
]


@pytest.fixture(scope="module")
def trace() -> SyntheticTrace:
    osnr, lit, offset = random_scenario(PLAN.frequencies_thz, 11)
    return make_trace(
        grid_thz=PLAN.frequencies_thz, spacing_ghz=50.0, osnr_db=osnr, lit=lit, offset_ghz=offset
    )


def _write(path: Path, header: str, xs: np.ndarray, ps: np.ndarray, shuffle: bool = False) -> Path:
    rows = [f"{x:.6f},{p:.4f}" for x, p in zip(xs, ps, strict=True)]
    if shuffle:
        rows = [rows[i] for i in np.random.default_rng(3).permutation(len(rows))]
    path.write_text("# exported by a test\n" + header + "\n" + "\n".join(rows) + "\n")
    return path


def _odpm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "odpm", *args], capture_output=True, text=True, timeout=60
    )


def test_json_shape_and_values(tmp_path: Path, trace: SyntheticTrace) -> None:
    f = _write(
        tmp_path / "t.csv",
        "wavelength_nm,power_dbm",
        trace.wavelength_nm,
        trace.power_dbm,
        shuffle=True,
    )
    res = _odpm("analyze", str(f), "--rbw-ghz", "2.5", "--format", "json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert list(out) == [
        "channels",
        "total_power_dbm",
        "lit_channels",
        "tilt_db",
        "flatness_db",
        "min_osnr_db",
    ]
    assert len(out["channels"]) == 80 and all(list(c) == KEYS for c in out["channels"])
    t = trace.truth
    for c in out["channels"]:
        i = c["channel"] - 1
        assert c["present"] == bool(t.present[i])
        if t.present[i]:
            assert abs(c["osnr_db"] - t.osnr_db[i]) <= 0.1
            assert abs(c["offset_ghz"] - t.offset_ghz[i]) <= 0.5
        else:
            assert (
                c["osnr_db"] is None and c["signal_power_dbm"] is None and c["offset_ghz"] is None
            )
            assert c["quality"] == "dark"
    assert out["lit_channels"] == int(t.present.sum())


def test_frequency_ghz_axis_csv_and_table(tmp_path: Path, trace: SyntheticTrace) -> None:
    f = _write(
        tmp_path / "g.csv", "frequency_ghz,power_dbm", trace.frequency_thz * 1000, trace.power_dbm
    )
    res = _odpm("analyze", str(f), "--rbw-ghz", "2.5", "--format", "csv")
    assert res.returncode == 0, res.stderr
    rows = list(
        csv.reader(
            io.StringIO("\n".join(ln for ln in res.stdout.splitlines() if not ln.startswith("#")))
        )
    )
    assert rows[0] == KEYS and len(rows) == 81
    dark = [r for r in rows[1:] if r[3] == "False"]
    assert dark and all(r[6] == "" for r in dark)
    assert {r[2] for r in rows[1:]} == {"50.0"}  # every slot's width
    assert "# lit_channels: " in res.stdout
    res = _odpm(
        "analyze",
        str(f),
        "--rbw-ghz",
        "2.5",
        "--format",
        "table",
        "--channels",
        "40",
        "--spacing-ghz",
        "100",
    )
    assert res.returncode == 0, res.stderr
    body = res.stdout.splitlines()
    assert body[0].split()[0] == "ch" and len([ln for ln in body if ln[:3].strip().isdigit()]) == 40
    assert "min OSNR" in body[-1]


def test_frequency_thz_axis_matches_wavelength_axis(tmp_path: Path, trace: SyntheticTrace) -> None:
    a = _write(tmp_path / "a.csv", "frequency_thz,power_dbm", trace.frequency_thz, trace.power_dbm)
    b = _write(tmp_path / "b.csv", "wavelength_nm,power_dbm", trace.wavelength_nm, trace.power_dbm)
    ja = json.loads(_odpm("analyze", str(a), "--rbw-ghz", "2.5", "--format", "json").stdout)
    jb = json.loads(_odpm("analyze", str(b), "--rbw-ghz", "2.5", "--format", "json").stdout)
    for x, y in zip(ja["channels"], jb["channels"], strict=True):
        assert x["present"] == y["present"]
        if x["osnr_db"] is not None:
            assert abs(x["osnr_db"] - y["osnr_db"]) < 0.01


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ("freq,power\n193.1,-10\n193.2,-11\n", 1, "header"),
        ("frequency_thz,power_dbm\n193.1,-10\n193.2,abc\n", 3, "not a number"),
        ("# c\nfrequency_thz,power_dbm\n193.1,-10\n", None, "at least 2"),
        ("frequency_thz,power_dbm\n193.1,-10\n193.2\n", 3, "values"),
        ("frequency_thz,power_dbm\n193.0,-10\n194.0,-11\n195.0,-12\n", 2, "does not cover"),
    ],
)
def test_bad_files_give_one_line(
    tmp_path: Path, content: str, line: int | None, words: str
) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(content)
    res = _odpm("analyze", str(f), "--rbw-ghz", "2.5")
    assert res.returncode != 0
    err = res.stderr.strip().splitlines()
    assert len(err) == 1, res.stderr
    assert str(f) in err[0] and words in err[0]
    if line is not None:
        assert f"line {line}:" in err[0]
    assert "Traceback" not in res.stderr


def test_high_end_not_covered_names_last_line(tmp_path: Path) -> None:
    f = tmp_path / "short.csv"
    f.write_text("frequency_thz,power_dbm\n195.0,-30\n192.0,-30\n")
    res = _odpm("analyze", str(f), "--rbw-ghz", "2.5")
    assert res.returncode == 2 and "line 2:" in res.stderr and "highest" in res.stderr


def test_missing_file(tmp_path: Path) -> None:
    res = _odpm("analyze", str(tmp_path / "nope.csv"), "--rbw-ghz", "2.5")
    assert res.returncode == 2 and "not found" in res.stderr


def test_duplicate_point_is_named(tmp_path: Path) -> None:
    f = tmp_path / "dup.csv"
    f.write_text("frequency_thz,power_dbm\n193.1,-10\n193.2,-10\n193.1,-12\n")
    with pytest.raises(UserError, match=r"line 4: .*repeats line 2"):
        read_trace_file(f)


def test_yokogawa_legacy_csv(tmp_path: Path, trace: SyntheticTrace) -> None:
    head = [
        "70BCSV\t",
        "// AQ6370B OPTICAL SPECTRUM ANALYZER //",
        "3",
        '"CTRWL",1544.35',
        '"RESLN",0.020',
        '"WLFREQ",0',
        '"HIGH2"',
        "",
        '"[TRACE DATA]"',
    ]
    rows = [f"{w:.4f},{p:.3f}" for w, p in zip(trace.wavelength_nm, trace.power_dbm, strict=True)]
    rows.insert(5, "1530.0000,-210.000")  # "no data" marker is dropped
    f = tmp_path / "aq.csv"
    f.write_text("\r\n".join(head + rows) + "\r\n")
    tf = read_trace_file(f)
    assert tf.axis == "wavelength_nm" and tf.frequency_thz.size == trace.wavelength_nm.size
    assert tf.rbw_hint_ghz == pytest.approx(2.5, rel=0.01)
    assert np.all(np.diff(tf.frequency_thz) > 0)
    res = _odpm("analyze", str(f), "--rbw-ghz", "2.5", "--format", "json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["lit_channels"] == int(trace.truth.present.sum())
    # Issue 11: without --rbw-ghz the file's RESLN is used, and stderr says so.
    auto = _odpm("analyze", str(f), "--format", "json")
    assert auto.returncode == 0, auto.stderr
    assert "RESLN" in auto.stderr and "2.49" in auto.stderr
    assert json.loads(auto.stdout)["lit_channels"] == int(trace.truth.present.sum())


def test_rbw_needed_when_the_file_does_not_state_it(tmp_path: Path, trace: SyntheticTrace) -> None:
    f = _write(tmp_path / "t.csv", "wavelength_nm,power_dbm", trace.wavelength_nm, trace.power_dbm)
    res = _odpm("analyze", str(f))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "--rbw-ghz" in res.stderr
