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

A channel plan may also be *flexible* (G.694.1 clause 7, "flexible DWDM
grid"): each channel has its own slot, centred on ``193.1 THz + n x 6.25 GHz``
and ``m x 12.5 GHz`` wide, so 50 GHz 10G channels can sit beside 75 GHz 400G
and 150 GHz 800G channels.  Every plan has per-channel widths
(:attr:`ChannelPlan.widths_ghz`); a regular plan's widths are its spacing.
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

#: G.694.1 flexible grid: centres on 193.1 THz + n x 6.25 GHz, widths m x 12.5 GHz.
FLEX_CENTRE_STEP_GHZ = 6.25
FLEX_WIDTH_STEP_GHZ = 12.5
_FLEX_CENTRE_STEP_MHZ = 6250
_FLEX_WIDTH_STEP_MHZ = 12500
#: How far (MHz) a centre or width given in THz/GHz may sit from the flex grid and
#: still count as on it: decimal THz values like 193.10625 are not exact in binary.
_FLEX_TOLERANCE_MHZ = 0.5

#: The default C-band plan: 80 x 50 GHz channels, 192.10-196.05 THz.
DEFAULT_FIRST_CHANNEL_THZ = 192.10
DEFAULT_SPACING_GHZ = 50.0
DEFAULT_CHANNEL_COUNT = 80
#: Most channels a plan may have: the C and L bands (~9.5 THz) cut into the narrowest
#: flexgrid slot (12.5 GHz, ITU-T G.694.1) give ~760; more is a configuration mistake.
MAX_PLAN_CHANNELS = 800

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

    Either a regular G.694.1 plan (``first_thz``, ``spacing_ghz``, ``count``), a
    custom plan (``custom_thz``: explicit centres, with ``spacing_ghz`` the slot
    width of every channel), or a flexible-grid plan (``custom_thz`` with
    ``custom_widths_ghz``: each channel's own slot; build it with :meth:`flex` or
    :meth:`from_slots`, which check the G.694.1 flex grid).  Channel ``i``'s slot is
    ``centre_i +/- width_i / 2`` (:attr:`widths_ghz`) in every case.  A flex plan's
    ``spacing_ghz`` is its narrowest slot.
    """

    first_thz: float = DEFAULT_FIRST_CHANNEL_THZ
    spacing_ghz: float = DEFAULT_SPACING_GHZ
    count: int = DEFAULT_CHANNEL_COUNT
    custom_thz: tuple[float, ...] | None = field(default=None)
    custom_widths_ghz: tuple[float, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.custom_widths_ghz is not None:
            self._check_slots()
            object.__setattr__(self, "spacing_ghz", float(min(self.custom_widths_ghz)))
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

    def _check_slots(self) -> None:
        """Per-channel slots: as many widths as centres, positive, ascending, no overlap."""
        if self.custom_thz is None or self.custom_widths_ghz is None:
            raise ValueError("a flex channel plan needs both centres and widths")
        centres = np.asarray(self.custom_thz, dtype=np.float64)
        widths = np.asarray(self.custom_widths_ghz, dtype=np.float64)
        if centres.size == 0:
            raise ValueError("a flex channel plan needs at least one channel")
        if widths.shape != centres.shape:
            raise ValueError(f"{centres.size} channel centres but {widths.size} widths")
        bad = np.flatnonzero(~(np.isfinite(widths) & (widths > 0)) | ~np.isfinite(centres))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"channel {i + 1}: width {widths[i]:g} GHz is not positive")
        step = np.diff(centres)
        bad = np.flatnonzero(step <= 0)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"channel {i + 2} at {centres[i + 1]:.5f} THz is not above channel {i + 1} "
                f"at {centres[i]:.5f} THz: channels must be in ascending frequency"
            )
        # Slot edges in MHz, rounded to 1 kHz: adjacent slots sharing an edge touch.
        upper_khz = np.round(centres[:-1] * 1e9 + widths[:-1] * 500e3)
        lower_khz = np.round(centres[1:] * 1e9 - widths[1:] * 500e3)
        bad = np.flatnonzero(upper_khz > lower_khz)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"channel {i + 2} ({centres[i + 1]:.5f} THz, {widths[i + 1]:g} GHz) overlaps "
                f"channel {i + 1} ({centres[i]:.5f} THz, {widths[i]:g} GHz)"
            )

    @classmethod
    def flex(cls, slots: Sequence[tuple[int, int]]) -> ChannelPlan:
        """A flex-grid plan from G.694.1 ``(n, m)`` pairs: centre 193.1 THz + n x 6.25 GHz,
        width m x 12.5 GHz; channels numbered 1..N in the order given (ascending)."""
        if len(slots) == 0:
            raise ValueError("a flex channel plan needs at least one channel")
        pairs = np.asarray(slots)
        if pairs.ndim != 2 or pairs.shape[1] != 2:
            raise ValueError("flex slots must be (n, m) pairs")
        if not np.array_equal(pairs, np.round(pairs)):
            i = int(np.flatnonzero(np.any(pairs != np.round(pairs), axis=1))[0])
            raise ValueError(f"channel {i + 1}: n and m must be integers, got {tuple(slots[i])}")
        n = pairs[:, 0].astype(np.int64)
        m = pairs[:, 1].astype(np.int64)
        bad = np.flatnonzero(m < 1)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"channel {i + 1}: m must be at least 1, got {m[i]}")
        centres = grid_frequency_thz(n, FLEX_CENTRE_STEP_GHZ)
        widths = m * FLEX_WIDTH_STEP_GHZ
        return cls(
            first_thz=float(centres[0]),
            custom_thz=tuple(float(f) for f in centres),
            custom_widths_ghz=tuple(float(w) for w in widths),
        )

    @classmethod
    def from_slots(cls, centres_thz: Sequence[float], widths_ghz: Sequence[float]) -> ChannelPlan:
        """A flex-grid plan from centres (THz) and widths (GHz), which must lie on the
        G.694.1 flex grid (6.25 GHz centres, 12.5 GHz widths); the error names the
        channel and which of the two is off the grid."""
        centres = np.asarray(centres_thz, dtype=np.float64)
        widths = np.asarray(widths_ghz, dtype=np.float64)
        if centres.size == 0:
            raise ValueError("a flex channel plan needs at least one channel")
        if widths.shape != centres.shape:
            raise ValueError(f"{centres.size} channel centres but {widths.size} widths")
        n, m = flex_indices(centres, widths)
        return cls.flex(list(zip(n.tolist(), m.tolist(), strict=True)))

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
    def is_flex(self) -> bool:
        """True for a plan with per-channel slot widths (built by :meth:`flex`)."""
        return self.custom_widths_ghz is not None

    @property
    def widths_ghz(self) -> FloatArray:
        """Each channel's slot width in GHz, ``(count,)``; a regular or custom plan's
        spacing repeated, so every user can treat every plan as per-channel."""
        if self.custom_widths_ghz is not None:
            return np.asarray(self.custom_widths_ghz, dtype=np.float64)
        return np.full(self.count, float(self.spacing_ghz))

    @property
    def edges_mhz(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Each channel's lower and upper slot edge in integer MHz (OpenConfig's unit)."""
        centre_mhz = np.round(self.frequencies_thz * 1e6)
        half_mhz = np.round(self.widths_ghz * 500.0)
        return (
            (centre_mhz - half_mhz).astype(np.int64),
            (centre_mhz + half_mhz).astype(np.int64),
        )

    @property
    def channel_numbers(self) -> npt.NDArray[np.int64]:
        return np.arange(1, self.count + 1, dtype=np.int64)

    def frequency_of(self, channel: int) -> float:
        """Centre of a 1-based channel number; ValueError names the valid range."""
        if not 1 <= channel <= self.count:
            raise ValueError(f"channel must be in 1..{self.count}, got {channel}")
        return float(self.frequencies_thz[channel - 1])

    def port_coverage(self, ports: PortGrid) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """The device ports whose centre lies inside each channel's slot.

        Returns ``(idx, valid)``, both ``(C, K)`` with ``K`` the most ports a slot
        covers; padding repeats a port and is False in ``valid``.  A port exactly on
        a slot edge belongs to the slot above it (slots are ``[lower, upper)``), so a
        port is never counted twice.  ValueError names a channel that covers no port.
        """
        port_mhz = np.round(ports.frequencies_thz * 1e6)
        lower, upper = self.edges_mhz
        start = np.searchsorted(port_mhz, lower, side="left")
        stop = np.searchsorted(port_mhz, upper, side="left")
        bad = np.flatnonzero(stop <= start)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"channel {i + 1} at {self.frequencies_thz[i]:.5f} THz "
                f"({self.widths_ghz[i]:g} GHz) covers no device port "
                f"(ports {port_mhz[0] / 1e6:.2f}-{port_mhz[-1] / 1e6:.2f} THz "
                f"every {ports.spacing_ghz:g} GHz)"
            )
        width = int((stop - start).max())
        steps = np.arange(width)
        valid = start[:, None] + steps[None, :] < stop[:, None]
        idx = np.minimum(start[:, None] + steps[None, :], (stop - 1)[:, None])
        return idx.astype(np.int64), valid

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


def flex_indices(
    centres_thz: npt.ArrayLike, widths_ghz: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """G.694.1 flex-grid ``(n, m)`` of each slot given as centre (THz) and width (GHz).

    ValueError names the first channel (1-based) whose centre is not on the 6.25 GHz
    grid or whose width is not a multiple of 12.5 GHz.
    """
    centres = np.asarray(centres_thz, dtype=np.float64)
    widths = np.asarray(widths_ghz, dtype=np.float64)
    offset_mhz = (centres - ANCHOR_THZ) * 1e6
    n = np.round(offset_mhz / _FLEX_CENTRE_STEP_MHZ)
    m = np.round(widths * 1000.0 / _FLEX_WIDTH_STEP_MHZ)
    off_centre = ~np.isfinite(centres) | (
        np.abs(offset_mhz - n * _FLEX_CENTRE_STEP_MHZ) > _FLEX_TOLERANCE_MHZ
    )
    off_width = (
        ~np.isfinite(widths)
        | (np.abs(widths * 1000.0 - m * _FLEX_WIDTH_STEP_MHZ) > _FLEX_TOLERANCE_MHZ)
        | (m < 1)
    )
    hit = np.flatnonzero(off_centre)
    if hit.size:
        i = int(hit[0])
        raise ValueError(
            f"channel {i + 1}: centre {centres[i]:.6f} THz is not on the 6.25 GHz flex grid "
            "(193.1 THz + n x 6.25 GHz)"
        )
    hit = np.flatnonzero(off_width)
    if hit.size:
        i = int(hit[0])
        raise ValueError(
            f"channel {i + 1}: width {widths[i]:g} GHz is not a positive multiple of 12.5 GHz"
        )
    return n.astype(np.int64), m.astype(np.int64)
