"""AQ6370 and MS9740 drivers against sent/reply byte pairs: every command they use, the login
handshake, block framing (length prefix, CR LF / LF terminator) and each fault, no sockets."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from drivers.aq6370 import Aq6370, LoginRefused, sweep_timeout_s
from drivers.errors import DeviceError, DeviceTimeout, ProtocolError
from drivers.ieee488 import encode_definite_block
from drivers.ms9740 import Ms9740
from drivers.osa import UnsupportedMode, trace_from_wavelengths
from drivers.registry import check_mode, needs_login
from odpm.air import air_to_vacuum_nm, vacuum_to_air_nm
from odpm.grid import wavelength_nm_to_frequency_thz
from tests.support.protocol import expected_protocol

AQ_NO_ERROR = (b":SYSTem:ERRor?\r\n", b'0,"No error"\r\n')
MS_NO_ERROR = (b":SYSTem:ERRor?\n", b'0,"No error"\n')
WAVELENGTH_NM = np.array([1550.0, 1550.1, 1550.2, 1550.3])
LEVEL_DBM = np.array([-60.0, -20.5, -21.25, -59.875])


def _aq_block(values: np.ndarray) -> bytes:
    return encode_definite_block(np.asarray(values, "<f8").tobytes(), b"\r\n")


def _aq_sweep_pairs(polls: list[bytes]) -> list[tuple[bytes | None, bytes | None]]:
    return [
        (b":SENSe:SWEep:POINts?\r\n", b"4\r\n"),
        (b":SENSe:SENSe?\r\n", b"1\r\n"),
        (b":SENSe:AVERage:COUNt?\r\n", b"1\r\n"),
        (b"*CLS;:INITiate\r\n", None),
        *[(b":STATus:OPERation:EVENt?\r\n", p + b"\r\n") for p in polls],
        AQ_NO_ERROR,
    ]


def _aq_trace_pairs(medium: bytes = b"1") -> list[tuple[bytes | None, bytes | None]]:
    return [
        *_aq_sweep_pairs([b"0", b"0", b"1"]),
        (b":SENSe:CORRection:RVELocity:MEDium?\r\n", medium + b"\r\n"),
        (b":SENSe:BANDwidth:RESolution?\r\n", b"5.00000000E-11\r\n"),
        (b":TRACe:X? TRA\r\n", _aq_block(WAVELENGTH_NM * 1e-9)),
        (b":TRACe:Y? TRA\r\n", _aq_block(LEVEL_DBM)),
    ]


# -- AQ6370: login -------------------------------------------------------------------------
def test_aq6370_login_handshake() -> None:
    pairs = [
        (b'open "lab"\r\n', b"AUTHENTICATE CRAM-MD5.\r\n"),
        (b"s3cret\r\n", b"ready\r\n"),
    ]
    with expected_protocol(pairs) as t:
        Aq6370(t).login("lab", "s3cret")


def test_aq6370_refused_login_never_shows_the_password(caplog: pytest.LogCaptureFixture) -> None:
    pairs = [
        (b'open "lab"\r\n', b"AUTHENTICATE CRAM-MD5.\r\n"),
        (b"hunter2-secret\r\n", b"error\r\n"),
    ]
    caplog.set_level(logging.DEBUG)
    with expected_protocol(pairs) as t, pytest.raises(LoginRefused) as info:
        Aq6370(t).login("lab", "hunter2-secret")
    assert "login refused" in str(info.value) and "lab" in str(info.value)
    assert "hunter2" not in str(info.value) and "hunter2" not in caplog.text


def test_aq6370_login_without_the_challenge_is_a_protocol_error() -> None:
    with (
        expected_protocol([(b'open "anonymous"\r\n', b"HELLO\r\n")]) as t,
        pytest.raises(ProtocolError, match="AUTHENTICATE"),
    ):
        Aq6370(t).login("anonymous", "")


def test_aq6370_login_rejects_a_user_that_would_break_the_command() -> None:
    with expected_protocol([]) as t, pytest.raises(ValueError, match="quotes"):
        Aq6370(t).login('a"b', "")


# -- AQ6370: identity, settings, errors ------------------------------------------------------
def test_aq6370_identify_sets_binary_format_and_single_sweep() -> None:
    pairs = [
        (b"*IDN?\r\n", b"YOKOGAWA,AQ6370D,91XX0001,02.08\r\n"),
        (b":FORMat:DATA REAL,64\r\n", None),
        AQ_NO_ERROR,
        (b":INITiate:SMODe SINGle\r\n", None),
        AQ_NO_ERROR,
    ]
    with expected_protocol(pairs) as t:
        d = Aq6370(t)
        assert d.identify().startswith("YOKOGAWA,AQ6370D")
    assert d.model_name == "AQ6370D"


def test_aq6370_identify_ascii_fallback() -> None:
    pairs = [
        (b"*IDN?\r\n", b"YOKOGAWA,AQ6374,1,1\r\n"),
        (b":FORMat:DATA ASCII\r\n", None),
        AQ_NO_ERROR,
        (b":INITiate:SMODe SINGle\r\n", None),
        AQ_NO_ERROR,
    ]
    with expected_protocol(pairs) as t:
        Aq6370(t, trace_format="ascii").identify()


def test_aq6370_identify_rejects_another_instrument() -> None:
    with (
        expected_protocol([(b"*IDN?\r\n", b"PPI,ODPM-96,1,1\r\n")]) as t,
        pytest.raises(ProtocolError, match="not a Yokogawa"),
    ):
        Aq6370(t).identify()


def test_aq6370_error_in_the_queue_is_a_device_error() -> None:
    pairs = [
        (b":SENSe:AVERage:COUNt 4\r\n", None),
        (b":SYSTem:ERRor?\r\n", b'-222,"Data out of range"\r\n'),
        AQ_NO_ERROR,
    ]
    with expected_protocol(pairs) as t, pytest.raises(DeviceError) as info:
        Aq6370(t).set_averaging(4)
    assert info.value.code == -222 and info.value.command == ":SENSe:AVERage:COUNt 4"


# -- AQ6370: sweep and trace -------------------------------------------------------------------
def test_aq6370_trace_binary_blocks_with_cr_lf() -> None:
    with expected_protocol(_aq_trace_pairs()) as t:
        d = Aq6370(t, poll_s=0.0)
        trace = d.read_trace()
    f = wavelength_nm_to_frequency_thz(WAVELENGTH_NM)
    # Uniform in wavelength, handed over ascending in frequency, not resampled.
    np.testing.assert_allclose(trace.frequency_thz, f[::-1], rtol=1e-13)
    np.testing.assert_array_equal(trace.power_dbm, LEVEL_DBM[::-1].astype(np.float32))
    # 0.05 nm at 1550.2 nm: f * dl / l.
    assert trace.rbw_ghz == pytest.approx(float(f[2]) * 1000 * 0.05 / 1550.2, rel=1e-12)
    assert d.last_sweep_timeout_s == pytest.approx(sweep_timeout_s(4, 1, 1))


def test_aq6370_air_wavelengths_are_converted_to_vacuum() -> None:
    with expected_protocol(_aq_trace_pairs(medium=b"0")) as t:
        trace = Aq6370(t, poll_s=0.0).read_trace()
    vac = air_to_vacuum_nm(WAVELENGTH_NM)
    np.testing.assert_allclose(trace.frequency_thz, wavelength_nm_to_frequency_thz(vac)[::-1])
    # About 0.42 nm at 1550 nm, i.e. more than half a 50 GHz slot.
    shift_ghz = (wavelength_nm_to_frequency_thz(WAVELENGTH_NM)[0] - trace.frequency_thz[-1]) * 1e3
    assert 50 < shift_ghz < 55


def test_aq6370_trace_ascii() -> None:
    pairs = [
        *_aq_trace_pairs()[:-2],
        (b":TRACe:X? TRA\r\n", b"+1.55000000E-006,+1.55010000E-006,1.5502E-6,1.5503E-6\r\n"),
        (b":TRACe:Y? TRA\r\n", b"-60.000,-20.500,-21.250,-59.875\r\n"),
    ]
    with expected_protocol(pairs) as t:
        trace = Aq6370(t, trace_format="ascii", poll_s=0.0).read_trace()
    np.testing.assert_allclose(
        trace.frequency_thz, wavelength_nm_to_frequency_thz(WAVELENGTH_NM)[::-1], rtol=1e-12
    )
    np.testing.assert_array_equal(trace.power_dbm, LEVEL_DBM[::-1].astype(np.float32))


def test_aq6370_block_terminated_by_lf_only_is_accepted() -> None:
    pairs = [(b":TRACe:Y? TRA\r\n", encode_definite_block(LEVEL_DBM.astype("<f8").tobytes()))]
    with expected_protocol(pairs) as t:
        d = Aq6370(t)
        np.testing.assert_array_equal(d._read_values(":TRACe:Y? TRA"), LEVEL_DBM)


@pytest.mark.parametrize(
    ("reply", "error", "match"),
    [
        # The header promises 32 bytes, 24 arrive, then the terminator: the count is wrong.
        (_aq_block(LEVEL_DBM)[:-10] + b"\r\n", DeviceTimeout, "byte"),
        # A byte too many: the terminator is not where the length says.
        (b"#232" + LEVEL_DBM.astype("<f8").tobytes() + b"X\r\n", ProtocolError, "terminator|LF"),
        (b"-60,-20\r\n", ProtocolError, "definite-length block"),
        (b"#212" + b"\x00" * 12 + b"\r\n", ProtocolError, "multiple of 8"),
    ],
)
def test_aq6370_malformed_blocks(reply: bytes, error: type[Exception], match: str) -> None:
    with expected_protocol([(b":TRACe:Y? TRA\r\n", reply)]) as t, pytest.raises(error, match=match):
        Aq6370(t)._read_values(":TRACe:Y? TRA")


def test_aq6370_x_and_y_of_different_lengths() -> None:
    pairs = [
        (b":TRACe:X? TRA\r\n", _aq_block(WAVELENGTH_NM * 1e-9)),
        (b":TRACe:Y? TRA\r\n", _aq_block(LEVEL_DBM[:3])),
    ]
    with expected_protocol(pairs) as t, pytest.raises(ProtocolError, match="4 wavelengths but 3"):
        Aq6370(t).read_sweep()


def test_aq6370_sweep_that_does_not_complete_times_out() -> None:
    # Sensitivity 1 (NAUT), 4 points, no averaging, no margin: a 1 s bound.
    pairs = [
        (b":SENSe:SWEep:POINts?\r\n", b"4\r\n"),
        (b":SENSe:SENSe?\r\n", b"1\r\n"),
        (b":SENSe:AVERage:COUNt?\r\n", b"1\r\n"),
        (b"*CLS;:INITiate\r\n", None),
    ] + [(b":STATus:OPERation:EVENt?\r\n", b"0\r\n")] * 5
    with expected_protocol(pairs) as t, pytest.raises(DeviceTimeout, match=r"within 1\.0 s"):
        Aq6370(t, poll_s=0.25, sweep_margin_s=0.0).sweep()


def test_aq6370_sweep_timeout_grows_with_points_sensitivity_and_averaging() -> None:
    base = sweep_timeout_s(1001, 1, 1)
    assert sweep_timeout_s(10001, 1, 1) > base
    assert sweep_timeout_s(1001, 5, 1) > sweep_timeout_s(1001, 3, 1) > base
    assert sweep_timeout_s(1001, 1, 4) > base


def test_aq6370_wdm_analysis_is_queried_not_written() -> None:
    pairs = [
        (b":CALCulate:CATegory WDM\r\n", None),
        AQ_NO_ERROR,
        (b":CALCulate\r\n", None),
        AQ_NO_ERROR,
        (b":CALCulate:DATA:NCHannels?\r\n", b"2\r\n"),
        (b":CALCulate:DATA:CWAVelengths?\r\n", b"1.55000E-06,1.55040E-06\r\n"),
        (b":CALCulate:DATA:CPOWers?\r\n", b"-20.1,-20.2\r\n"),
        (b":CALCulate:DATA:CSNR?\r\n", b"31.5,32.5\r\n"),
        (b":SENSe:CORRection:RVELocity:MEDium?\r\n", b"0\r\n"),
    ]
    with expected_protocol(pairs) as t:
        wdm = Aq6370(t).read_wdm_analysis()
    np.testing.assert_allclose(wdm.wavelength_nm, air_to_vacuum_nm([1550.0, 1550.4]))
    np.testing.assert_allclose(wdm.osnr_db, [31.5, 32.5])


def test_osa_has_no_port_or_stream_mode() -> None:
    with expected_protocol([]) as t:
        d = Aq6370(t)
        with pytest.raises(UnsupportedMode, match="no photodiode ports"):
            d.read_powers()
        with pytest.raises(UnsupportedMode, match="stream"):
            d.stream(10)
        assert d.read_temperature_c() is None
    with pytest.raises(ValueError, match="no power mode"):
        check_mode("ms9740", "power")
    check_mode("aq6370", "trace")


def test_login_only_on_raw_sockets() -> None:
    assert needs_login("socket://10.0.0.5:10001")
    assert needs_login("TCPIP::10.0.0.5::10001::SOCKET")
    assert not needs_login("GPIB0::1::INSTR")
    assert not needs_login("USB0::0x0B21::0x0039::91X000000::INSTR")


# -- MS9740 ----------------------------------------------------------------------------------------
def test_ms9740_identify_averaging_and_binary_trace() -> None:
    pairs = [
        (b"*IDN?\n", b"ANRITSU,MS9740A,6200000001,1.00\r\n"),
        (b":FORMat REAL\n", None),
        MS_NO_ERROR,
        (b"AVS 4\n", None),
        MS_NO_ERROR,
        (b"DCA?\n", b"1550.00,1550.30,4\r\n"),
        (b"*CLS\n", None),
        (b"SSI\n", None),
        (b"ESR2?\n", b"0\r\n"),
        (b"ESR2?\n", b"1\r\n"),
        MS_NO_ERROR,
        (b"RES?\n", b"0.05\r\n"),
        (b":TRACe:DATA:Y? TRA\n", encode_definite_block(LEVEL_DBM.astype("<f8").tobytes())),
    ]
    with expected_protocol(pairs) as t:
        d = Ms9740(t, poll_s=0.0)
        assert d.identify().startswith("ANRITSU,MS9740A")
        d.set_averaging(4)
        trace = d.read_trace()
    np.testing.assert_allclose(
        trace.frequency_thz, wavelength_nm_to_frequency_thz(WAVELENGTH_NM)[::-1], rtol=1e-12
    )
    np.testing.assert_array_equal(trace.power_dbm, LEVEL_DBM[::-1].astype(np.float32))
    assert d.last_sweep_timeout_s > 5.0 * 4  # averaging 4 stretches the bound


def test_ms9740_identify_ascii_format() -> None:
    pairs = [
        (b"*IDN?\n", b"ANRITSU,MS9740B,6200000002,2.00\n"),
        (b":FORMat ASCii\n", None),
        MS_NO_ERROR,
    ]
    with expected_protocol(pairs) as t:
        d = Ms9740(t, trace_format="ascii")
        d.identify()
    assert d.model_name == "MS9740B"


def test_ms9740_identify_rejects_another_instrument() -> None:
    with (
        expected_protocol([(b"*IDN?\n", b"YOKOGAWA,AQ6370D,1,1\n")]) as t,
        pytest.raises(ProtocolError, match="not an Anritsu MS9740"),
    ):
        Ms9740(t).identify()


def test_ms9740_ascii_levels_one_per_line_and_float32_blocks() -> None:
    lines = b"".join(f"{v}\r\n".encode() for v in LEVEL_DBM)
    with expected_protocol([(b"DMA?\n", lines)]) as t:
        np.testing.assert_array_equal(Ms9740(t, trace_format="ascii").read_levels(4), LEVEL_DBM)
    block = encode_definite_block(LEVEL_DBM.astype("<f4").tobytes())
    with expected_protocol([(b":TRACe:DATA:Y? TRA\n", block)]) as t:
        np.testing.assert_array_equal(Ms9740(t).read_levels(4), LEVEL_DBM)


@pytest.mark.parametrize(
    ("answer", "match"),
    [(b"1550,1560\r\n", "start,stop,points"), (b"1560,1550,1001\r\n", "implausible")],
)
def test_ms9740_bad_axis(answer: bytes, match: str) -> None:
    with expected_protocol([(b"DCA?\n", answer)]) as t, pytest.raises(ProtocolError, match=match):
        Ms9740(t).read_axis()


def test_ms9740_block_of_the_wrong_size() -> None:
    block = encode_definite_block(b"\x00" * 24)
    with (
        expected_protocol([(b":TRACe:DATA:Y? TRA\n", block)]) as t,
        pytest.raises(ProtocolError, match="expected 32"),
    ):
        Ms9740(t).read_levels(4)


def test_ms9740_error_after_the_sweep() -> None:
    pairs = [
        (b"*CLS\n", None),
        (b"SSI\n", None),
        (b"ESR2?\n", b"1\n"),
        (b":SYSTem:ERRor?\n", b'-200,"Execution error"\n'),
        MS_NO_ERROR,
    ]
    with expected_protocol(pairs) as t, pytest.raises(DeviceError, match="Execution error"):
        Ms9740(t, poll_s=0.0).sweep(4)


# -- conversions ---------------------------------------------------------------------------------
def test_air_vacuum_round_trip_and_size() -> None:
    vac = np.linspace(1525.0, 1570.0, 7)
    air = vacuum_to_air_nm(vac)
    np.testing.assert_allclose(air_to_vacuum_nm(air), vac, rtol=0, atol=1e-9)
    # Standard air at 1550 nm: n - 1 = 2.73e-4 (Birch & Downs), 0.42 nm.
    assert float(vac[3] - air[3]) == pytest.approx(0.4234, abs=2e-3)


def test_trace_from_wavelengths_rejects_mismatched_arrays() -> None:
    with pytest.raises(ProtocolError, match="do not match"):
        trace_from_wavelengths(WAVELENGTH_NM, LEVEL_DBM[:3], 0.05, "vacuum")
    with pytest.raises(ProtocolError, match="resolution"):
        trace_from_wavelengths(WAVELENGTH_NM, LEVEL_DBM, 0.0, "vacuum")
