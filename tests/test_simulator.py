"""The simulated ODPM-96: physics against the documented formulas, and the SCPI engine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.simulator import OpticalModel, ScpiSession, SimulatedOdpm96
from drivers.simulator.model import (
    OSNR_REFERENCE_BANDWIDTH_GHZ,
    PLANCK_J_S,
    TRACE_RBW_GHZ,
    TRACE_STEP_GHZ,
)
from drivers.stream import StreamParser


def _session(seed: int = 7) -> ScpiSession:
    return ScpiSession(SimulatedOdpm96(seed=seed))


def _ask(s: ScpiSession, line: str) -> str:
    return s.handle_line(line.encode()).decode().rstrip("\n")


def _errors(s: ScpiSession) -> list[str]:
    out = []
    while (answer := _ask(s, "SYST:ERR?")) != '0,"No error"':
        out.append(answer)
    return out


# -- physics -----------------------------------------------------------------------------------
def test_osnr_truth_follows_the_single_amplifier_rule() -> None:
    m = OpticalModel(seed=1, nf_db=6.0, ripple_db=0.0)
    p_in = m.input_power_dbm
    f_hz = m.carrier_thz() * 1e12
    # 10 log10(h f B_ref / 1 mW): about -57.96 dBm at 193.4 THz.
    ref_dbm = 10 * np.log10(PLANCK_J_S * f_hz * OSNR_REFERENCE_BANDWIDTH_GHZ * 1e9 / 1e-3)
    g = 10 ** (m.gain_db / 10)
    expected = p_in - ref_dbm - m.nf_db + 10 * np.log10(g / (g - 1))
    np.testing.assert_allclose(m.truth_osnr_db(), expected, atol=1e-9)
    assert np.all(np.abs(m.truth_osnr_db() - (58 + p_in - 6.0)) < 0.2)


def test_set_mean_osnr_and_dark_channels() -> None:
    m = OpticalModel(seed=2)
    m.set_dark(10)
    m.set_mean_osnr(25.0)
    osnr = m.truth_osnr_db()
    assert math.isnan(osnr[9]) and math.isnan(m.truth_power_dbm()[9])
    assert np.nanmean(osnr) == pytest.approx(25.0, abs=1e-9)


def test_port_power_integrates_the_channel() -> None:
    m = OpticalModel(seed=3, nf_db=3.0)
    m.set_channel_power(40, -12.0)
    truth = m.truth_power_dbm()[39]
    assert truth == pytest.approx(-12.0, abs=1e-9)
    ports = m.ports.frequencies_thz
    port = int(np.argmin(np.abs(ports - m.channel_thz[39])))
    reading = 10 * np.log10(m.port_power_mw()[port])
    # A 30 GHz Gaussian port loses some of a wide channel's edges; never more than ~1.5 dB.
    assert truth - 1.5 < reading < truth + 0.3


def test_adjacent_port_crosstalk_for_a_narrow_channel() -> None:
    m = OpticalModel(seed=4, gain_db=10.0, nf_db=3.0)
    for ch in range(1, 81):
        m.set_dark(ch, ch != 40)
    m.set_symbol_rate(40, 1.0)
    m.set_offset(40, 0.0)
    m.set_channel_power(40, -10.0)
    p = 10 * np.log10(m.port_power_mw())
    k = int(np.argmax(p))
    assert p[k - 1] - p[k] == pytest.approx(-30.0, abs=1.5)
    assert p[k + 1] - p[k] == pytest.approx(-30.0, abs=1.5)


def test_trace_axis_rbw_and_ase_level() -> None:
    m = OpticalModel(seed=5, ripple_db=0.0)
    f = m.trace_frequency_thz()
    assert f[0] == pytest.approx(191.25) and f[-1] == pytest.approx(196.10)
    trace = m.read_trace_dbm(averaging=64)
    assert trace.dtype == np.float32 and trace.size == 3881
    # Far below the first channel only ASE is seen: its density times the RBW.
    sel = (f > 191.40) & (f < 191.80)
    expected = 10 * np.log10(m.ase_psd_at_monitor_mw_per_ghz(f[sel]) * TRACE_RBW_GHZ)
    np.testing.assert_allclose(trace[sel], expected, atol=0.05)
    # Integrating a channel's slot recovers its power (points are RBW-wide, step apart).
    c = m.carrier_thz()[20]
    slot = np.abs(f - c) < 0.025
    total = 10 * np.log10(np.sum(10 ** (trace[slot] / 10)) * TRACE_STEP_GHZ / TRACE_RBW_GHZ)
    assert total == pytest.approx(m.truth_power_dbm()[20], abs=0.2)


def test_rbw_is_settable_and_the_trace_follows_it() -> None:
    """``SIM:RBW`` widens the filter: a flat ASE reads density x RBW (3 dB more at 12.5
    than at 6.25 GHz), a channel's slot still integrates to its power, ``TRAC:RBW?``
    answers the new value, and an RBW out of range is refused with one error."""
    s = _session(seed=5)
    m = s.device.model
    f = m.trace_frequency_thz()
    sel = (f > 191.40) & (f < 191.80)
    assert _ask(s, "TRAC:RBW?") == "6.25"
    narrow = m.read_trace_dbm(averaging=64)
    _ask(s, "SIM:RBW 12.5")
    assert _ask(s, "TRAC:RBW?") == "12.5" and _ask(s, "SIM:RBW?") == "12.5"
    wide = m.read_trace_dbm(averaging=64)
    assert float(np.mean(wide[sel] - narrow[sel])) == pytest.approx(10 * math.log10(2), abs=0.05)
    c = m.carrier_thz()[20]
    slot = np.abs(f - c) < 0.025
    total = 10 * np.log10(np.sum(10 ** (wide[slot] / 10)) * TRACE_STEP_GHZ / 12.5)
    assert total == pytest.approx(m.truth_power_dbm()[20], abs=0.3)
    _ask(s, "SIM:RBW 0.5")
    (error,) = _errors(s)
    assert error.startswith("-222,") and "RBW" in error, error
    assert _ask(s, "SIM:RBW?") == "12.5"


def test_floor_and_reading_noise() -> None:
    m = OpticalModel(seed=6)
    m.set_channel_power(30, -60.0)
    m.set_amplifier(nf_db=3.0)
    a = m.read_port_powers_dbm()
    b = m.read_port_powers_dbm()
    lit = ~np.isnan(a) & ~np.isnan(b)
    diff = (a - b)[lit]
    assert 0 < np.std(diff) < 0.1  # noisy, but only a little
    m2 = OpticalModel(seed=6, gain_db=5.0)
    for ch in range(1, 81):
        m2.set_dark(ch)
    assert np.all(np.isnan(m2.read_port_powers_dbm()))  # ASE alone is below -60 dBm


# -- SCPI engine ---------------------------------------------------------------------------------
def test_short_and_long_forms_case_insensitive() -> None:
    s = _session()
    for header in ("MEAS:POW?", "MEASure:POWer?", "meas:pow?", ":Measure:Power?"):
        values = _ask(s, header).split(",")
        assert len(values) == 96
    assert _ask(s, "*idn?").startswith("PPI,ODPM-96,")
    assert s.handle_line(b"*OPC?\r") == b"1\n"
    assert _errors(s) == []


def test_unknown_header_and_bad_parameter_queue_errors_without_answer() -> None:
    s = _session()
    assert s.handle_line(b"MEAS:POWX?") == b""
    assert s.handle_line(b"SENS:AVER 99") == b""
    assert s.handle_line(b"SENS:AVER") == b""
    assert s.handle_line(b"SENS:AVER two") == b""
    assert s.handle_line(b"*IDN? 1") == b""
    errors = _errors(s)
    assert errors[0] == '-113,"Undefined header"'
    assert errors[1].startswith('-222,"Data out of range')
    assert errors[2].startswith('-109,"Missing parameter')
    assert errors[3].startswith('-104,"Data type error')
    assert errors[4].startswith('-108,"Parameter not allowed')
    assert _ask(s, "SENS:AVER?") == "1"


def test_error_queue_overflow_and_cls() -> None:
    s = _session()
    for _ in range(15):
        s.handle_line(b"NOPE")
    errors = _errors(s)
    assert len(errors) == 10 and errors[-1] == '-350,"Queue overflow"'
    s.handle_line(b"NOPE")
    s.handle_line(b"*CLS")
    assert _errors(s) == []


def test_settings_grid_and_trace_axis() -> None:
    s = _session()
    s.handle_line(b"SENS:AVER 8")
    assert _ask(s, "SENSe:AVERage?") == "8"
    s.handle_line(b"*RST")
    assert _ask(s, "SENS:AVER?") == "1"
    assert _ask(s, "SENS:GRID:STAR?") == "191.300"
    assert _ask(s, "SENS:GRID:SPAC?") == "50.0"
    assert _ask(s, "SENS:GRID:COUN?") == "96"
    assert _ask(s, "TRAC:STAR?") == "191.250"
    assert _ask(s, "TRAC:STEP?") == "1.25"
    assert _ask(s, "TRAC:POIN?") == "3881"
    assert _ask(s, "TRAC:RBW?") == "6.25"
    assert 44.0 < float(_ask(s, "SYST:TEMP?")) < 46.0
    assert _ask(s, "STAT:COND?") == "0"
    assert _ask(s, "*IDN?;SENS:AVER?") == "PPI,ODPM-96,SIM00001,1.0.0-sim;1"


def test_trace_block_format() -> None:
    s = _session()
    raw = s.handle_line(b"MEAS:TRAC?")
    assert raw[:2] == b"#5" and raw[2:7] == b"15524" and raw.endswith(b"\n")
    power = np.frombuffer(raw[7:-1], dtype="<f4")
    assert power.size == 3881 and -70 < power.min() < power.max() < 0


def test_truth_queries_match_the_model_and_scenario_commands() -> None:
    s = _session()
    s.handle_line(b"SIM:CHAN:POW 12,-25.5")
    s.handle_line(b"SIM:CHAN:DARK 13")
    s.handle_line(b"SIM:CHAN:OFFS 14,2.5")
    s.handle_line(b"SIM:OSNR 20")
    s.handle_line(b"SIM:AMP:TILT 1.5")
    assert _errors(s) == []
    power = np.array(_ask(s, "SIM:TRUTH:POW?").split(","), dtype=float)
    osnr = np.array(_ask(s, "SIM:TRUTH:OSNR?").split(","), dtype=float)
    offs = np.array(_ask(s, "SIM:TRUTH:OFFS?").split(","), dtype=float)
    assert power.size == osnr.size == offs.size == 80
    assert math.isnan(power[12]) and math.isnan(osnr[12])
    assert offs[13] == pytest.approx(2.5)
    np.testing.assert_allclose(osnr, s.device.model.truth_osnr_db(), atol=1e-3)
    assert float(_ask(s, "SIM:AMP:TILT?")) == pytest.approx(1.5)
    s.handle_line(b"SIM:CHAN:POW 81,-20")
    s.handle_line(b"SIM:AMP:GAIN 99")
    assert [e[:4] for e in _errors(s)] == ["-222", "-222"]


def test_status_bits_tec_and_los() -> None:
    s = _session()
    s.handle_line(b"SIM:FAUL:TEC ON")
    assert int(_ask(s, "STAT:COND?")) & 2
    assert _errors(s) == ['101,"TEC not locked"']
    assert float(_ask(s, "SYST:TEMP?")) > 47
    for ch in range(1, 81):
        s.handle_line(f"SIM:CHAN:DARK {ch},ON".encode())
    s.handle_line(b"SIM:AMP:GAIN 5")
    assert int(_ask(s, "STAT:COND?")) & 4


def test_streaming_answers_only_stre_stop() -> None:
    s = _session()
    s.handle_line(b"STRE:STAR")
    assert s.streaming
    assert s.handle_line(b"*IDN?") == b""
    parser = StreamParser()
    frames = parser.feed(b"".join(s.next_frame() for _ in range(3)))
    assert [f.sequence for f in frames] == [0, 1, 2]
    s.handle_line(b"STRE:STOP")
    assert not s.streaming
    assert _errors(s)[0].startswith("-200")


def test_frame_faults() -> None:
    s = _session()
    first = s.next_frame()
    s.handle_line(b"SIM:FAUL:CRC 1")
    s.handle_line(b"SIM:FAUL:DROP 1")
    s.handle_line(b"SIM:FAUL:GARB 50")
    a, b, c = s.next_frame(), s.next_frame(), s.next_frame()
    assert len(a) == 202 + 50 and len(b) == 203 and len(c) == 203
    parser = StreamParser()
    got = parser.feed(first + a + b + c)
    # frame 1 is preceded by garbage, has a bad CRC and a missing byte
    assert [f.sequence for f in got] == [0, 2, 3]
    assert parser.crc_failures >= 1 and parser.lost_frames == 1
