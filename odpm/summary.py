"""Per-scan summaries: what an overview of many devices needs from each reading.

A full reading carries 80 channel records (~10 kB of JSON); an overview of 300
devices at 1 scan/s only needs the scan-level figures, so the all-devices
stream (``GET /api/v1/stream``) sends these instead (~300 bytes each).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from odpm.models import Quality, Reading


def reading_summary(reading: Reading) -> dict[str, Any]:
    """The scan-level values of ``reading`` (JSON-ready), with its alarm events.

    ``flagged_channels`` counts present channels whose quality is not ``ok``
    (OSNR not resolved, power only), so an overview can show that a device's
    ``min_osnr_db`` leaves channels out.
    """
    present = np.asarray(reading.present, dtype=bool)
    quality = np.asarray(reading.quality)
    flagged = int(np.count_nonzero(present & (quality != int(Quality.OK))))
    return {
        "device": reading.device_id,
        "time": reading.time.isoformat(),
        "mode": reading.mode,
        "temperature_c": reading.temperature_c,
        "channels": reading.channel_count,
        **reading.summary_dict(),
        "flagged_channels": flagged,
        "alarms": [a.to_dict() for a in reading.alarms],
    }
