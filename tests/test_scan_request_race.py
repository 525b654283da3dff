"""POST /scan returns the reading of *its* scan even when the device scans back to back
and the caller is slow to look (a loaded event loop): the reading is picked at the moment
the worker completes the request, not later from a short list of recent ones."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from odpm.config import Settings, StorageConfig
from odpm.service import Service


@pytest.fixture
def busy_service(tmp_path: Path) -> Iterator[Service]:
    service = Service.from_settings(
        Settings(storage=StorageConfig(data_dir=tmp_path)),
        simulate=1,
        simulate_options={"mode": "power", "interval_s": 0.0},
    )
    service.start()
    try:
        yield service
    finally:
        service.stop()


def test_requested_reading_survives_many_later_scans(busy_service: Service) -> None:
    future = busy_service.request_reading("sim1", None)
    _scan, scan_reading = future.result(timeout=30)
    assert scan_reading is not None
    scans_then = busy_service.devices["sim1"].snapshot().counters["scans"]
    deadline = time.monotonic() + 30
    while busy_service.devices["sim1"].snapshot().counters["scans"] < scans_then + 40:
        assert time.monotonic() < deadline, "the device did not scan back to back"
        time.sleep(0.05)
    # Many scans later, the request still has its own reading, not the latest one.
    assert scan_reading is not busy_service.devices["sim1"].latest
    assert scan_reading.json.startswith(b"{")
