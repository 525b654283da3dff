"""Line protocol: the fast template encoder against a plain reference encoder."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from odpm.storage.journal import dequantise, quantise
from odpm.storage.lineprotocol import (
    CHANNEL_FLOAT_FIELDS,
    MEASUREMENT_CHANNEL,
    ROLLUP_FLOAT_FIELDS,
    ChannelBlock,
    ChannelLineEncoder,
    alarm_line,
    escape_tag,
    scan_line,
)


def reference_channel_lines(
    device: str,
    time_us: int,
    channel: npt.NDArray[np.integer],
    present: npt.NDArray[np.bool_],
    values: npt.NDArray[np.float64],
) -> str:
    """The obvious per-field encoding, field by field (slow, but clearly right)."""
    out = []
    for i, ch in enumerate(channel):
        fields = [
            f"{name}={float(values[k, i]):.4f}"
            for k, name in enumerate(CHANNEL_FLOAT_FIELDS)
            if math.isfinite(values[k, i])
        ]
        fields.append("present=" + ("true" if present[i] else "false"))
        dev = device.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        dev = dev.replace(" ", "\\ ")
        out.append(f"channel,device={dev},channel={int(ch):02d} {','.join(fields)} {time_us}\n")
    return "".join(out)


def stored(values: np.ndarray) -> np.ndarray:
    return dequantise(quantise(values).tobytes(), values.shape[0])


@pytest.mark.parametrize("seed", range(6))
def test_template_encoder_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 80
    values = rng.uniform(-40, 40, (4, n))
    values[rng.random((4, n)) < 0.2] = np.nan
    values[0, 3] = np.inf  # not representable in line protocol: omitted like NaN
    values = stored(values)
    present = rng.random(n) < 0.8
    channel = np.arange(1, n + 1)
    enc = ChannelLineEncoder(max_templates=2)
    device = "dev 1,a=b" if seed % 2 else "odpm-1"
    for t in (1_700_000_000_000_001, 1_700_000_000_100_000):  # second call: cached template
        got = enc.channel_lines(device, t, channel, present, values)
        assert got == reference_channel_lines(device, t, channel, present, values)


def test_quantised_values_print_exactly() -> None:
    values = stored(np.array([[-12.345678], [0.00001], [35.0], [-0.5]]))
    line = ChannelLineEncoder().channel_lines("d", 5, np.array([3]), np.array([True]), values)
    assert line == (
        "channel,device=d,channel=03 power_dbm=-12.3457,signal_power_dbm=0.0000,"
        "osnr_db=35.0000,offset_ghz=-0.5000,present=true 5\n"
    )


def test_rollup_lines_interleave_samples() -> None:
    values = stored(np.arange(12, dtype=float).reshape(6, 2) - 3.5)
    values[3:, 1] = np.nan
    got = ChannelLineEncoder().rollup_lines("d", 60_000_000, np.array([1, 80]), values, 42)
    lines = got.splitlines()
    assert lines[0].startswith("channel_1m,device=d,channel=01 power_dbm_mean=-3.5000,")
    assert lines[0].endswith(",samples=42i 60000000")
    assert "osnr_db" not in lines[1] and lines[1].endswith("samples=42i 60000000")
    assert lines[1].count("=") == 2 + 3 + 1  # two tags, three power fields, samples
    assert len(ROLLUP_FLOAT_FIELDS) == 6


def test_scan_line_types_and_nulls() -> None:
    line = scan_line(
        "d",
        "power",
        7,
        total_power_dbm=3.25,
        lit_channels=78,
        tilt_db=float("nan"),
        flatness_db=1.5,
        min_osnr_db=float("nan"),
        temperature_c=None,
    )
    assert (
        line == "scan,device=d,mode=power total_power_dbm=3.25,lit_channels=78i,flatness_db=1.5 7\n"
    )


def test_alarm_line_device_wide_is_all() -> None:
    line = alarm_line(
        "d", 9, kind="total_power_high", channel=None, active=False, value=12.5, threshold=None
    )
    assert line == "alarm,device=d,channel=all,kind=total_power_high active=false,value=12.5 9\n"
    assert ",channel=05," in alarm_line(
        "d", 9, kind="los", channel=5, active=True, value=None, threshold=None
    )


def test_bad_tags_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        escape_tag("")
    with pytest.raises(ValueError, match="newline"):
        escape_tag("a\nb")


def test_batch_render_matches_reference_block_by_block() -> None:
    """Several scans in one render: each block's lines, then its tail, in order.

    Covers what the lookup tables must get exactly right: negative values with a
    zero integer part, -0.0, values beyond the tables (formatted one by one),
    and a block without channels whose tail still lands in order.
    """
    rng = np.random.default_rng(42)
    enc = ChannelLineEncoder()
    blocks, want = [], []
    for k, n in enumerate((80, 3, 0, 17)):
        values = rng.uniform(-60, 60, (4, n))
        values[rng.random((4, n)) < 0.15] = np.nan
        if n >= 3:
            values[:, 0] = [-0.5, -0.0, 0.00004, -0.00004]
            values[:, 1] = [1234.5678, -99999.25, 999.99994, -999.99996]
        values = stored(values) if n else values
        present = rng.random(n) < 0.7
        channel = np.arange(1, n + 1)
        device, t = f"dev {k}", 1_700_000_000_000_000 + k
        tail = f"scan,device=dev\\ {k} lit_channels={k}i {t}\n"
        blocks.append(ChannelBlock(device, t, channel, values, enc.present_suffix(present), tail))
        want.append(reference_channel_lines(device, t, channel, present, values) + tail)
    got = enc.render(MEASUREMENT_CHANNEL, CHANNEL_FLOAT_FIELDS, blocks)
    assert got == "".join(want)
    assert "power_dbm=-0.5000," in got and "signal_power_dbm=-0.0000," in got
    # Beyond the tables (float32 storage keeps ~7 digits there, hence 1234.567x).
    assert "power_dbm=1234.567" in got and "signal_power_dbm=-99999.2500," in got


def test_render_refuses_mismatched_shapes() -> None:
    enc = ChannelLineEncoder()
    block = ChannelBlock(
        "d", 1, np.arange(1, 4), np.zeros((4, 2)), enc.present_suffix(np.ones(3, dtype=bool))
    )
    with pytest.raises(ValueError, match=r"values \(4, 2\).*4 fields x 3 channels"):
        enc.render(MEASUREMENT_CHANNEL, CHANNEL_FLOAT_FIELDS, [block])
