"""Stream benchmark: frame parse throughput, and paced stream delivery through the simulator.

Prints (1) frames/s parsed on one core by :class:`drivers.stream.StreamParser`
beside a naive byte-at-a-time parser measured in the same run (target >= 20,000
frames/s), and (2) frames/s delivered end to end at 115200 baud through the
simulator over a real TCP socket, as a fraction of the line-rate limit
(115200 / 10 bits / 203 bytes = 56.7 frames/s; target >= 0.97), with the
count of intact frames lost (target 0).  Runs in about 15 s.

    python3 bench/stream.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import binascii
import struct
import time

import numpy as np

from drivers.odpm96 import Odpm96
from drivers.simulator import SimulatorServer
from drivers.stream import StreamParser, encode_frame, frame_length
from drivers.transport import open_transport

BAUD = 115200
FRAME_BYTES = frame_length(96)
LINE_LIMIT_FPS = BAUD / 10 / FRAME_BYTES


def make_stream(n_frames: int, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    power = rng.uniform(-45.0, 0.0, (n_frames, 96))
    return b"".join(encode_frame(i, 1000 * i, power[i]) for i in range(n_frames))


def naive_parse(data: bytes) -> int:
    """Baseline: a byte-at-a-time state machine, decoding each frame with struct."""
    frames = 0
    buf = bytearray()
    for byte in data:
        buf.append(byte)
        if (len(buf) == 1 and buf[0] != 0xA5) or (len(buf) == 2 and buf[1] != 0x5A):
            buf.clear()
        elif len(buf) == FRAME_BYTES:
            body = bytes(buf[2:-2])
            if binascii.crc_hqx(body, 0xFFFF) == struct.unpack_from("<H", buf, FRAME_BYTES - 2)[0]:
                codes = struct.unpack_from("<96h", buf, 9)
                _ = [float("nan") if c == -9999 else c / 100 for c in codes]
                frames += 1
            buf.clear()
    return frames


def fast_parse(data: bytes, chunk: int = 4096) -> int:
    parser = StreamParser()
    frames = 0
    for i in range(0, len(data), chunk):
        frames += len(parser.feed(data[i : i + chunk]))
    return frames


def throughput(fn: object, data: bytes, expected: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn(data)  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
        assert n == expected, f"parsed {n} of {expected} frames"
    return expected / best


def paced(seconds: float) -> tuple[float, int, int, int]:
    """(frames/s delivered, frames, lost, CRC failures) at BAUD through the simulator."""
    with (
        SimulatorServer.start_tcp(seed=2, baud=BAUD) as server,
        Odpm96(open_transport(server.address, timeout_s=2.0)) as driver,
    ):
        with driver.stream(1000) as stream:
            for _ in range(20):  # let the line fill: measure the steady state
                next(stream)
            first_time = time.monotonic()
            count = 0
            deadline = first_time + seconds
            while time.monotonic() < deadline:
                count += len(stream.next_batch())
            elapsed = time.monotonic() - first_time
        return count / elapsed, count, stream.lost_frames, stream.crc_failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="duration of the paced run")
    args = ap.parse_args()

    fast_data = make_stream(20_000)
    naive_data = fast_data[: 2_000 * FRAME_BYTES]
    fast_fps = throughput(fast_parse, fast_data, 20_000)
    naive_fps = throughput(naive_parse, naive_data, 2_000, repeats=1)
    print("stream frame parsing, one core, 4 kB chunks, 203-byte frames:")
    print(f"  baseline (byte-at-a-time state machine): {naive_fps:>10,.0f} frames/s")
    print(
        f"  StreamParser (bytes.find + numpy):       {fast_fps:>10,.0f} frames/s"
        f"  ({fast_fps / naive_fps:.1f}x baseline; target >= 20,000: "
        f"{'met' if fast_fps >= 20_000 else 'NOT met'})"
    )

    fps, count, lost, crc = paced(args.seconds)
    fraction = fps / LINE_LIMIT_FPS
    print(f"paced stream at {BAUD} baud through the simulator over TCP ({args.seconds:g} s):")
    print(
        f"  {fps:.2f} frames/s of the {LINE_LIMIT_FPS:.2f} frames/s line limit = {fraction:.3f}"
        f" (target >= 0.97: {'met' if fraction >= 0.97 else 'NOT met'})"
    )
    print(f"  frames received {count}, intact frames lost {lost}, CRC failures {crc}")


if __name__ == "__main__":
    main()
