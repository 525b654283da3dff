"""The simulator's issue-15 physics: per-channel roll-off, the ROADM's WSS stage, per-channel
signal-off, flex-plan slot widths; their SCPI commands and ``odpm sim`` options."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from drivers.odpm96 import Odpm96
from drivers.simulator import OpticalModel, ScpiSession, SimulatedOdpm96
from drivers.simulator.model import FINE_START_THZ, FINE_STEP_GHZ
from drivers.transport import open_transport
from odpm.cli import main
from odpm.grid import ChannelPlan


def _session(seed: int = 7) -> ScpiSession:
    return ScpiSession(SimulatedOdpm96(seed=seed))


def _ask(s: ScpiSession, line: str) -> str:
    return s.handle_line(line.encode()).decode().rstrip("\n")


def _errors(s: ScpiSession) -> list[str]:
    out = []
    while (answer := _ask(s, "SYST:ERR?")) != '0,"No error"':
        out.append(answer)
    return out


def _values(s: ScpiSession, query: str) -> np.ndarray:
    return np.array(_ask(s, query).split(","), dtype=float)


def _box_gauss(d_ghz: float, passband_ghz: float, edge_ghz: float) -> float:
    """The Gaussian-edged box written independently of the model (math.erf)."""
    k = 1 / (math.sqrt(2) * edge_ghz)
    return 0.5 * (
        math.erf((d_ghz + passband_ghz / 2) * k) - math.erf((d_ghz - passband_ghz / 2) * k)
    )


def _level_at(m: OpticalModel, thz: float) -> float:
    """Noiseless trace level (mW) nearest a frequency."""
    m.read_trace_dbm()  # refresh the cache
    f = m.trace_frequency_thz()
    return float(m._trace_mw[np.argmin(np.abs(f - thz))])


# -- physics -----------------------------------------------------------------------------------
def test_truth_applies_the_wss_transmission_at_the_carrier() -> None:
    m = OpticalModel(seed=11)
    m.set_offset(30, 20.0)  # carrier 20 GHz off: on the passband's edge (21 GHz)
    m.set_symbol_rate(30, 1.0)
    m.set_dark(31)  # and its upper neighbour's passband closed
    osnr_off, power_off = m.truth_osnr_db(), m.truth_power_dbm()
    m.set_wss(enabled=True, depth_db=25.0, guard_ghz=8.0, edge_ghz=2.0)
    osnr_on, power_on = m.truth_osnr_db(), m.truth_power_dbm()
    lit = ~np.isnan(osnr_on)
    floor = 10 ** (-25.0 / 10)
    centres_ghz = m.channel_thz * 1000.0
    carrier_ghz = m.carrier_thz() * 1000.0
    for i in np.flatnonzero(lit):
        s = sum(_box_gauss(carrier_ghz[i] - centres_ghz[j], 42.0, 2.0) for j in np.flatnonzero(lit))
        t = floor + (1 - floor) * min(s, 1.0)
        expected = osnr_off[i] + (power_on[i] - power_off[i]) - 10 * math.log10(t)
        assert osnr_on[i] == pytest.approx(expected, abs=1e-4), f"channel {i + 1}"
    # a narrow channel on the passband's edge: its signal and the noise under it lose
    # the same (about 1.6 dB), so its OSNR stays
    assert power_on[29] < power_off[29] - 1.0
    assert osnr_on[29] == pytest.approx(osnr_off[29], abs=0.05)
    # a centred 10-28 GBd channel sits in the flat top: truth unchanged
    centred = lit & (np.abs(m.offset_ghz) <= 1.0)
    centred[[28, 29, 31]] = False
    np.testing.assert_allclose(osnr_on[centred], osnr_off[centred], atol=1e-3)


def test_set_channel_power_is_the_power_after_the_wss() -> None:
    m = OpticalModel(seed=12, wss=True, wss_guard_ghz=14.0)
    m.set_symbol_rate(5, 40.0)  # 44 GHz wide in a 36 GHz passband: clipped
    m.set_channel_power(5, -15.0)
    assert m.truth_power_dbm()[4] == pytest.approx(-15.0, abs=1e-9)
    assert m._signal_through_wss[4] < 0.95


def test_signal_off_keeps_the_noise_under_the_channel_dark_blocks_it() -> None:
    m = OpticalModel(seed=13, wss=True, wss_depth_db=20.0)
    centre = float(m.channel_thz[39])
    m.set_signal_off(40)
    noise_open = _level_at(m, centre)
    m.set_signal_off(40, False)
    lit_level = _level_at(m, centre)
    m.set_dark(40)
    noise_blocked = _level_at(m, centre)
    ase = float(m.ase_psd_at_monitor_mw_per_ghz(np.array([centre]))[0]) * m.rbw_ghz
    assert noise_open == pytest.approx(ase, rel=0.02)  # the full ASE: passband open
    assert lit_level > 10 * noise_open
    assert 10 * math.log10(noise_open / noise_blocked) == pytest.approx(20.0, abs=1.0)
    # signal off leaves the truth as it is with the channel on
    m.set_dark(40, False)
    before = m.truth_osnr_db()[39]
    m.set_signal_off(40)
    assert m.truth_osnr_db()[39] == before


def test_roll_off_per_channel_widens_the_spectrum() -> None:
    m = OpticalModel(seed=14, ripple_db=0.0, nf_db=3.0)
    m.set_symbol_rate(20, 10.0)
    m.set_offset(20, 0.0)
    m.set_rolloff(20, 0.0)
    m.set_rolloff(21, 1.0)  # another channel's roll-off does not touch channel 20

    def occupied_ghz() -> float:
        fine = m.fine_spectrum_mw()
        k0 = round((float(m.channel_thz[19]) - FINE_START_THZ) * 1000 / FINE_STEP_GHZ)
        window = fine[k0 - 80 : k0 + 81]
        return float(np.sum(window > 0.01 * window.max()) * FINE_STEP_GHZ)

    narrow = occupied_ghz()
    m.set_rolloff(20, 1.0)
    wide = occupied_ghz()
    assert narrow == pytest.approx(10.0, abs=1.0)  # (1 + 0) x 10 GBd
    assert wide == pytest.approx(18.0, abs=1.5)  # (1 + 1) x 10 GBd, less the faint tails
    with pytest.raises(ValueError, match=r"roll-off must be in 0\.\.1"):
        m.set_rolloff(20, 1.2)


@dataclass(frozen=True)
class _FlexPlan(ChannelPlan):
    """A flex plan as ChannelPlan will carry it (per-channel ``widths_ghz``)."""

    widths: tuple[float, ...] = ()

    @property
    def widths_ghz(self) -> np.ndarray:
        return np.asarray(self.widths, dtype=np.float64)


def test_flex_plan_passbands_follow_each_channel_width() -> None:
    # 50 GHz, 75 GHz and 150 GHz slots side by side (G.694.1 flexgrid: n x 6.25, m x 12.5)
    widths = (50.0, 75.0, 150.0, 75.0, 50.0)
    edges = 193.0 + np.concatenate(([0.0], np.cumsum(widths))) / 1000.0
    centres = (edges[:-1] + edges[1:]) / 2
    from_slots = getattr(ChannelPlan, "from_slots", None)  # the flex ChannelPlan, once merged
    plan = (
        from_slots(centres.tolist(), widths)
        if from_slots is not None
        else _FlexPlan(custom_thz=tuple(centres.tolist()), spacing_ghz=50.0, widths=widths)
    )
    m = OpticalModel(seed=15, plan=plan, wss=True, wss_depth_db=30.0, wss_guard_ghz=8.0)
    np.testing.assert_allclose(m.wss_passband_ghz(), np.array(widths) - 8.0)
    m.set_symbol_rate(3, 130.0)
    m.set_dark(4)
    # inside the 150 GHz slot's passband, 60 GHz from its centre: open; past it, in the
    # blocked 75 GHz slot: carved to the depth
    t = m.wss_transmission_at(np.array([centres[2] + 0.060, centres[2] + 0.080]))
    assert t[0] == pytest.approx(1.0, abs=1e-6)
    assert t[1] == pytest.approx(10 ** (-30 / 10), rel=0.01)
    assert np.array_equal(np.isfinite(m.truth_osnr_db()), [True, True, True, False, True])
    with pytest.raises(ValueError, match="below the narrowest slot"):
        m.set_wss(guard_ghz=50.0)


def test_a_scan_costs_no_more_with_the_wss_on() -> None:
    # The WSS is folded into the cached spectrum: after the first scan, scans reuse it.
    m = OpticalModel(seed=16, wss=True)
    m.read_trace_dbm()
    version = m._cache_version
    m.read_trace_dbm()
    m.read_port_powers_dbm()
    assert m._cache_version == version


# -- SCPI -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "query", "answer"),
    [
        ("SIM:WSS ON", "SIM:WSS?", "1"),
        ("SIM:WSS:STAT OFF", "SIM:WSS:STATE?", "0"),
        ("SIM:WSS:DEPT 27.5", "SIM:WSS:DEPTH?", "27.500"),
        ("SIM:WSS:GUAR 10", "SIM:WSS:GUARD?", "10.000"),
        ("SIM:WSS:EDGE 3.5", "SIM:WSS:EDGE?", "3.500"),
        ("SIM:SIGN ON", "SIM:SIGNALOFF?", "1"),
        ("SIMULATION:SIGNALOFF OFF", "SIM:SIGN?", "0"),
    ],
)
def test_scpi_settings_round_trip(command: str, query: str, answer: str) -> None:
    s = _session()
    assert _ask(s, command) == ""
    assert _ask(s, query) == answer
    assert _errors(s) == []


def test_scpi_roll_off_per_channel_and_for_all() -> None:
    s = _session()
    assert _ask(s, "SIM:CHAN:ROLL 3,0.35") == ""
    roll = _values(s, "SIM:TRUT:ROLL?")
    assert roll.size == 80 and roll[2] == 0.35 and roll[0] == 0.1
    assert _ask(s, "SIM:ROLL 0.2") == ""
    assert np.all(_values(s, "SIM:TRUTH:ROLLOFF?") == 0.2)
    assert _ask(s, "SIM:CHAN:SRAT 4,64") == ""
    assert _values(s, "SIM:TRUT:SRAT?")[3] == 64.0
    assert _errors(s) == []


def test_scpi_bandwidth_and_truth_transmission() -> None:
    s = _session()
    assert np.all(_values(s, "SIM:WSS:BAND?") == 44.0)  # 50 GHz slots, 6 GHz guard
    assert np.all(_values(s, "SIM:TRUT:WSS?") == 0.0)  # off: 0 dB everywhere
    _ask(s, "SIM:WSS ON;SIM:WSS:GUAR 20;SIM:CHAN:OFFS 9,14")
    assert np.all(_values(s, "SIM:WSS:BAND?") == 30.0)
    wss_db = _values(s, "SIM:TRUT:WSS?")
    assert wss_db[8] < -0.5 and abs(wss_db[0]) < 0.01  # channel 9 near its passband edge
    assert _errors(s) == []


def test_scpi_channel_signal_off_keeps_the_truth() -> None:
    s = _session()
    before = _ask(s, "SIM:TRUT:OSNR?")
    assert _ask(s, "SIM:CHAN:SIGN 5") == ""
    assert s.device.model.tx_off[4]
    assert _ask(s, "SIM:TRUT:OSNR?") == before
    assert _ask(s, "SIM:CHAN:SIGN 5,OFF") == ""
    assert not s.device.model.tx_off[4]
    assert _errors(s) == []


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("SIM:CHAN:ROLL 3,1.5", '-222,"Data out of range;roll-off must be 0..1"'),
        ("SIM:CHAN:ROLL 81,0.1", '-222,"Data out of range;channel must be 1..80"'),
        ("SIM:CHAN:ROLL 3", '-109,"Missing parameter;roll-off"'),
        ("SIM:ROLL -0.1", '-222,"Data out of range;roll-off must be 0..1"'),
        ("SIM:CHAN:SIGN 0", '-222,"Data out of range;channel must be 1..80"'),
        ("SIM:CHAN:SIGN 5,MAYBE", '-224,"Illegal parameter value;signal off must be ON|OFF|1|0"'),
        ("SIM:WSS MAYBE", '-224,"Illegal parameter value;WSS state must be ON|OFF|1|0"'),
        ("SIM:WSS:DEPT 61", '-222,"Data out of range;WSS depth must be 0..60"'),
        ("SIM:WSS:DEPT x", '-104,"Data type error;WSS depth must be a number, got x"'),
        ("SIM:WSS:EDGE 0", '-222,"Data out of range;WSS edge must be 0.1..20"'),
        (
            "SIM:WSS:GUAR 50",
            '-222,"Data out of range;WSS guard must be below the narrowest slot, 50 GHz"',
        ),
        ("SIM:WSS:GUAR -1", '-222,"Data out of range;WSS guard must be 0..50"'),
        ("SIM:WSS:DEPT 10,2", '-108,"Parameter not allowed"'),
    ],
)
def test_scpi_out_of_range_values_are_one_line_errors(command: str, error: str) -> None:
    s = _session()
    before = (s.device.model.wss_depth_db, s.device.model.rolloff.copy())
    assert _ask(s, command) == ""
    assert _errors(s) == [error]
    assert s.device.model.wss_depth_db == before[0]
    np.testing.assert_array_equal(s.device.model.rolloff, before[1])


# -- odpm sim ----------------------------------------------------------------------------------
def test_odpm_sim_options_set_the_scenario() -> None:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "odpm", "sim", "--tcp", "127.0.0.1:0", "--seed", "3"),
            *("--rolloff", "0.25", "--wss-depth-db", "18", "--wss-guard-ghz", "8"),
            *("--wss-edge-ghz", "1.5"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        with Odpm96(open_transport(address, timeout_s=5.0)) as drv:
            assert drv.query("SIM:WSS?") == "1"
            assert drv.query("SIM:WSS:DEPT?") == "18.000"
            assert drv.query("SIM:WSS:GUAR?") == "8.000"
            assert drv.query("SIM:WSS:EDGE?") == "1.500"
            assert set(drv.query("SIM:TRUT:ROLL?").split(",")) == {"0.2500"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rolloff", "1.5"], "roll-off must be in 0..1, got 1.5"),
        (["--wss-depth-db", "70"], "WSS depth must be in 0..60 dB, got 70"),
        (["--wss-edge-ghz", "2"], "add --wss-depth-db"),
        (["--wss-depth-db", "10", "--wss-guard-ghz", "55"], "WSS guard must be in 0..50 GHz"),
        (["--model", "aq6370", "--rolloff", "0.2"], "not --model aq6370"),
    ],
)
def test_odpm_sim_rejects_bad_options_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", "--tcp", "127.0.0.1:0", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("odpm sim: error:") and len(err.splitlines()) == 1
    assert message in err
