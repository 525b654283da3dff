"""ODPM-96 driver against sent/reply pairs: every command, every error path, no sockets."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from drivers.errors import DeviceError, DeviceTimeout, Disconnected, ProtocolError
from drivers.odpm96 import DeviceStatus, Odpm96
from drivers.stream import encode_frame
from tests.support.protocol import expected_protocol

NO_ERROR = (b"SYST:ERR?\n", b'0,"No error"\n')


def _powers_line(values: list[float]) -> bytes:
    return (",".join(f"{v:.2f}" for v in values) + "\n").encode()


def _block(payload: bytes) -> bytes:
    n = str(len(payload)).encode()
    return b"#" + str(len(n)).encode() + n + payload + b"\n"


AXIS = [
    (b"TRAC:STAR?\n", b"191.250\n"),
    (b"TRAC:STEP?\n", b"1.25\n"),
    (b"TRAC:POIN?\n", b"5\n"),
    (b"TRAC:RBW?\n", b"6.25\n"),
]


def test_identify_returns_the_idn_answer() -> None:
    with expected_protocol([(b"*IDN?\n", b"PPI,ODPM-96,SN42,2.1\r\n")]) as t:
        assert Odpm96(t).identify() == "PPI,ODPM-96,SN42,2.1"


def test_identify_rejects_another_instrument() -> None:
    with (
        expected_protocol([(b"*IDN?\n", b"ACME,OSA-1,1,1\n")]) as t,
        pytest.raises(ProtocolError, match="not an ODPM-96"),
    ):
        Odpm96(t).identify()


def test_reset_clear_and_opc() -> None:
    pairs = [(b"*RST\n", None), NO_ERROR, (b"*CLS\n", None), (b"*OPC?\n", b"1\n")]
    with expected_protocol(pairs) as t:
        d = Odpm96(t)
        d.reset()
        d.clear_status()
        assert d.operation_complete()


def test_read_port_grid() -> None:
    pairs = [
        (b"SENS:GRID:STAR?\n", b"191.300\n"),
        (b"SENS:GRID:SPAC?\n", b"50.0\n"),
        (b"SENS:GRID:COUN?\n", b"96\n"),
    ]
    with expected_protocol(pairs) as t:
        grid = Odpm96(t).read_port_grid()
    assert grid.count == 96 and grid.spacing_ghz == 50.0
    assert grid.frequencies_thz[0] == pytest.approx(191.3)
    assert grid.frequencies_thz[-1] == pytest.approx(196.05)


@pytest.mark.parametrize("answer", [b"fifty\n", b"nan\n"])
def test_read_port_grid_rejects_non_numbers(answer: bytes) -> None:
    with (
        expected_protocol([(b"SENS:GRID:STAR?\n", answer)]) as t,
        pytest.raises(ProtocolError, match="SENS:GRID:STAR"),
    ):
        Odpm96(t).read_port_grid()


def test_read_port_grid_rejects_an_implausible_grid() -> None:
    pairs = [
        (b"SENS:GRID:STAR?\n", b"191.300\n"),
        (b"SENS:GRID:SPAC?\n", b"50.0\n"),
        (b"SENS:GRID:COUN?\n", b"0\n"),
    ]
    with expected_protocol(pairs) as t, pytest.raises(ProtocolError, match="implausible"):
        Odpm96(t).read_port_grid()


def test_set_averaging_checks_the_error_queue() -> None:
    with expected_protocol([(b"SENS:AVER 16\n", None), NO_ERROR, (b"SENS:AVER?\n", b"16\n")]) as t:
        d = Odpm96(t)
        d.set_averaging(16)
        assert d.read_averaging() == 16


def test_set_averaging_raises_the_device_error_and_drains_the_queue() -> None:
    pairs = [
        (b"SENS:AVER 8\n", None),
        (b"SYST:ERR?\n", b'-222,"Data out of range"\n'),
        (b"SYST:ERR?\n", b'101,"TEC not locked"\n'),
        NO_ERROR,
    ]
    with expected_protocol(pairs) as t, pytest.raises(DeviceError) as info:
        Odpm96(t).set_averaging(8)
    assert info.value.code == -222
    assert info.value.message == "Data out of range"
    assert info.value.command == "SENS:AVER 8"


def test_set_averaging_rejects_out_of_range_without_sending() -> None:
    with expected_protocol([]) as t, pytest.raises(ValueError, match=r"1\.\.64"):
        Odpm96(t).set_averaging(65)


def test_error_queue_that_never_drains_is_a_protocol_error() -> None:
    pairs = [(b"SENS:AVER 2\n", None)] + [(b"SYST:ERR?\n", b'-100,"Command error"\n')] * 32
    with expected_protocol(pairs) as t, pytest.raises(ProtocolError, match="never reported 0"):
        Odpm96(t).set_averaging(2)


def test_malformed_error_answer() -> None:
    with expected_protocol([(b"SYST:ERR?\n", b"garbage\n")]) as t, pytest.raises(ProtocolError):
        Odpm96(t).read_error()


def test_temperature_and_status() -> None:
    pairs = [(b"SYST:TEMP?\n", b"45.01\n"), (b"STAT:COND?\n", b"6\n")]
    with expected_protocol(pairs) as t:
        d = Odpm96(t)
        assert d.read_temperature_c() == pytest.approx(45.01)
        status = d.read_status()
    assert status == DeviceStatus.TEC_UNLOCKED | DeviceStatus.LOSS_OF_SIGNAL
    assert DeviceStatus.MEASURING not in status


def test_stream_rate() -> None:
    pairs = [(b"STRE:RATE 25\n", None), NO_ERROR, (b"STRE:RATE?\n", b"25\n")]
    with expected_protocol(pairs) as t:
        d = Odpm96(t)
        d.set_stream_rate(25)
        assert d.read_stream_rate() == 25.0
    with expected_protocol([]) as t, pytest.raises(ValueError, match=r"0\.1\.\.1000"):
        Odpm96(t).set_stream_rate(2000)


def test_read_powers_maps_the_floor_to_nan() -> None:
    values = [-20.0 - 0.01 * i for i in range(96)]
    values[3] = -99.99
    with expected_protocol([(b"MEAS:POW?\n", _powers_line(values))]) as t:
        power = Odpm96(t).read_powers()
    assert power.shape == (96,)
    assert np.isnan(power[3])
    assert np.count_nonzero(np.isnan(power)) == 1
    assert power[95] == pytest.approx(-20.95)


def test_read_powers_wrong_count() -> None:
    with (
        expected_protocol([(b"MEAS:POW?\n", _powers_line([-20.0] * 95))]) as t,
        pytest.raises(ProtocolError, match="expected 96 values, got 95"),
    ):
        Odpm96(t).read_powers()


def test_read_powers_not_numbers() -> None:
    line = _powers_line([-20.0] * 95)[:-1] + b",x\n"
    with expected_protocol([(b"MEAS:POW?\n", line)]) as t, pytest.raises(ProtocolError):
        Odpm96(t).read_powers()


def test_read_powers_timeout_when_silent() -> None:
    with expected_protocol([(b"MEAS:POW?\n", None)]) as t, pytest.raises(DeviceTimeout):
        Odpm96(t).read_powers()


def test_non_ascii_answer() -> None:
    with expected_protocol([(b"SYST:TEMP?\n", b"\xff\xfe\n")]) as t, pytest.raises(ProtocolError):
        Odpm96(t).read_temperature_c()


def test_read_trace_and_axis_cache() -> None:
    values = np.array([-50.0, -40.5, -20.25, -40.0, -50.0], dtype="<f4")
    pairs = [
        *AXIS,
        (b"MEAS:TRAC?\n", _block(values.tobytes())),
        (b"MEAS:TRAC?\n", _block(values.tobytes())),
    ]
    with expected_protocol(pairs) as t:
        d = Odpm96(t)
        freq, power, rbw = d.read_trace()
        second = d.read_trace()  # the axis is not asked again
    assert power.dtype == np.float32
    np.testing.assert_array_equal(power, values)
    np.testing.assert_allclose(freq, 191.25 + 0.00125 * np.arange(5))
    assert rbw == 6.25
    np.testing.assert_array_equal(second.power_dbm, values)


def test_read_trace_payload_may_contain_newlines() -> None:
    values = np.frombuffer(b"\n\n\n\n" * 5, dtype="<f4")
    with expected_protocol([*AXIS, (b"MEAS:TRAC?\n", _block(values.tobytes()))]) as t:
        np.testing.assert_array_equal(Odpm96(t).read_trace().power_dbm, values)


def test_truncated_block_times_out() -> None:
    payload = np.zeros(5, dtype="<f4").tobytes()
    truncated = _block(payload)[:-7]
    pairs = [*AXIS, (b"MEAS:TRAC?\n", truncated)]
    with expected_protocol(pairs) as t, pytest.raises(DeviceTimeout):
        Odpm96(t).read_trace()


def test_block_with_the_wrong_point_count() -> None:
    payload = np.zeros(4, dtype="<f4").tobytes()
    with (
        expected_protocol([*AXIS, (b"MEAS:TRAC?\n", _block(payload))]) as t,
        pytest.raises(ProtocolError, match="expected 20"),
    ):
        Odpm96(t).read_trace()


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (b"-50.0,-40.0\n", "definite-length"),
        (b"#0\n", "definite-length"),
        (b"#2x0abcd\n", "not decimal"),
        (b"#220" + bytes(20) + b"X", "not followed by LF"),
    ],
)
def test_malformed_blocks(reply: bytes, match: str) -> None:
    with (
        expected_protocol([*AXIS, (b"MEAS:TRAC?\n", reply)]) as t,
        pytest.raises(ProtocolError, match=match),
    ):
        Odpm96(t).read_trace()


def test_implausible_trace_axis() -> None:
    pairs = [*AXIS[:2], (b"TRAC:POIN?\n", b"0\n"), AXIS[3]]
    with expected_protocol(pairs) as t, pytest.raises(ProtocolError, match="implausible"):
        Odpm96(t).read_trace()


def test_stream_yields_frames_and_stops() -> None:
    frames = b"".join(encode_frame(s, 1000 * s, np.full(96, -20.0 - s)) for s in range(5))
    pairs = [
        (b"STRE:RATE 50\n", None),
        NO_ERROR,
        (b"STRE:STAR\n", frames),
        (b"STRE:STOP\n", None),
    ]
    with expected_protocol(pairs) as t:
        d = Odpm96(t)
        with d.stream(50) as stream:
            got = [next(stream) for _ in range(5)]
        assert not t.lock._is_owned()  # type: ignore[attr-defined]
    assert [f.sequence for f in got] == [0, 1, 2, 3, 4]
    assert got[2].power_dbm[0] == pytest.approx(-22.0)
    assert got[4].device_time_us == 4000
    assert stream.crc_failures == 0 and stream.lost_frames == 0


def test_stream_read_times_out_when_the_device_is_silent() -> None:
    pairs = [(b"STRE:STAR\n", None), (b"STRE:STOP\n", None)]
    with expected_protocol(pairs) as t, Odpm96(t).stream() as stream, pytest.raises(DeviceTimeout):
        next(stream)


def test_closed_transport_is_disconnected() -> None:
    with expected_protocol([]) as t:
        d = Odpm96(t)
        d.close()
        with pytest.raises(Disconnected):
            d.identify()


def test_block_header_length_field_is_checked_against_struct() -> None:
    # A 4-digit length field: "#4" + "0020" + payload.
    payload = struct.pack("<5f", *[-30.0] * 5)
    reply = b"#40020" + payload + b"\n"
    with expected_protocol([*AXIS, (b"MEAS:TRAC?\n", reply)]) as t:
        assert Odpm96(t).read_trace().power_dbm[0] == pytest.approx(-30.0)
