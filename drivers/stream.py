"""The ODPM-96 binary stream frame: encoding (for the simulator) and a resynchronising parser.

Frame, little-endian, 203 bytes for 96 ports::

    A5 5A | u16 sequence | u32 device time (us) | u8 n | n x i16 power (0.01 dBm) | u16 CRC

The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no
xorout) over sequence..data, which is exactly ``binascii.crc_hqx(data, 0xFFFF)``.
``-9999`` marks a port below the detection floor.

The parser is fed arbitrary chunks and returns whole frames.  It finds the
sync word with ``bytes.find`` (C speed), checks ``n`` and the CRC, and after a
bad candidate resumes the search one byte further, so garbage, dropped bytes
or a corrupted CRC cost only the damaged frame.  Accepted frames are decoded
in one numpy call per ``feed``.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SYNC = b"\xa5\x5a"
#: sync (2) + sequence (2) + time (4) + n (1)
HEADER_BYTES = 9
CRC_BYTES = 2
#: Encoded value for "below the detection floor".
BELOW_FLOOR_CODE = -9999
#: Port power resolution on the wire.
POWER_LSB_DB = 0.01
SEQUENCE_MODULUS = 1 << 16
DEVICE_TIME_MODULUS = 1 << 32

_HEADER = struct.Struct("<2sHIB")
_CRC = struct.Struct("<H")


def frame_length(port_count: int = 96) -> int:
    """Bytes in one frame of ``port_count`` ports (203 for the ODPM-96)."""
    return HEADER_BYTES + 2 * port_count + CRC_BYTES


def crc16_ccitt_false(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE (check value of b"123456789" is 0x29B1)."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_power_centi_dbm(power_dbm: npt.ArrayLike) -> npt.NDArray[np.int16]:
    """dBm -> i16 hundredths of a dBm, NaN -> ``-9999``, clipped to the i16 range."""
    p = np.asarray(power_dbm, dtype=np.float64)
    codes = np.round(np.nan_to_num(p, nan=BELOW_FLOOR_CODE * POWER_LSB_DB) / POWER_LSB_DB)
    return np.clip(codes, -32768, 32767).astype("<i2")


def encode_frame(sequence: int, device_time_us: int, power_dbm: npt.ArrayLike) -> bytes:
    """One frame as the device sends it (sequence and time wrap)."""
    codes = encode_power_centi_dbm(power_dbm)
    body = (
        _HEADER.pack(
            SYNC, sequence % SEQUENCE_MODULUS, device_time_us % DEVICE_TIME_MODULUS, codes.size
        )
        + codes.tobytes()
    )
    return body + _CRC.pack(crc16_ccitt_false(body[2:]))


@dataclass(frozen=True, slots=True)
class StreamFrame:
    """One decoded frame; ``power_dbm`` is NaN below the floor."""

    sequence: int
    device_time_us: int
    power_dbm: npt.NDArray[np.float64]


class StreamParser:
    """Turns a byte stream into frames, counting what it had to throw away.

    Counters:

    * ``frames`` - frames accepted;
    * ``crc_failures`` - candidates (a sync word with a plausible ``n``) whose
      CRC did not match: corrupted frames, frames missing a byte, and the rare
      sync pattern inside garbage;
    * ``lost_frames`` - frames missing from the sequence (gaps, modulo 2^16);
      a frame whose sync was destroyed shows up only here;
    * ``discarded_bytes`` - bytes skipped while searching for a frame.
    """

    def __init__(self, port_count: int = 96) -> None:
        if not 1 <= port_count <= 255:
            raise ValueError(f"port_count must be in 1..255, got {port_count}")
        self.port_count = port_count
        self.frame_bytes = frame_length(port_count)
        self._buf = bytearray()
        self._last_sequence: int | None = None
        self.frames = 0
        self.crc_failures = 0
        self.lost_frames = 0
        self.discarded_bytes = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[StreamFrame]:
        """Add bytes; return the frames completed by them, in order."""
        buf = self._buf
        buf += data
        size = self.frame_bytes
        n_ports = self.port_count
        crc_end = size - CRC_BYTES
        starts: list[int] = []
        pos = 0
        end = len(buf)
        while True:
            i = buf.find(SYNC, pos)
            if i < 0:
                # Keep a trailing 0xA5: it may be the first half of the next sync.
                keep = end - 1 if end and buf[end - 1] == 0xA5 else end
                self.discarded_bytes += keep - pos
                pos = keep
                break
            self.discarded_bytes += i - pos
            if end - i < size:
                pos = i
                break
            if (
                buf[i + 8] == n_ports
                and crc16_ccitt_false(memoryview(buf)[i + 2 : i + crc_end])
                == _CRC.unpack_from(buf, i + crc_end)[0]
            ):
                starts.append(i)
                pos = i + size
            else:
                if buf[i + 8] == n_ports:
                    self.crc_failures += 1
                self.discarded_bytes += 1
                pos = i + 1
        frames = self._decode(buf, starts) if starts else []
        del buf[:pos]
        return frames

    def _decode(self, buf: bytearray, starts: list[int]) -> list[StreamFrame]:
        size = self.frame_bytes
        if len(starts) == 1 or starts[-1] - starts[0] == size * (len(starts) - 1):
            raw = bytes(buf[starts[0] : starts[0] + size * len(starts)])
        else:
            raw = b"".join(buf[s : s + size] for s in starts)
        rows = np.frombuffer(raw, dtype=np.uint8).reshape(len(starts), size)
        seq = rows[:, 2:4].copy().view("<u2")[:, 0]
        dev_time = rows[:, 4:8].copy().view("<u4")[:, 0]
        codes = rows[:, HEADER_BYTES : size - CRC_BYTES].copy().view("<i2")
        power = codes * POWER_LSB_DB
        power[codes == BELOW_FLOOR_CODE] = np.nan
        seq_list = seq.tolist()
        time_list = dev_time.tolist()
        last = self._last_sequence
        out = []
        for k, s in enumerate(seq_list):
            if last is not None:
                self.lost_frames += (s - last - 1) % SEQUENCE_MODULUS
            last = s
            out.append(StreamFrame(s, time_list[k], power[k]))
        self._last_sequence = last
        self.frames += len(out)
        return out
