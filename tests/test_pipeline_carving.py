"""Single-trace evidence of ROADM-carved noise, and of noise *not* carved
(odpm.pipeline.carving), on small arrays."""

from __future__ import annotations

import numpy as np

from odpm.pipeline.carving import (
    CARVED_FLOOR_RATIO,
    carved_by_roadm,
    level_dark_slots,
    mostly_curved_between_narrow,
    neighbour_level,
)

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


def test_a_dark_slot_is_compared_with_its_neighbours_pedestal_at_its_centre() -> None:
    # Gain ripple: the lower neighbour's pedestal 0.6 dB above the floor, the upper
    # one 0.3 dB below it; between them (their mean) the floor is level with the ASE.
    level = np.array([[1e-6, 10**0.06 * 1e-6, np.nan, 10**-0.03 * 1e-6, 1e-6]])
    floor = _floor(1e-6)
    at_centre = neighbour_level(LIT, level, CREDIBLE)[0, 2]
    assert at_centre == (level[0, 1] + level[0, 3]) / 2
    assert not carved_by_roadm(floor, LIT, level, CREDIBLE)[0]
    # with one neighbour untrusted, the other's level stands alone
    one = CREDIBLE.copy()
    one[0, 3] = False
    assert neighbour_level(LIT, level, one)[0, 2] == level[0, 1]
    assert carved_by_roadm(floor, LIT, level, one)[0]


def test_a_dark_floor_level_with_the_pedestals_is_evidence_of_uncarved_noise() -> None:
    assert level_dark_slots(_floor(0.97e-6), LIT, LEVEL, CREDIBLE)[0]
    assert not level_dark_slots(_floor(0.03e-6), LIT, LEVEL, CREDIBLE)[0]  # carved
    assert not level_dark_slots(_floor(3e-6), LIT, LEVEL, CREDIBLE)[0]  # not the ASE either
    untrusted = np.zeros((1, 5), dtype=bool)
    assert not level_dark_slots(_floor(0.97e-6), LIT, LEVEL, untrusted)[0]
    # every slot lit: no dark slot, no evidence
    all_lit = np.ones((1, 5), dtype=bool)
    assert not level_dark_slots(np.full((1, 5), 1e-6), all_lit, LEVEL, CREDIBLE)[0]


def test_most_windows_between_narrow_channels_bent_is_suspect() -> None:
    narrow = np.ones((1, 5), dtype=bool)
    # inner windows are columns 1..4 of (C + 1) = 6
    two_of_four = np.array([[True, True, True, False, False, True]])
    three_of_four = np.array([[False, True, True, True, False, False]])
    assert not mostly_curved_between_narrow(two_of_four, narrow)[0]
    assert mostly_curved_between_narrow(three_of_four, narrow)[0]
    # windows beside a wide (or dark) channel do not count: bent by its own skirt
    wide_mid = narrow.copy()
    wide_mid[0, 2] = False
    assert not mostly_curved_between_narrow(three_of_four, wide_mid)[0]
