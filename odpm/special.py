"""Special functions numpy lacks, written once for the pipeline and the simulator.

Why not scipy: one function does not justify the dependency, and ``math.erf`` is
scalar (a Python loop over a trace's points would be the hot path's cost).
"""

from __future__ import annotations

import numpy as np

from odpm.models import FloatArray


def erf(x: FloatArray) -> FloatArray:
    """The error function, vectorised, by Abramowitz & Stegun, *Handbook of
    Mathematical Functions*, 7.1.26 (absolute error below 1.5e-7): used for box
    filters with Gaussian edges (a WSS passband, Pulikkaseril et al. 2011)."""
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return np.asarray(np.sign(x) * (1.0 - poly * np.exp(-a * a)))
