"""What a raised-cosine channel looks like through the OSA's resolution filter.

A coherent channel of symbol rate ``R`` (GBd) and roll-off ``beta`` has a raised-cosine
power spectral density of unit integral (Proakis, *Digital Communications*, 9.2)::

    s(u) = 1/R                                          |u| <= (1 - beta) R / 2
         = 1/(2R) (1 + cos(pi/(beta R) (|u| - (1 - beta) R / 2)))   up to (1 + beta) R / 2

The trace reads it through the resolution filter ``H`` (peak 1, noise-equivalent
bandwidth RBW), so a channel of power ``P`` adds ``P x (s * H)(x - f_c)`` to the trace
point at ``x`` (the same convention as the rest of the pipeline: a flat density ``S``
reads ``S x RBW``).  ``H`` is taken as a Gaussian, as the simulator and the test
generator model it; a real OSA's filter is close to that near its centre, and a
different filter shape shows up as fit residuals and so as a larger uncertainty.

``s * H`` has no elementary closed form for the cosine taper, so it is tabulated once
per (RBW, roll-off) for a grid of symbol rates on a fine frequency grid (FFT
convolution) and looked up with linear interpolation in frequency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray

#: Symbol rates tabulated (GBd): 4 to 140 in 0.25 GBd steps (coherent transceivers run
#: up to ~130 GBd; 10G OOK sits near 10).
SYMBOL_RATE_MIN_GBD = 4.0
SYMBOL_RATE_MAX_GBD = 140.0
SYMBOL_RATE_STEP_GBD = 0.25
#: Frequency step of the table (GHz): fine against every RBW in use (>= 1 GHz).
TABLE_STEP_GHZ = 0.0625


def raised_cosine_psd(
    u_ghz: npt.ArrayLike, symbol_rate_gbd: npt.ArrayLike, rolloff: float
) -> FloatArray:
    """Unit-integral raised-cosine density (1/GHz) at offsets ``u_ghz`` from the carrier."""
    a = np.abs(np.asarray(u_ghz, dtype=np.float64))
    r = np.asarray(symbol_rate_gbd, dtype=np.float64)
    f1 = (1.0 - rolloff) * r / 2.0
    f2 = (1.0 + rolloff) * r / 2.0
    taper = 0.5 * (1.0 + np.cos(np.pi * (a - f1) / np.maximum(f2 - f1, 1e-12)))
    return np.asarray(np.where(a <= f1, 1.0, np.where(a <= f2, taper, 0.0)) / r)


@dataclass(frozen=True, eq=False)
class ShapeTable:
    """``(s * H)(u)`` for each tabulated symbol rate; rows are rates, columns ``u >= 0``
    (the shape is symmetric)."""

    rbw_ghz: float
    rolloff: float
    symbol_rate_gbd: FloatArray
    values: npt.NDArray[np.float64]
    #: Full width at half maximum of each row (GHz): the measured width maps to a rate.
    fwhm_ghz: FloatArray

    def rate_index(self, symbol_rate_gbd: npt.ArrayLike) -> npt.NDArray[np.intp]:
        """Nearest tabulated row of each rate (clipped to the table)."""
        r = np.asarray(symbol_rate_gbd, dtype=np.float64)
        i = np.rint((r - SYMBOL_RATE_MIN_GBD) / SYMBOL_RATE_STEP_GBD)
        i = np.where(np.isfinite(i), i, 0.0)
        out: npt.NDArray[np.intp] = np.clip(i, 0, self.symbol_rate_gbd.size - 1)
        return out.astype(np.intp)

    def rate_from_fwhm(self, fwhm_ghz: npt.ArrayLike) -> FloatArray:
        """Invert the (monotonic) width-vs-rate relation: the rate whose trace is that wide."""
        return np.asarray(
            np.interp(np.asarray(fwhm_ghz, dtype=np.float64), self.fwhm_ghz, self.symbol_rate_gbd)
        )

    def evaluate(self, row: npt.NDArray[np.intp], u_ghz: FloatArray) -> FloatArray:
        """``(s * H)(u)`` for rows ``row`` (broadcast against ``u_ghz``), zero beyond the table."""
        width = self.values.shape[1]
        last = width - 1
        x = np.minimum(np.abs(u_ghz) * (1.0 / TABLE_STEP_GHZ), float(last))
        i = np.minimum(x.astype(np.intp), last - 1)
        t = x - i
        flat = i + row * width  # one gather on the flattened table, not 2-D indexing
        v = self.values.ravel()
        lo = v.take(flat)
        # Beyond the table the shape is zero: every row ends in zeros (the tabulated
        # span ends well outside the widest shape), so clipping x there gives zero.
        return np.asarray(lo + (v.take(flat + 1) - lo) * t)


@lru_cache(maxsize=8)
def shape_table(rbw_ghz: float, rolloff: float) -> ShapeTable:
    """Build (once per RBW and roll-off) the table of :class:`ShapeTable`."""
    rates = np.arange(
        SYMBOL_RATE_MIN_GBD, SYMBOL_RATE_MAX_GBD + SYMBOL_RATE_STEP_GBD / 2, SYMBOL_RATE_STEP_GBD
    )
    sigma = rbw_ghz / math.sqrt(2 * math.pi)
    half_span = (1 + rolloff) * SYMBOL_RATE_MAX_GBD / 2 + 8 * sigma
    n_half = math.ceil(half_span / TABLE_STEP_GHZ)
    size = 1 << math.ceil(math.log2(4 * n_half))
    j = np.arange(size)
    u = np.where(j < size // 2, j, j - size) * TABLE_STEP_GHZ  # circular, centred at 0
    density = raised_cosine_psd(u[None, :], rates[:, None], rolloff)
    density /= density.sum(axis=1, keepdims=True) * TABLE_STEP_GHZ  # exact unit integral
    kernel = np.exp(-(u**2) / (2 * sigma**2))
    conv = np.fft.irfft(np.fft.rfft(density, axis=1) * np.fft.rfft(kernel), n=size, axis=1)
    values = conv[:, : n_half + 1] * TABLE_STEP_GHZ
    values = np.maximum(values, 0.0)
    # FWHM: where each row falls to half its peak (its peak is at u = 0).
    half = values[:, :1] / 2
    k = np.argmax(values < half, axis=1)
    v0, v1 = values[np.arange(rates.size), k - 1], values[np.arange(rates.size), k]
    cross = (k - 1 + (v0 - half[:, 0]) / (v0 - v1)) * TABLE_STEP_GHZ
    values.flags.writeable = False
    return ShapeTable(
        rbw_ghz=rbw_ghz,
        rolloff=rolloff,
        symbol_rate_gbd=rates,
        values=values,
        fwhm_ghz=2 * cross,
    )


@lru_cache(maxsize=8)
def stacked_tables(rbw_ghz: float, rolloffs: tuple[float, ...]) -> ShapeTable:
    """The tables of several roll-offs stacked as one (row ``b x R + r`` is roll-off
    ``b``, rate ``r``), zero-padded to one width, so a channel's shape is one look-up
    whatever roll-off it was given.  ``rolloff`` holds the first; ``fwhm_ghz`` is the first's."""
    tables = [shape_table(rbw_ghz, b) for b in rolloffs]
    width = max(t.values.shape[1] for t in tables)
    values = np.zeros((len(tables) * tables[0].values.shape[0], width))
    rows = tables[0].values.shape[0]
    for b, t in enumerate(tables):
        values[b * rows : (b + 1) * rows, : t.values.shape[1]] = t.values
    values.flags.writeable = False
    return ShapeTable(
        rbw_ghz=rbw_ghz,
        rolloff=rolloffs[0],
        symbol_rate_gbd=tables[0].symbol_rate_gbd,
        values=values,
        fwhm_ghz=tables[0].fwhm_ghz,
    )
