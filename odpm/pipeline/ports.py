"""What a port reading caches: the port map and the lit set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray
from odpm.pipeline.formulas import _MIN_POINTS, IntArray


@dataclass(frozen=True, slots=True)
class _PortMap:
    """The device's port grid mapped onto the plan, with calibration (per grid)."""

    port_frequency_thz: FloatArray
    #: ``port_frequency_thz.tobytes()``: a cheap exact comparison for the next scan.
    key: bytes
    #: One port per channel (the first port of a flex slot that covers several).
    channel_port: IntArray
    offset_db: FloatArray | None
    #: Flex plans whose slots cover several ports: ``(idx, valid)``, ``(C, K)``, of
    #: :meth:`ChannelPlan.port_coverage`; None when every channel is one port.
    cover: tuple[IntArray, npt.NDArray[np.bool_]] | None = None


@dataclass(frozen=True, slots=True)
class _LitSet:
    """What a port reading derives from *which* channels are lit alone.  The lit set
    rarely changes from scan to scan, so this is computed once per set, not per scan."""

    #: ``present.tobytes()`` of the set.
    key: bytes
    count: int
    #: :func:`tilt_db` of one scan as a dot product with the lit powers (None when
    #: fewer than two channels are lit); see :func:`_tilt_weights`.
    tilt_weights: FloatArray | None
    #: Read-only, shared by the readings of this set.
    quality: npt.NDArray[np.uint8]


def _tilt_weights(frequency_ghz: FloatArray, band_ghz: float) -> FloatArray | None:
    """Weights ``a`` with ``tilt_db = a @ power_dbm`` over these (lit) channels.

    The least-squares slope is ``sum (x_i - x_mean)(y_i - y_mean) / S_xx`` with
    ``S_xx = sum (x_i - x_mean)^2``; since ``sum (x_i - x_mean) = 0`` the ``y_mean`` term
    vanishes, leaving ``a_i = (x_i - x_mean) / S_xx`` (the slope row of the
    pseudo-inverse of the design matrix ``[1, x]``), times ``band_ghz`` as in
    :func:`tilt_db`.  None when fewer than two distinct frequencies are lit.
    """
    dx = frequency_ghz - frequency_ghz.mean() if frequency_ghz.size else frequency_ghz
    sxx = float(dx @ dx)
    if frequency_ghz.size < _MIN_POINTS or not sxx > 0:
        return None
    weights = dx * (band_ghz / sxx)
    weights.flags.writeable = False
    return weights
