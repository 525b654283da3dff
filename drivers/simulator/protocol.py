"""The ODPM-96 wire protocol as the simulated device speaks it (docs/protocol.md).

This module only turns command lines into answers and state changes; it does
no I/O, so it is tested without sockets and reused by every server.

SCPI rules implemented: a header is a ``:``-separated path of mnemonics, each
matching its short form (the upper-case letters of ``MEASure``) or its long
form, case-insensitively; a trailing ``?`` makes it a query; parameters follow
one space, separated by commas; several commands may share a line, separated
by ``;`` (each with its full path), and their answers are joined by ``;``.  A
command that fails queues an error and produces no answer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from drivers.simulator.device import SimulatedOdpm96
from drivers.simulator.model import (
    MAX_SYMBOL_RATE_GBD,
    RBW_MAX_GHZ,
    RBW_MIN_GHZ,
    TRACE_POINTS,
    TRACE_START_THZ,
    TRACE_STEP_GHZ,
    WSS_MAX_DEPTH_DB,
    WSS_MAX_EDGE_GHZ,
    WSS_MIN_EDGE_GHZ,
)
from drivers.stream import encode_frame, frame_length

#: ``MEAS:POW?`` value for a port below the detection floor.
BELOW_FLOOR_TEXT = "-99.99"


class ScpiError(Exception):
    """A command failed: queued as ``code,"message"`` and answered with silence."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code},{message}")
        self.code = code
        self.message = message


def _format_values(values: np.ndarray, fmt: str = "{:.2f}") -> str:
    return ",".join("NaN" if math.isnan(v) else fmt.format(v) for v in values.tolist())


def _int_arg(args: list[str], i: int, name: str, lo: int, hi: int) -> int:
    if i >= len(args):
        raise ScpiError(-109, f"Missing parameter;{name}")
    text = args[i]
    try:
        value = float(text)
    except ValueError:
        raise ScpiError(-104, f"Data type error;{name} must be a number, got {text}") from None
    if not value.is_integer():
        raise ScpiError(-224, f"Illegal parameter value;{name} must be an integer")
    if not lo <= value <= hi:
        raise ScpiError(-222, f"Data out of range;{name} must be {lo}..{hi}")
    return int(value)


def _float_arg(args: list[str], i: int, name: str, lo: float, hi: float) -> float:
    if i >= len(args):
        raise ScpiError(-109, f"Missing parameter;{name}")
    try:
        value = float(args[i])
    except ValueError:
        raise ScpiError(-104, f"Data type error;{name} must be a number, got {args[i]}") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ScpiError(-222, f"Data out of range;{name} must be {lo:g}..{hi:g}")
    return value


def _bool_arg(args: list[str], i: int, name: str, default: bool | None = None) -> bool:
    if i >= len(args):
        if default is not None:
            return default
        raise ScpiError(-109, f"Missing parameter;{name}")
    text = args[i].upper()
    if text in ("1", "ON"):
        return True
    if text in ("0", "OFF"):
        return False
    raise ScpiError(-224, f"Illegal parameter value;{name} must be ON|OFF|1|0")


def _expect_args(args: list[str], n: int) -> None:
    if len(args) > n:
        raise ScpiError(-108, "Parameter not allowed")


Handler = Callable[["ScpiSession", list[str]], "bytes | str | None"]


def _variants(pattern: str) -> list[str]:
    """Every accepted spelling (upper-case) of a header pattern like ``MEASure:POWer?``."""
    query = pattern.endswith("?")
    body = pattern.rstrip("?")
    if body.startswith("*"):
        return [body.upper() + ("?" if query else "")]
    options = []
    for node in body.split(":"):
        short = "".join(itertools.takewhile(str.isupper, node))
        options.append(sorted({short, node.upper()}))
    return [":".join(combo) + ("?" if query else "") for combo in itertools.product(*options)]


_COMMANDS: dict[str, Handler] = {}


def command(*patterns: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for pattern in patterns:
            for spelling in _variants(pattern):
                _COMMANDS[spelling] = fn
        return fn

    return register


@dataclass
class StreamState:
    active: bool = False
    sequence: int = 0


class ScpiSession:
    """One connection's view of the device: parses lines, returns answer bytes.

    The stream (on/off, frame sequence) is per connection; everything else is
    the shared :class:`SimulatedOdpm96`.
    """

    def __init__(self, device: SimulatedOdpm96) -> None:
        self.device = device
        self.stream = StreamState()

    @property
    def streaming(self) -> bool:
        return self.stream.active

    def handle_line(self, line: bytes) -> bytes:
        """Execute one line; return the answer with its LF, or ``b""`` when there is none."""
        try:
            text = line.decode("ascii").strip()
        except UnicodeDecodeError:
            self.device.push_error(-101, "Invalid character")
            return b""
        answers: list[bytes] = []
        for part in text.split(";"):
            part = part.strip()
            if not part:
                continue
            answer = self._execute(part)
            if answer is not None:
                answers.append(answer.encode("ascii") if isinstance(answer, str) else answer)
        if not answers:
            return b""
        return b";".join(answers) + b"\n"

    def _execute(self, text: str) -> bytes | str | None:
        header, _, rest = text.partition(" ")
        key = header.strip().upper().lstrip(":")
        handler = _COMMANDS.get(key)
        if handler is None:
            self.device.push_error(-113, "Undefined header")
            return None
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        if self.stream.active and handler is not _stream_stop and key.endswith("?"):
            # While streaming the line carries frames only: queries get no answer.
            self.device.push_error(-200, "Execution error;streaming, send STRE:STOP first")
            return None
        try:
            return handler(self, args)
        except ScpiError as exc:
            self.device.push_error(exc.code, exc.message)
            return None
        except ValueError as exc:
            self.device.push_error(-222, f"Data out of range;{exc}")
            return None

    def next_frame(self) -> bytes:
        """The next stream frame, with any injected faults applied."""
        dev = self.device
        power = dev.measure_powers_dbm()
        frame = encode_frame(self.stream.sequence, dev.device_time_us(), power)
        self.stream.sequence = (self.stream.sequence + 1) & 0xFFFF
        garbage, drop, crc = dev.take_frame_faults()
        if drop or crc:
            dev.record_damaged_frame((self.stream.sequence - 1) & 0xFFFF)
        if crc:
            frame = frame[:-2] + bytes([frame[-2] ^ 0xFF, frame[-1]])
        if drop:
            # A byte lost in the middle of the port data (the sync survives).
            k = len(frame) // 2
            frame = frame[:k] + frame[k + 1 :]
        if garbage:
            frame = dev.garbage(garbage) + frame
        return frame


# -- IEEE 488.2 common commands -----------------------------------------------------------
@command("*IDN?")
def _idn(s: ScpiSession, args: list[str]) -> str:
    _expect_args(args, 0)
    return f"PPI,ODPM-96,{s.device.serial_number},{s.device.firmware}"


@command("*RST")
def _rst(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 0)
    s.device.reset()
    s.stream.active = False


@command("*CLS")
def _cls(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 0)
    s.device.clear_errors()


@command("*OPC?")
def _opc(s: ScpiSession, args: list[str]) -> str:
    _expect_args(args, 0)
    return "1"


# -- system, status, grid ------------------------------------------------------------------
@command("SYSTem:ERRor?", "SYSTem:ERRor:NEXT?")
def _syst_err(s: ScpiSession, args: list[str]) -> str:
    _expect_args(args, 0)
    code, message = s.device.pop_error()
    return f'{code},"{message}"'


@command("SYSTem:TEMPerature?")
def _syst_temp(s: ScpiSession, args: list[str]) -> str:
    _expect_args(args, 0)
    return f"{s.device.temperature_c():.2f}"


@command("STATus:CONDition?")
def _stat_cond(s: ScpiSession, args: list[str]) -> str:
    _expect_args(args, 0)
    return str(s.device.status(measuring=s.stream.active))


@command("SENSe:GRID:STARt?")
def _grid_start(s: ScpiSession, args: list[str]) -> str:
    return f"{s.device.model.ports.first_thz:.3f}"


@command("SENSe:GRID:SPACing?")
def _grid_spacing(s: ScpiSession, args: list[str]) -> str:
    return f"{s.device.model.ports.spacing_ghz:.1f}"


@command("SENSe:GRID:COUNt?")
def _grid_count(s: ScpiSession, args: list[str]) -> str:
    return str(s.device.model.ports.count)


@command("SENSe:AVERage", "SENSe:AVERage:COUNt")
def _aver(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.averaging = _int_arg(args, 0, "averaging", 1, 64)


@command("SENSe:AVERage?", "SENSe:AVERage:COUNt?")
def _aver_q(s: ScpiSession, args: list[str]) -> str:
    return str(s.device.averaging)


# -- measurements ----------------------------------------------------------------------------
@command("MEASure:POWer?")
def _meas_pow(s: ScpiSession, args: list[str]) -> str:
    _expect_args(args, 0)
    power = s.device.measure_powers_dbm()
    text = np.char.mod("%.2f", np.nan_to_num(power, nan=-99.99))
    return ",".join(text.tolist())


@command("MEASure:TRACe?")
def _meas_trac(s: ScpiSession, args: list[str]) -> bytes:
    _expect_args(args, 0)
    payload = s.device.measure_trace_dbm().astype("<f4").tobytes()
    length = str(len(payload))
    return b"#" + str(len(length)).encode() + length.encode() + payload


@command("TRACe:STARt?")
def _trac_start(s: ScpiSession, args: list[str]) -> str:
    return f"{TRACE_START_THZ:.3f}"


@command("TRACe:STEP?")
def _trac_step(s: ScpiSession, args: list[str]) -> str:
    return f"{TRACE_STEP_GHZ:g}"


@command("TRACe:POINts?")
def _trac_points(s: ScpiSession, args: list[str]) -> str:
    return str(TRACE_POINTS)


@command("TRACe:RBW?")
def _trac_rbw(s: ScpiSession, args: list[str]) -> str:
    return f"{s.device.model.rbw_ghz:g}"


# -- stream -----------------------------------------------------------------------------------
@command("STREam:RATE")
def _stre_rate(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.stream_rate_hz = _float_arg(args, 0, "rate", 0.1, 1000.0)


@command("STREam:RATE?")
def _stre_rate_q(s: ScpiSession, args: list[str]) -> str:
    return f"{s.device.stream_rate_hz:g}"


@command("STREam:STARt")
def _stre_start(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 0)
    s.stream.active = True


@command("STREam:STOP")
def _stream_stop(s: ScpiSession, args: list[str]) -> None:
    s.stream.active = False


# -- simulator-only scenario control ------------------------------------------------------------
def _channel(s: ScpiSession, args: list[str]) -> int:
    return _int_arg(args, 0, "channel", 1, s.device.model.plan.count)


@command("SIMulation:CHANnel:POWer")
def _sim_chan_pow(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 2)
    s.device.model.set_channel_power(_channel(s, args), _float_arg(args, 1, "power", -60, 20))


@command("SIMulation:CHANnel:DARK")
def _sim_chan_dark(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 2)
    s.device.model.set_dark(_channel(s, args), _bool_arg(args, 1, "dark", default=True))


@command("SIMulation:CHANnel:OFFSet")
def _sim_chan_offs(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 2)
    s.device.model.set_offset(_channel(s, args), _float_arg(args, 1, "offset", -20, 20))


@command("SIMulation:CHANnel:SRATe")
def _sim_chan_srate(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 2)
    s.device.model.set_symbol_rate(
        _channel(s, args), _float_arg(args, 1, "symbol rate", 1, MAX_SYMBOL_RATE_GBD)
    )


@command("SIMulation:CHANnel:ROLLoff")
def _sim_chan_rolloff(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 2)
    s.device.model.set_rolloff(_channel(s, args), _float_arg(args, 1, "roll-off", 0, 1))


@command("SIMulation:ROLLoff")
def _sim_rolloff(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.model.set_rolloff(None, _float_arg(args, 0, "roll-off", 0, 1))


@command("SIMulation:CHANnel:SIGNaloff")
def _sim_chan_signal_off(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 2)
    s.device.model.set_signal_off(_channel(s, args), _bool_arg(args, 1, "signal off", default=True))


@command("SIMulation:SIGNaloff")
def _sim_signal_off(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.model.set_signals_off(_bool_arg(args, 0, "signal off", default=True))


@command("SIMulation:SIGNaloff?")
def _sim_signal_off_q(s: ScpiSession, args: list[str]) -> str:
    _expect_args(args, 0)
    return "1" if s.device.model.signals_off else "0"


# The ROADM's WSS stage (drivers/simulator/model.py, "ROADM").
@command("SIMulation:WSS", "SIMulation:WSS:STATe")
def _sim_wss(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.model.set_wss(enabled=_bool_arg(args, 0, "WSS state"))


@command("SIMulation:WSS?", "SIMulation:WSS:STATe?")
def _sim_wss_q(s: ScpiSession, args: list[str]) -> str:
    _expect_args(args, 0)
    return "1" if s.device.model.wss_enabled else "0"


@command("SIMulation:WSS:DEPTh")
def _sim_wss_depth(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.model.set_wss(depth_db=_float_arg(args, 0, "WSS depth", 0, WSS_MAX_DEPTH_DB))


@command("SIMulation:WSS:DEPTh?")
def _sim_wss_depth_q(s: ScpiSession, args: list[str]) -> str:
    _expect_args(args, 0)
    return f"{s.device.model.wss_depth_db:.3f}"


@command("SIMulation:WSS:GUARd")
def _sim_wss_guard(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    narrowest = float(s.device.model.slot_width_ghz.min())
    guard = _float_arg(args, 0, "WSS guard", 0, narrowest)
    if guard >= narrowest:
        raise ScpiError(
            -222, f"Data out of range;WSS guard must be below the narrowest slot, {narrowest:g} GHz"
        )
    s.device.model.set_wss(guard_ghz=guard)


@command("SIMulation:WSS:GUARd?")
def _sim_wss_guard_q(s: ScpiSession, args: list[str]) -> str:
    _expect_args(args, 0)
    return f"{s.device.model.wss_guard_ghz:.3f}"


@command("SIMulation:WSS:EDGE")
def _sim_wss_edge(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    edge = _float_arg(args, 0, "WSS edge", WSS_MIN_EDGE_GHZ, WSS_MAX_EDGE_GHZ)
    s.device.model.set_wss(edge_ghz=edge)


@command("SIMulation:WSS:EDGE?")
def _sim_wss_edge_q(s: ScpiSession, args: list[str]) -> str:
    _expect_args(args, 0)
    return f"{s.device.model.wss_edge_ghz:.3f}"


@command("SIMulation:WSS:BANDwidth?")
def _sim_wss_bandwidth_q(s: ScpiSession, args: list[str]) -> str:
    _expect_args(args, 0)
    return _format_values(s.device.model.wss_passband_ghz(), "{:.3f}")


@command("SIMulation:RBW")
def _sim_rbw(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.model.set_rbw(_float_arg(args, 0, "RBW", RBW_MIN_GHZ, RBW_MAX_GHZ))


@command("SIMulation:RBW?")
def _sim_rbw_q(s: ScpiSession, args: list[str]) -> str:
    return f"{s.device.model.rbw_ghz:g}"


@command("SIMulation:AMPlifier:GAIN")
def _sim_gain(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.model.set_amplifier(gain_db=_float_arg(args, 0, "gain", 5, 40))


@command("SIMulation:AMPlifier:NF")
def _sim_nf(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.model.set_amplifier(nf_db=_float_arg(args, 0, "noise figure", 3, 40))


@command("SIMulation:AMPlifier:TILT")
def _sim_tilt(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.model.set_amplifier(tilt_db=_float_arg(args, 0, "tilt", -10, 10))


@command("SIMulation:AMPlifier:RIPPle")
def _sim_ripple(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.model.set_amplifier(ripple_db=_float_arg(args, 0, "ripple", 0, 5))


@command("SIMulation:AMPlifier:GAIN?")
def _sim_gain_q(s: ScpiSession, args: list[str]) -> str:
    return f"{s.device.model.gain_db:.3f}"


@command("SIMulation:AMPlifier:NF?")
def _sim_nf_q(s: ScpiSession, args: list[str]) -> str:
    return f"{s.device.model.nf_db:.3f}"


@command("SIMulation:AMPlifier:TILT?")
def _sim_tilt_q(s: ScpiSession, args: list[str]) -> str:
    return f"{s.device.model.tilt_db:.3f}"


@command("SIMulation:AMPlifier:RIPPle?")
def _sim_ripple_q(s: ScpiSession, args: list[str]) -> str:
    return f"{s.device.model.ripple_db:.3f}"


@command("SIMulation:OSNR")
def _sim_osnr(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.model.set_mean_osnr(_float_arg(args, 0, "OSNR", 0, 60))


@command("SIMulation:TRUTh:OSNR?")
def _truth_osnr(s: ScpiSession, args: list[str]) -> str:
    return _format_values(s.device.model.truth_osnr_db(), "{:.3f}")


@command("SIMulation:TRUTh:POWer?")
def _truth_pow(s: ScpiSession, args: list[str]) -> str:
    return _format_values(s.device.model.truth_power_dbm(), "{:.3f}")


@command("SIMulation:TRUTh:OFFSet?")
def _truth_offs(s: ScpiSession, args: list[str]) -> str:
    return _format_values(s.device.model.truth_offset_ghz(), "{:.3f}")


@command("SIMulation:TRUTh:SRATe?")
def _truth_srate(s: ScpiSession, args: list[str]) -> str:
    return _format_values(s.device.model.symbol_rate_gbd, "{:.3f}")


@command("SIMulation:TRUTh:ROLLoff?")
def _truth_rolloff(s: ScpiSession, args: list[str]) -> str:
    return _format_values(s.device.model.rolloff, "{:.4f}")


@command("SIMulation:TRUTh:WSS?")
def _truth_wss(s: ScpiSession, args: list[str]) -> str:
    """The WSS's transmission at each carrier, in dB (0 with the WSS off)."""
    model = s.device.model
    return _format_values(10.0 * np.log10(model.wss_transmission_at(model.carrier_thz())), "{:.3f}")


@command("SIMulation:TRUTh:FREQuency?")
def _truth_freq(s: ScpiSession, args: list[str]) -> str:
    return _format_values(s.device.model.carrier_thz(), "{:.6f}")


@command("SIMulation:FAULt:GARBage")
def _fault_garbage(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.inject_garbage(_int_arg(args, 0, "bytes", 0, 65536))


@command("SIMulation:FAULt:DROP")
def _fault_drop(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.inject_dropped_bytes(_int_arg(args, 0, "frames", 0, 1_000_000))


@command("SIMulation:FAULt:CRC")
def _fault_crc(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.inject_crc_errors(_int_arg(args, 0, "frames", 0, 1_000_000))


@command("SIMulation:FAULt:STALl")
def _fault_stall(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.stall(_float_arg(args, 0, "seconds", 0, 3600))


@command("SIMulation:FAULt:DISConnect")
def _fault_disc(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    after = _int_arg(args, 0, "bytes", 0, 100_000_000) if args else 0
    s.device.disconnect(after)


@command("SIMulation:FAULt:TEC")
def _fault_tec(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    s.device.set_tec_locked(not _bool_arg(args, 0, "TEC fault"))


@command("SIMulation:BAUD")
def _sim_baud(s: ScpiSession, args: list[str]) -> None:
    _expect_args(args, 1)
    baud = _int_arg(args, 0, "baud", 0, 4_000_000)
    if 0 < baud < 300:
        raise ScpiError(-222, "Data out of range;baud must be 0 (unpaced) or 300..4000000")
    s.device.set_baud(baud or None)


@command("SIMulation:BAUD?")
def _sim_baud_q(s: ScpiSession, args: list[str]) -> str:
    return str(s.device.baud or 0)


#: Frame size on the wire for the simulator's 96 ports.
FRAME_BYTES = frame_length(96)


#: Every accepted spelling of a header pattern (short/long forms), for other emulators.
header_spellings = _variants
