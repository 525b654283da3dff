"""The channel plan against ITU-T G.694.1 values."""

from __future__ import annotations

import numpy as np
import pytest

from odpm.grid import (
    ChannelPlan,
    PortGrid,
    frequency_thz_to_wavelength_nm,
    grid_frequency_thz,
    wavelength_nm_to_frequency_thz,
)


def test_anchor_is_193_1_thz() -> None:
    assert grid_frequency_thz(0, 50.0) == 193.1
    assert grid_frequency_thz(0, 100.0) == 193.1
    assert grid_frequency_thz(1, 12.5) == pytest.approx(193.1125, abs=1e-12)


def test_default_plan_is_80_channels_192_10_to_196_05() -> None:
    plan = ChannelPlan()
    f = plan.frequencies_thz
    assert plan.count == 80
    assert f[0] == 192.1  # channel 1, exact
    assert f[-1] == 196.05  # channel 80, exact
    assert plan.frequency_of(1) == 192.1
    assert plan.frequency_of(80) == 196.05
    assert np.allclose(np.diff(f), 0.05)
    assert list(plan.channel_numbers[[0, -1]]) == [1, 80]


def test_odpm96_ports_span_191_30_to_196_05() -> None:
    ports = PortGrid()
    f = ports.frequencies_thz
    assert f.size == 96
    assert f[0] == 191.3
    assert f[-1] == 196.05
    assert np.allclose(np.diff(f), 0.05)


def test_channels_map_to_the_last_80_ports() -> None:
    idx = ChannelPlan().port_indices(PortGrid())
    assert idx[0] == 16  # 192.10 THz is 16 ports above 191.30
    assert idx[-1] == 95
    assert np.array_equal(idx, np.arange(16, 96))


def test_100ghz_plan_has_40_channels_on_even_ports() -> None:
    plan = ChannelPlan.c_band_100ghz()
    assert plan.count == 40
    assert plan.frequencies_thz[0] == 192.1
    assert plan.frequencies_thz[-1] == 196.0
    assert np.array_equal(plan.port_indices(PortGrid()), np.arange(16, 96, 2))


def test_custom_plan_and_its_errors() -> None:
    plan = ChannelPlan.custom([192.5, 193.1, 194.0], 50.0)
    assert plan.count == 3
    assert list(plan.frequencies_thz) == [192.5, 193.1, 194.0]
    with pytest.raises(ValueError, match="ascending"):
        ChannelPlan.custom([193.1, 192.5], 50.0)
    with pytest.raises(ValueError, match="no device port"):
        ChannelPlan.custom([192.525], 50.0).port_indices(PortGrid())
    with pytest.raises(ValueError, match=r"1\.\.80"):
        ChannelPlan().frequency_of(81)


def test_wavelength_frequency_round_trip() -> None:
    # 193.1 THz is 1552.524 nm in vacuum (G.694.1 Table 1 lists 1552.52 nm).
    assert frequency_thz_to_wavelength_nm(193.1) == pytest.approx(1552.5244, abs=1e-4)
    f = np.array([191.3, 193.1, 196.05])
    assert np.allclose(wavelength_nm_to_frequency_thz(frequency_thz_to_wavelength_nm(f)), f)
