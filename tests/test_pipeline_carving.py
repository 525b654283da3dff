"""The dark-slot evidence of ROADM-carved noise (odpm.pipeline.carving), on small arrays."""

from __future__ import annotations

import numpy as np

from odpm.pipeline.carving import CARVED_FLOOR_RATIO, carved_by_roadm

LIT = np.array([[True, True, False, True, True]])
LEVEL = np.full((1, 5), 1e-6)  # fitted noise level at each centre (trace units)
CREDIBLE = np.ones((1, 5), dtype=bool)


def _floor(dark_level: float) -> np.ndarray:
    return np.where(LIT, 1e-3, dark_level)  # lit slots hold signal; the dark one its floor


def test_a_dark_floor_level_with_the_fitted_noise_is_not_carving() -> None:
    assert not carved_by_roadm(_floor(0.97e-6), LIT, LEVEL, CREDIBLE)[0]


def test_a_dark_floor_well_below_the_fitted_noise_is_carving() -> None:
    assert carved_by_roadm(_floor(0.03e-6), LIT, LEVEL, CREDIBLE)[0]
    # just past the threshold, either side
    assert carved_by_roadm(_floor(0.99 * CARVED_FLOOR_RATIO * 1e-6), LIT, LEVEL, CREDIBLE)[0]
    assert not carved_by_roadm(_floor(1.01 * CARVED_FLOOR_RATIO * 1e-6), LIT, LEVEL, CREDIBLE)[0]


def test_no_evidence_without_a_trusted_lit_neighbour() -> None:
    untrusted = CREDIBLE.copy()
    untrusted[0, [1, 3]] = False  # the dark slot's neighbours' fits are not trusted
    assert not carved_by_roadm(_floor(0.03e-6), LIT, LEVEL, untrusted)[0]
    all_lit = np.ones((1, 5), dtype=bool)
    assert not carved_by_roadm(np.full((1, 5), 0.03e-6), all_lit, LEVEL, CREDIBLE)[0]


def test_each_trace_of_a_batch_is_judged_on_its_own() -> None:
    floors = np.concatenate((_floor(0.97e-6), _floor(0.03e-6)))
    lit = np.repeat(LIT, 2, axis=0)
    out = carved_by_roadm(floors, lit, np.repeat(LEVEL, 2, axis=0), np.repeat(CREDIBLE, 2, axis=0))
    assert out.tolist() == [False, True]
