"""DWDM frequency grids and channel plans (ITU-T G.694.1).

G.694.1 anchors every fixed grid at 193.1 THz: a slot's nominal centre is
``f = 193.1 THz + n x spacing`` for an integer ``n``.  We compute centres in
integer MHz and only then convert to THz, so that ``192.10`` really is 192.1
and channel lookups by frequency never miss by a rounding error.

Two things are described here and kept apart on purpose:

* the *port grid* of the device (an ODPM-96 has 96 AWG ports, 50 GHz apart,
  from 191.30 THz), which is what the hardware reports;
* the *channel plan* of the line system (by default 80 channels of 50 GHz
  from 192.10 to 196.05 THz, numbered 1..80 in ascending frequency), which is
  what people talk about.  The pipeline maps one onto the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

#: G.694.1 grid anchor.
ANCHOR_THZ = 193.1
_ANCHOR_MHZ = 193_100_000

#: Speed of light in vacuum, m/s (exact, SI).
SPEED_OF_LIGHT_M_S = 299_792_458.0

#: The ODPM-96 port grid: 96 ports, 50 GHz apart, from 191.30 THz (to 196.05 THz).
ODPM96_FIRST_PORT_THZ = 191.30
ODPM96_PORT_SPACING_GHZ = 50.0
ODPM96_PORT_COUNT = 96

#: The default C-band plan: 80 x 50 GHz channels, 192.10-196.05 THz.
DEFAULT_FIRST_CHANNEL_THZ = 192.10
DEFAULT_SPACING_GHZ = 50.0
DEFAULT_CHANNEL_COUNT = 80

FloatArray = npt.NDArray[np.float64]


def grid_frequency_thz(n: int | npt.ArrayLike, spacing_ghz: float) -> FloatArray:
    """Nominal centre of grid slot ``n`` (G.694.1: 193.1 THz + n x spacing).

    Computed in integer MHz so that ``n=-20, spacing 50`` gives exactly 192.1.
    """
    spacing_mhz = round(spacing_ghz * 1000)
    mhz = _ANCHOR_MHZ + np.asarray(n, dtype=np.int64) * spacing_mhz
    return np.asarray(mhz / 1e6, dtype=np.float64)


def grid_index(frequency_thz: float, spacing_ghz: float) -> int:
    """The ``n`` of the G.694.1 slot nearest ``frequency_thz``."""
    return round((frequency_thz - ANCHOR_THZ) * 1000.0 / spacing_ghz)


def wavelength_nm_to_frequency_thz(wavelength_nm: npt.ArrayLike) -> FloatArray:
    """Vacuum wavelength to optical frequency: f = c / lambda."""
    return np.asarray(SPEED_OF_LIGHT_M_S / np.asarray(wavelength_nm, dtype=np.float64) / 1e3)


def frequency_thz_to_wavelength_nm(frequency_thz: npt.ArrayLike) -> FloatArray:
    """Optical frequency to vacuum wavelength: lambda = c / f."""
    return np.asarray(SPEED_OF_LIGHT_M_S / np.asarray(frequency_thz, dtype=np.float64) / 1e3)


@dataclass(frozen=True)
class PortGrid:
    """The photodiode ports of a monitor: ``count`` slots ``spacing_ghz`` apart."""

    first_thz: float = ODPM96_FIRST_PORT_THZ
    spacing_ghz: float = ODPM96_PORT_SPACING_GHZ
    count: int = ODPM96_PORT_COUNT

    @property
    def frequencies_thz(self) -> FloatArray:
        first_n = grid_index(self.first_thz, self.spacing_ghz)
        return grid_frequency_thz(np.arange(first_n, first_n + self.count), self.spacing_ghz)


@dataclass(frozen=True)
class ChannelPlan:
    """Channels of a line system, numbered 1..N in ascending frequency.

    Either a regular G.694.1 plan (``first_thz``, ``spacing_ghz``, ``count``) or
    a custom plan (``custom_thz``: explicit centres, with ``spacing_ghz`` the
    slot width used for integration and noise midpoints).
    """

    first_thz: float = DEFAULT_FIRST_CHANNEL_THZ
    spacing_ghz: float = DEFAULT_SPACING_GHZ
    count: int = DEFAULT_CHANNEL_COUNT
    custom_thz: tuple[float, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.spacing_ghz <= 0:
            raise ValueError(f"spacing_ghz must be positive, got {self.spacing_ghz}")
        if self.custom_thz is not None:
            centres = np.asarray(self.custom_thz, dtype=np.float64)
            if centres.size == 0:
                raise ValueError("a custom channel plan needs at least one frequency")
            if np.any(np.diff(centres) <= 0):
                raise ValueError("custom channel frequencies must be strictly ascending")
            object.__setattr__(self, "count", int(centres.size))
        elif self.count < 1:
            raise ValueError(f"count must be at least 1, got {self.count}")

    @classmethod
    def c_band_50ghz(cls) -> ChannelPlan:
        """80 channels x 50 GHz, 192.10-196.05 THz (the ODPM-96 default)."""
        return cls(DEFAULT_FIRST_CHANNEL_THZ, 50.0, 80)

    @classmethod
    def c_band_100ghz(cls) -> ChannelPlan:
        """40 channels x 100 GHz, 192.10-196.00 THz."""
        return cls(DEFAULT_FIRST_CHANNEL_THZ, 100.0, 40)

    @classmethod
    def custom(cls, frequencies_thz: Sequence[float], slot_width_ghz: float) -> ChannelPlan:
        return cls(
            first_thz=float(frequencies_thz[0]),
            spacing_ghz=slot_width_ghz,
            custom_thz=tuple(float(f) for f in frequencies_thz),
        )

    @property
    def frequencies_thz(self) -> FloatArray:
        """Channel centres in THz, ascending; index ``i`` is channel ``i + 1``."""
        if self.custom_thz is not None:
            return np.asarray(self.custom_thz, dtype=np.float64)
        first_n = grid_index(self.first_thz, self.spacing_ghz)
        return grid_frequency_thz(np.arange(first_n, first_n + self.count), self.spacing_ghz)

    @property
    def channel_numbers(self) -> npt.NDArray[np.int64]:
        return np.arange(1, self.count + 1, dtype=np.int64)

    def frequency_of(self, channel: int) -> float:
        """Centre of a 1-based channel number; ValueError names the valid range."""
        if not 1 <= channel <= self.count:
            raise ValueError(f"channel must be in 1..{self.count}, got {channel}")
        return float(self.frequencies_thz[channel - 1])

    def port_indices(self, ports: PortGrid) -> npt.NDArray[np.int64]:
        """Index of the device port that carries each channel.

        Raises ValueError when a channel has no port within a quarter of the
        port spacing: a plan that does not fit the hardware is a config error,
        not something to guess around.
        """
        port_f = ports.frequencies_thz
        idx = np.searchsorted(port_f, self.frequencies_thz)
        idx = np.clip(idx, 1, port_f.size - 1)
        left_closer = np.abs(self.frequencies_thz - port_f[idx - 1]) <= np.abs(
            port_f[idx] - self.frequencies_thz
        )
        idx = np.where(left_closer, idx - 1, idx)
        miss_ghz = np.abs(port_f[idx] - self.frequencies_thz) * 1000.0
        bad = np.flatnonzero(miss_ghz > ports.spacing_ghz / 4)
        if bad.size:
            ch = int(bad[0]) + 1
            raise ValueError(
                f"channel {ch} at {self.frequencies_thz[bad[0]]:.3f} THz has no device port "
                f"(ports {port_f[0]:.2f}-{port_f[-1]:.2f} THz every {ports.spacing_ghz:g} GHz)"
            )
        return idx.astype(np.int64)
