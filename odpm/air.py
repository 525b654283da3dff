"""Air and vacuum wavelengths: bench OSAs may report either.

An OSA set to "air" reports wavelengths shorter by ``(n - 1) lambda``: about
0.42 nm at 1550 nm, nearly one 50 GHz slot (0.4 nm).  odpm converts every axis
to vacuum wavelength before ``f = c / lambda`` (:mod:`odpm.grid`).

The index of standard air (15 C, 101 325 Pa, dry, 450 ppm CO2) is the Edlen
formula as updated by Birch and Downs (Metrologia 31, 315 (1994), eq. 1)::

    (n - 1) x 1e8 = 8342.54 + 2406147 / (130 - s^2) + 15998 / (38.9 - s^2)

with ``s`` the vacuum wavenumber in 1/um.  Instruments that offer an air
setting refer it to standard air; the lab's actual temperature and pressure
move n by a few 1e-6 (a few pm), far below a channel's offset tolerance.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def standard_air_index(vacuum_wavelength_nm: npt.ArrayLike) -> FloatArray:
    """Refractive index of standard air at the given vacuum wavelengths (Birch & Downs 1994)."""
    s2 = (1000.0 / np.asarray(vacuum_wavelength_nm, dtype=np.float64)) ** 2
    return np.asarray(1.0 + 1e-8 * (8342.54 + 2406147.0 / (130.0 - s2) + 15998.0 / (38.9 - s2)))


def vacuum_to_air_nm(vacuum_wavelength_nm: npt.ArrayLike) -> FloatArray:
    """lambda_air = lambda_vac / n(lambda_vac)."""
    vac = np.asarray(vacuum_wavelength_nm, dtype=np.float64)
    return np.asarray(vac / standard_air_index(vac))


def air_to_vacuum_nm(air_wavelength_nm: npt.ArrayLike) -> FloatArray:
    """lambda_vac = n(lambda_vac) lambda_air, solved by fixed-point iteration.

    n varies by 1e-7 across the C band, so three iterations agree with the exact
    inverse of :func:`vacuum_to_air_nm` to well below a femtometre.
    """
    air = np.asarray(air_wavelength_nm, dtype=np.float64)
    vac = air * 1.000273
    for _ in range(3):
        vac = air * standard_air_index(vac)
    return np.asarray(vac)
