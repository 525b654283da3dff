"""The vectorised error function against the standard library's (odpm.special)."""

from __future__ import annotations

import math

import numpy as np

from odpm.special import erf


def test_erf_matches_math_erf_across_signs_and_tails() -> None:
    x = np.linspace(-6.0, 6.0, 241)
    expected = np.array([math.erf(v) for v in x])
    assert np.abs(erf(x) - expected).max() < 1.5e-7
    assert erf(np.array([0.0]))[0] == 0.0
