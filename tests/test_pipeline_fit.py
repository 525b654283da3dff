"""The model fit's building blocks (odpm.pipeline.shapes, odpm.pipeline.fit) on their
own: the shape look-up's derivatives and weighting, and the per-axis geometry the fit
keeps between scans."""

from __future__ import annotations

import numpy as np

from odpm.config import PipelineConfig
from odpm.grid import ChannelPlan
from odpm.pipeline import TraceAxis
from odpm.pipeline.fit import DEFAULT_ROLLOFFS, FitResult, fit_raised_cosine
from odpm.pipeline.interpolation import _linear_trace
from odpm.pipeline.shapes import (
    SYMBOL_RATE_STEP_GBD,
    TABLE_STEP_GHZ,
    ShapeTable,
    rate_limit_gbd,
    shape_table,
)
from tests.support.synthetic_traces import flat_line_trace

PLAN = ChannelPlan.c_band_50ghz()


def _table() -> ShapeTable:
    return shape_table(6.25, DEFAULT_ROLLOFFS, rate_limit_gbd(50.0))


def _evaluate(
    table: ShapeTable, rate_gbd: np.ndarray, rolloff_t: np.ndarray, u_ghz: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Shapes between the second and third tabulated roll-offs, one per row."""
    n_rates = table.n_rates
    span = np.full_like(rate_gbd, DEFAULT_ROLLOFFS[2] - DEFAULT_ROLLOFFS[1])
    first = np.full(rate_gbd.shape, n_rates, dtype=np.intp)
    return table.evaluate_blend(first, rolloff_t, span, rate_gbd, u_ghz)


def test_shape_derivatives_are_those_of_the_interpolated_value() -> None:
    """Inside one cell of the table the look-up is linear in rate, frequency and
    roll-off, so each derivative it returns is the value's difference quotient there
    (on both sides of the centre: the shape is tabulated for u >= 0 and mirrored)."""
    table = _table()
    rng = np.random.default_rng(0)
    rows = 40
    # Rates 0.3-0.7 of the way into a 0.25 GBd row, offsets 0.3-0.7 into a column,
    # roll-off weights 0.3-0.7: a step of +-0.1 of a cell stays inside it.
    rate = (rng.integers(40, 200, (rows, 1)) + rng.uniform(0.3, 0.7, (rows, 1))) * (
        SYMBOL_RATE_STEP_GBD
    )
    rolloff_t = rng.uniform(0.3, 0.7, (rows, 1))
    column = rng.integers(0, 500, (rows, 30)) + rng.uniform(0.3, 0.7, (rows, 30))
    u = column * TABLE_STEP_GHZ * np.where(rng.random((rows, 30)) < 0.5, -1.0, 1.0)
    value, d_rate, d_u, d_rolloff = _evaluate(table, rate, rolloff_t, u)
    assert np.any(np.abs(d_rate) > 0) and np.any(np.abs(d_u) > 0) and np.any(d_rolloff != 0)

    def quotient(lo: tuple[np.ndarray, ...], hi: tuple[np.ndarray, ...], h: float) -> np.ndarray:
        return np.asarray((hi[0] - lo[0]) / (2 * h))

    h_rate = 0.1 * SYMBOL_RATE_STEP_GBD
    by_rate = quotient(
        _evaluate(table, rate - h_rate, rolloff_t, u),
        _evaluate(table, rate + h_rate, rolloff_t, u),
        h_rate,
    )
    h_u = 0.1 * TABLE_STEP_GHZ
    by_u = quotient(
        _evaluate(table, rate, rolloff_t, u - h_u), _evaluate(table, rate, rolloff_t, u + h_u), h_u
    )
    span = DEFAULT_ROLLOFFS[2] - DEFAULT_ROLLOFFS[1]
    by_rolloff = (
        quotient(
            _evaluate(table, rate, rolloff_t - 0.1, u),
            _evaluate(table, rate, rolloff_t + 0.1, u),
            0.1,
        )
        / span
    )
    scale = float(np.max(np.abs(value)))
    np.testing.assert_allclose(d_rate, by_rate, rtol=1e-7, atol=1e-10 * scale)
    np.testing.assert_allclose(d_u, by_u, rtol=1e-7, atol=1e-10 * scale)
    np.testing.assert_allclose(d_rolloff, by_rolloff, rtol=1e-7, atol=1e-10 * scale)


def test_weighted_shapes_are_written_into_the_given_arrays() -> None:
    """The fit writes weighted shapes straight into its design matrix: with ``out`` and
    ``weight`` the look-up fills those arrays with the weighted plain result."""
    table = _table()
    rng = np.random.default_rng(1)
    rate = rng.uniform(20.0, 40.0, (6, 3, 1))
    rolloff_t = rng.uniform(0.0, 1.0, (6, 3, 1))
    u = rng.uniform(-40.0, 40.0, (6, 3, 25))
    weight = rng.uniform(0.5, 2.0, (6, 1, 25))  # broadcast over the middle axis
    plain = _evaluate(table, rate, rolloff_t, u)
    design = np.zeros((6, 4, 3, 25))
    out = (design[:, 0], design[:, 1], design[:, 2], design[:, 3])
    n_rates = table.n_rates
    span = np.full_like(rate, DEFAULT_ROLLOFFS[2] - DEFAULT_ROLLOFFS[1])
    first = np.full(rate.shape, n_rates, dtype=np.intp)
    got = table.evaluate_blend(first, rolloff_t, span, rate, u, out, weight)
    for written, returned, expected in zip(out, got, plain, strict=True):
        assert returned is written
        np.testing.assert_allclose(written, expected * weight, rtol=1e-13, atol=0.0)


def _trace(rbw_ghz: float) -> tuple[np.ndarray, np.ndarray]:
    tr = flat_line_trace(PLAN.frequencies_thz, 50.0, 5, rbw_ghz=rbw_ghz, symbol_rate_gbd=30.0)
    return tr.frequency_thz, tr.power_dbm


def _assert_same(a: FitResult, b: FitResult) -> None:
    for name in FitResult.__slots__:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_the_geometry_kept_per_axis_does_not_change_a_fit() -> None:
    """What the fit keeps per axis and RBW between scans (windows, strides, masks)
    gives the same fit as an axis seen for the first time, whatever was fitted on the
    axis in between (another RBW, another trace)."""
    f_thz, p_dbm = _trace(6.25)
    axis = TraceAxis.build(f_thz, PLAN, PipelineConfig())
    p = _linear_trace(axis, p_dbm)
    first = fit_raised_cosine(axis, p, 6.25)
    assert np.sum(np.isfinite(first.uncertainty_db)) > PLAN.frequencies_thz.size // 2
    fit_raised_cosine(axis, _linear_trace(axis, _trace(12.5)[1]), 12.5)
    fit_raised_cosine(axis, p * np.float32(2.0), 6.25)
    _assert_same(fit_raised_cosine(axis, p, 6.25), first)
    fresh = TraceAxis.build(f_thz, PLAN, PipelineConfig())
    _assert_same(fit_raised_cosine(fresh, _linear_trace(fresh, p_dbm), 6.25), first)
