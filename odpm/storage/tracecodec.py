"""The compact form of a stored spectrum: 0.01 dB integers, delta, zigzag, byte planes, zlib.

A trace is ``power_dbm[K]`` on a frequency axis; the axis is stored once per
distinct axis elsewhere (content-hashed, see :mod:`odpm.storage.traces`), so a
stored trace is only its levels.  Each level is kept as an integer number of
:data:`LEVEL_STEP_DB` (0.01 dB: 50 times finer than the +/-0.5 dB absolute
accuracy of a channel monitor, so no analysis can tell the difference; the
re-analysis test holds a stored trace to the reading it gave live within 0.01 dB).

Why this chain (``bench/storage.py`` measures it beside raw float32):

* **delta**: a spectrum is smooth at the scale of its points, so the difference
  of neighbouring levels is small where the level itself is not; where the trace is
  sampled finely enough that slopes span many points (OSA traces of 17k points),
  the second difference is smaller still and is used instead (whichever sums
  smaller, flagged in the header);
* **zigzag** maps signed deltas to small unsigned ones (0, -1, 1, -2 -> 0, 1, 2, 3)
  so that their high bytes are mostly zero;
* **byte planes**: all low bytes, then all high bytes (the "shuffle" filter of
  Blosc/HDF5), so the compressor sees one long run of near-zero high bytes instead
  of every other byte;
* **zlib** (standard library; level 6, ``Z_FILTERED``): on the simulator's
  3,881-point traces it lands within a few percent of the order-0 entropy of the
  deltas (the reading noise of 0.02 dB is what cannot be compressed away).

Points below the instrument's floor are NaN; they are kept as a bit mask (only
when there is one) and the level repeated, so they cost almost nothing.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import numpy.typing as npt

__all__ = [
    "LEVEL_STEP_DB",
    "TraceCodecError",
    "decode_levels",
    "encode_levels",
    "quantise_levels",
]

#: Resolution of a stored level (dB).
LEVEL_STEP_DB = 0.01
_SCALE = round(1 / LEVEL_STEP_DB)
#: Format byte; a new layout gets a new value and old rows stay readable.
_FORMAT_ZLIB_PLANES = 1
#: Header: format, flags, byte planes, point count.
_HEADER = struct.Struct("<BBBI")
_FLAG_NAN = 1
_FLAG_ORDER2 = 2
#: Level 6 with the Z_FILTERED strategy (favours Huffman coding of small values over
#: string matches): smaller and faster than level 9's default on noisy deltas
#: (measured on both bench traces, see bench/storage.py).
_ZLIB_LEVEL = 6
#: Above this many points, Huffman coding with run lengths only (``Z_RLE``): on a
#: finely sampled trace (17k points) it is as small as string matching and about
#: three times faster; on a coarse one (4k points) string matching still finds the
#: repeated channel shapes and saves 6 % (bench/storage.py measures both).
_RLE_ABOVE_POINTS = 8192
#: Levels a 4-byte integer of 0.01 dB can hold with room for deltas (+/-10^7 dB).
_MAX_ABS_DB = 1e7


class TraceCodecError(ValueError):
    """A blob that is not a stored trace, or levels that cannot be stored."""


def quantise_levels(power_dbm: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """What a trace reads back as after storing (0.01 dB steps, NaN kept)."""
    p = np.asarray(power_dbm, dtype=np.float64)
    return np.round(p * _SCALE) / _SCALE


def encode_levels(power_dbm: npt.ArrayLike) -> bytes:
    """``power_dbm`` (any float array, NaN allowed) as a compact blob."""
    p = np.asarray(power_dbm, dtype=np.float64).ravel()
    nan = np.isnan(p)
    if np.isinf(p).any() or (p.size and np.nanmax(np.abs(p), initial=0.0) > _MAX_ABS_DB):
        raise TraceCodecError("trace levels must be finite dBm values (or NaN below the floor)")
    q = np.round(np.where(nan, 0.0, p) * _SCALE).astype(np.int64)
    has_nan = bool(nan.any())
    if has_nan:
        # Repeat the previous level under a NaN: a zero delta costs nothing.
        idx = np.where(nan, 0, np.arange(p.size))
        np.maximum.accumulate(idx, out=idx)
        q = q[idx]
        if nan[0]:
            first = np.flatnonzero(~nan)
            q[: first[0] if first.size else p.size] = q[first[0]] if first.size else 0
    # Second differences when they are smaller (a finely sampled trace, whose slopes
    # span many points); first differences otherwise (noise dominates).
    delta = np.diff(q, prepend=np.int64(0))
    order = 1
    if delta.size > 2:
        delta2 = np.diff(delta, prepend=np.int64(0))
        if np.abs(delta2).sum() < np.abs(delta).sum():
            delta, order = delta2, 2
    zig = ((delta << 1) ^ (delta >> 63)).astype(np.uint64)
    top = int(zig.max()) if zig.size else 0
    planes = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4
    width = np.dtype(f"<u{planes}")
    shuffled = zig.astype(width).view(np.uint8).reshape(-1, planes).T.tobytes()
    strategy = zlib.Z_RLE if p.size > _RLE_ABOVE_POINTS else zlib.Z_FILTERED
    packer = zlib.compressobj(_ZLIB_LEVEL, zlib.DEFLATED, 15, 9, strategy)
    body = packer.compress(shuffled) + packer.flush()
    flags = (_FLAG_NAN if has_nan else 0) | (_FLAG_ORDER2 if order == 2 else 0)
    mask = np.packbits(nan).tobytes() if has_nan else b""
    return _HEADER.pack(_FORMAT_ZLIB_PLANES, flags, planes, p.size) + mask + body


def decode_levels(blob: bytes) -> npt.NDArray[np.float64]:
    """The levels of :func:`encode_levels`, in dBm at 0.01 dB resolution, NaN restored."""
    if len(blob) < _HEADER.size:
        raise TraceCodecError(f"stored trace too short ({len(blob)} bytes)")
    fmt, flags, planes, n = _HEADER.unpack_from(blob)
    if fmt != _FORMAT_ZLIB_PLANES or planes not in (1, 2, 4):
        raise TraceCodecError(f"unknown stored trace format {fmt}/{planes}")
    pos = _HEADER.size
    nan: npt.NDArray[np.bool_] | None = None
    if flags & _FLAG_NAN:
        mask_len = (n + 7) // 8
        nan = np.unpackbits(np.frombuffer(blob, np.uint8, mask_len, pos), count=n).astype(bool)
        pos += mask_len
    try:
        raw = zlib.decompress(blob[pos:])
    except zlib.error as exc:
        raise TraceCodecError(f"stored trace is corrupt: {exc}") from None
    if len(raw) != n * planes:
        raise TraceCodecError(f"stored trace holds {len(raw)} bytes for {n} points")
    zig = (
        np.frombuffer(raw, np.uint8)
        .reshape(planes, n)
        .T.copy()
        .view(np.dtype(f"<u{planes}"))
        .ravel()
        .astype(np.int64)
    )
    delta = (zig >> 1) ^ -(zig & 1)
    q = np.cumsum(delta)
    if flags & _FLAG_ORDER2:
        q = np.cumsum(q)
    levels = q / _SCALE
    if nan is not None:
        levels[nan] = np.nan
    return levels
