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
per (RBW, roll-off, highest rate) for a grid of symbol rates on a fine frequency grid
(FFT convolution) and looked up with bilinear interpolation in rate and frequency
(:meth:`ShapeTable.evaluate_blend`, also blending between tabulated roll-offs),
which gives the derivatives in rate, frequency and roll-off that the Gauss-Newton
fit (:mod:`odpm.pipeline.fit`) needs.  The rate is continuous:
rounding it to a table row (0.25 GBd) moves a channel's edges by ~0.1 GHz, which
through a 12.5 GHz RBW is a ~1 % mismatch of the trace and up to ~1 dB of OSNR.

The tables only reach the highest rate a plan can hold (:func:`rate_limit_gbd`):
building them for 140 GBd when the plan's slots are 50 GHz cost ~1 s on the first
scan; a 50 GHz plan's tables (7 roll-offs) now build in ~0.15-0.3 s under load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray

#: Symbol rates tabulated (GBd): 4 up to at most 160 in 0.25 GBd steps (coherent
#: transceivers run up to ~130 GBd; 10G OOK sits near 10).
SYMBOL_RATE_MIN_GBD = 4.0
SYMBOL_RATE_MAX_GBD = 160.0
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
    """``(s * H)(u)`` for each tabulated symbol rate and roll-off; row ``b x R + r`` is
    roll-off ``b``, rate ``r``; columns are ``u >= 0`` (the shape is symmetric)."""

    rbw_ghz: float
    rolloffs: tuple[float, ...]
    symbol_rate_gbd: FloatArray
    values: npt.NDArray[np.float64]
    #: Full width at half maximum, ``(B, R)`` (GHz): a measured width maps to a rate.
    fwhm_ghz: FloatArray

    @property
    def n_rates(self) -> int:
        return int(self.symbol_rate_gbd.size)

    def rate_from_fwhm(self, fwhm_ghz: npt.ArrayLike, rolloff_index: int = 0) -> FloatArray:
        """Invert the (monotonic) width-vs-rate relation: the rate whose trace is that wide."""
        return np.asarray(
            np.interp(
                np.asarray(fwhm_ghz, dtype=np.float64),
                self.fwhm_ghz[rolloff_index],
                self.symbol_rate_gbd,
            )
        )

    def clip_rate(self, symbol_rate_gbd: FloatArray) -> FloatArray:
        """Rates clipped to the table."""
        lowest, highest = self.symbol_rate_gbd[0], self.symbol_rate_gbd[-1]
        return np.asarray(np.minimum(np.maximum(symbol_rate_gbd, lowest), highest))

    def evaluate_blend(
        self,
        first_row: npt.NDArray[np.intp],
        rolloff_t: FloatArray,
        rolloff_span: FloatArray,
        symbol_rate_gbd: FloatArray,
        u_ghz: FloatArray,
        out: tuple[FloatArray, FloatArray, FloatArray, FloatArray] | None = None,
        weight: FloatArray | None = None,
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """``(s * H)(u)`` at continuous rates (bilinear in rate and frequency) and at a
        roll-off between two tabulated ones: rows ``first_row`` (the lower roll-off's)
        and ``first_row + R`` blended by ``rolloff_t`` (``span`` apart), all broadcast
        against ``u_ghz``.  Returns the value and its derivatives in rate, ``u`` and
        roll-off, each times ``weight`` if given (broadcast against ``u_ghz``), written
        into ``out`` when given (arrays of ``u_ghz``'s shape, or views of that shape
        such as a design matrix's columns).  The corners are blended in roll-off
        first, so the frequency and rate interpolation is done once for both.

        This is the fit's hot path (three shapes at every window point, four designs
        per fit), written for the fewest passes over the points: the eight corners
        are gathered from offset views of the table (no index arithmetic per corner),
        the per-channel weights in rate and roll-off are spread over the points once
        (an operand broadcast along the innermost axis costs twice a contiguous one),
        the weight is folded into the last product of each output, and the
        intermediates are updated in place rather than allocated."""
        n_rates = self.n_rates
        width = self.values.shape[1]
        last = width - 1
        q = (symbol_rate_gbd - SYMBOL_RATE_MIN_GBD) * (1.0 / SYMBOL_RATE_STEP_GBD)
        # fmax/fmin: NaN to the first row, +-inf to the ends (np.clip(np.nan_to_num(q))
        # did the same ten times slower on these small per-channel arrays).
        q = np.fmin(np.fmax(q, 0.0), float(n_rates - 1))
        j = np.minimum(q.astype(np.intp), n_rates - 2)
        s = _spread(q - j, u_ghz.shape)
        rolloff_t = _spread(rolloff_t, u_ghz.shape)
        x = np.abs(u_ghz)
        x *= 1.0 / TABLE_STEP_GHZ
        np.minimum(x, float(last), out=x)
        flat = x.astype(np.intp)
        np.minimum(flat, last - 1, out=flat)
        t = np.subtract(x, flat, out=x)
        flat += (first_row + j) * width
        v = self.values.ravel()
        up = n_rates * width  # the next roll-off's rows
        # Corners c<rate><frequency> at the lower roll-off and e.. the step to the
        # upper one's; c.. then blended to the roll-off.
        c00, c01, c10, c11 = (v[k:].take(flat) for k in (0, 1, width, width + 1))
        e00, e01, e10, e11 = (v[up + k :].take(flat) for k in (0, 1, width, width + 1))
        scratch = np.empty_like(t)
        for c, e in ((c00, e00), (c01, e01), (c10, e10), (c11, e11)):
            e -= c
            c += np.multiply(e, rolloff_t, out=scratch)
        if out is None:
            out = (np.empty_like(t), np.empty_like(t), np.empty_like(t), np.empty_like(t))
        value, d_rate, d_u, d_rolloff = out
        per_rate = 1.0 / SYMBOL_RATE_STEP_GBD
        per_u = 1.0 / TABLE_STEP_GHZ
        d0 = np.subtract(c01, c00, out=c01)
        d1 = np.subtract(c11, c10, out=c11)
        lo = np.add(c00, np.multiply(d0, t, out=scratch), out=c00)
        across = np.add(c10, np.multiply(d1, t, out=scratch), out=c10)
        across -= lo
        np.add(lo, np.multiply(across, s, out=value), out=value)
        d1 -= d0
        d1 *= s
        d1 += d0
        sign = np.sign(u_ghz, out=scratch)
        for e_lo, e_hi in ((e00, e01), (e10, e11)):  # e at the lower and upper rate
            e_hi -= e_lo
            e_hi *= t
            e_hi += e_lo
        e11 -= e01
        e11 *= s
        e11 += e01
        np.divide(e11, rolloff_span, out=d_rolloff)
        if weight is None:
            np.multiply(across, per_rate, out=d_rate)
            np.multiply(sign, d1, out=d_u)
            d_u *= per_u
        else:
            # Powers of two: the products are those of weighting each output after.
            value *= weight
            np.multiply(across, weight * per_rate, out=d_rate)
            sign *= weight * per_u
            np.multiply(sign, d1, out=d_u)
            d_rolloff *= weight
        return out


def _spread(a: FloatArray, shape: tuple[int, ...]) -> FloatArray:
    """``a`` broadcast to ``shape``: one value per row of its last axis spread over
    that axis as a contiguous array, so that the products with it are contiguous."""
    if a.shape == shape:
        return a
    if a.shape[:-1] == shape[:-1] and a.shape[-1] == 1:
        return np.repeat(a, shape[-1], axis=-1)
    return np.broadcast_to(a, shape)


def rate_limit_gbd(widest_window_ghz: float) -> float:
    """The highest symbol rate worth tabulating for a plan whose widest channel
    spacing is ``widest_window_ghz``: half again the spacing (an overfilled slot
    still fits), rounded up to 20 GBd so plans of similar width share tables."""
    limit = 20.0 * math.ceil(1.5 * widest_window_ghz / 20.0)
    return float(min(max(limit, 20.0), SYMBOL_RATE_MAX_GBD))


def _rows(rbw_ghz: float, rolloff: float, max_rate_gbd: float) -> tuple[FloatArray, FloatArray]:
    """One roll-off's rows: ``(s * H)(u)`` on ``u >= 0`` for every rate up to the limit."""
    rates = np.arange(
        SYMBOL_RATE_MIN_GBD, max_rate_gbd + SYMBOL_RATE_STEP_GBD / 2, SYMBOL_RATE_STEP_GBD
    )
    sigma = rbw_ghz / math.sqrt(2 * math.pi)
    half_span = (1 + rolloff) * max_rate_gbd / 2 + 8 * sigma
    n_half = math.ceil(half_span / TABLE_STEP_GHZ)
    # Circular convolution: the density and the kernel each reach half_span at most,
    # so a period of 2 x half_span (rounded up to a power of two) never wraps.
    size = 1 << math.ceil(math.log2(2 * n_half + 2))
    j = np.arange(size)
    u = np.where(j < size // 2, j, j - size) * TABLE_STEP_GHZ  # circular, centred at 0
    density = raised_cosine_psd(u[None, :], rates[:, None], rolloff)
    density /= density.sum(axis=1, keepdims=True) * TABLE_STEP_GHZ  # exact unit integral
    kernel = np.exp(-(u**2) / (2 * sigma**2))
    conv = np.fft.irfft(np.fft.rfft(density, axis=1) * np.fft.rfft(kernel), n=size, axis=1)
    values = np.maximum(conv[:, : n_half + 1] * TABLE_STEP_GHZ, 0.0)
    values[:, -1] = 0.0  # the last column is beyond every shape: look-ups rely on it
    return rates, values


def _fwhm(values: FloatArray) -> FloatArray:
    """Where each row falls to half its peak (its peak is at u = 0), times two."""
    half = values[:, :1] / 2
    k = np.argmax(values < half, axis=1)
    rows = np.arange(values.shape[0])
    v0, v1 = values[rows, k - 1], values[rows, k]
    return np.asarray(2 * (k - 1 + (v0 - half[:, 0]) / (v0 - v1)) * TABLE_STEP_GHZ)


@lru_cache(maxsize=8)
def shape_table(
    rbw_ghz: float, rolloffs: tuple[float, ...], max_rate_gbd: float = SYMBOL_RATE_MAX_GBD
) -> ShapeTable:
    """Build (once per RBW, roll-offs and highest rate) the table of :class:`ShapeTable`:
    the roll-offs' rows stacked, zero-padded to one width, so a channel's shape is one
    look-up whatever roll-off it was given."""
    built = [_rows(rbw_ghz, b, max_rate_gbd) for b in rolloffs]
    rates = built[0][0]
    width = max(v.shape[1] for _, v in built)
    values = np.zeros((len(built) * rates.size, width))
    for b, (_, v) in enumerate(built):
        values[b * rates.size : (b + 1) * rates.size, : v.shape[1]] = v
    values.flags.writeable = False
    return ShapeTable(
        rbw_ghz=rbw_ghz,
        rolloffs=rolloffs,
        symbol_rate_gbd=rates,
        values=values,
        fwhm_ghz=np.stack([_fwhm(v) for _, v in built]),
    )
