"""Stream frame encoding and the resynchronising parser."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.stream import (
    StreamParser,
    crc16_ccitt_false,
    encode_frame,
    frame_length,
)


def _frames(first: int, count: int, rng: np.random.Generator) -> list[bytes]:
    out = []
    for s in range(first, first + count):
        power = rng.uniform(-45, 0, 96)
        power[rng.integers(0, 96)] = np.nan
        out.append(encode_frame(s, 100_000 * s, power))
    return out


def test_crc_is_ccitt_false() -> None:
    # The catalogue check value of CRC-16/CCITT-FALSE.
    assert crc16_ccitt_false(b"123456789") == 0x29B1


def test_frame_layout() -> None:
    frame = encode_frame(0x1234, 0xDEADBEEF, np.r_[-20.5, np.nan, np.full(94, 3.0)])
    assert len(frame) == frame_length(96) == 203
    assert frame[:2] == b"\xa5\x5a"
    assert frame[2:4] == b"\x34\x12"
    assert frame[4:8] == b"\xef\xbe\xad\xde"
    assert frame[8] == 96
    assert int.from_bytes(frame[9:11], "little", signed=True) == -2050
    assert int.from_bytes(frame[11:13], "little", signed=True) == -9999
    assert int.from_bytes(frame[-2:], "little") == crc16_ccitt_false(frame[2:-2])


def test_round_trip_in_any_chunking() -> None:
    rng = np.random.default_rng(1)
    frames = _frames(0, 30, rng)
    data = b"".join(frames)
    for chunk in (1, 7, 203, 1000, len(data)):
        parser = StreamParser()
        got = []
        for i in range(0, len(data), chunk):
            got += parser.feed(data[i : i + chunk])
        assert [f.sequence for f in got] == list(range(30))
        assert parser.crc_failures == 0 and parser.lost_frames == 0
    # Values survive to the 0.01 dB resolution, NaN stays NaN.
    p = got[5].power_dbm
    ref = np.frombuffer(frames[5][9:201], dtype="<i2") / 100.0
    nan = np.frombuffer(frames[5][9:201], dtype="<i2") == -9999
    np.testing.assert_array_equal(np.isnan(p), nan)
    np.testing.assert_allclose(p[~nan], ref[~nan])


def test_garbage_corrupted_crc_and_dropped_bytes() -> None:
    rng = np.random.default_rng(2)
    frames = _frames(0, 40, rng)
    stream = bytearray()
    corrupted = {5, 17, 30}
    dropped = {9, 22}
    for s, frame in enumerate(frames):
        if s % 6 == 0:
            stream += rng.integers(0, 256, 150, dtype=np.uint8).tobytes()  # garbage
        if s in corrupted:
            frame = frame[:-1] + bytes([frame[-1] ^ 0x5A])
        if s in dropped:
            frame = frame[:100] + frame[101:]
        stream += frame
    parser = StreamParser()
    got = []
    for i in range(0, len(stream), 97):
        got += parser.feed(bytes(stream[i : i + 97]))
    expected = [s for s in range(40) if s not in corrupted | dropped]
    assert [f.sequence for f in got] == expected
    assert parser.crc_failures >= len(corrupted | dropped)
    assert parser.lost_frames == len(corrupted | dropped)


def test_damaged_sync_counts_as_lost() -> None:
    frames = _frames(0, 3, np.random.default_rng(3))
    damaged = b"\xa5\x00" + frames[1][2:]
    parser = StreamParser()
    got = parser.feed(frames[0] + damaged + frames[2])
    assert [f.sequence for f in got] == [0, 2]
    assert parser.lost_frames == 1


def test_sequence_wraps_without_counting_a_loss() -> None:
    rng = np.random.default_rng(4)
    data = b"".join(encode_frame(s, 0, rng.uniform(-30, -10, 96)) for s in (65534, 65535, 0, 1, 3))
    parser = StreamParser()
    got = parser.feed(data)
    assert [f.sequence for f in got] == [65534, 65535, 0, 1, 3]
    assert parser.lost_frames == 1


def test_a_split_sync_word_is_kept() -> None:
    frame = _frames(0, 1, np.random.default_rng(5))[0]
    parser = StreamParser()
    assert parser.feed(b"junk" + frame[:1]) == []
    assert [f.sequence for f in parser.feed(frame[1:])] == [0]


def test_wrong_port_count_is_not_a_frame() -> None:
    parser = StreamParser(port_count=96)
    other = encode_frame(0, 0, np.zeros(4))
    assert parser.feed(other + bytes(300)) == []
    assert parser.crc_failures == 0


def test_port_count_is_validated() -> None:
    with pytest.raises(ValueError, match="port_count"):
        StreamParser(port_count=0)
