"""Shared fixtures: a real influxd for the whole session, fresh databases per test.

When ``influxd`` is not installed the tests that need it are skipped with the
reason, except under ``CI=true`` or ``ODPM_REQUIRE_INFLUXDB=1``, where a missing
server is a failure: CI must never pass by skipping the storage tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.influxd import InfluxServer, influxd_path

_MISSING = "influxd not installed (Debian: apt-get install influxdb; ./scripts/test does it)"


def _influx_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get(
        "ODPM_REQUIRE_INFLUXDB", ""
    ) not in ("", "0")


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """A running influxd on a free loopback port; stopped at the end of the session."""
    if influxd_path() is None:
        if _influx_required():
            pytest.fail(f"{_MISSING}; CI=true / ODPM_REQUIRE_INFLUXDB=1 require it", pytrace=False)
        pytest.skip(_MISSING)
    server = InfluxServer(tmp_path_factory.mktemp("influxd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influx_db(influxd: InfluxServer) -> Iterator[str]:
    """A fresh, empty database name on the session server (dropped afterwards)."""
    name = "odpm_test_" + uuid.uuid4().hex[:10]
    influxd.create_database(name)
    try:
        yield name
    finally:
        influxd.drop_database(name)


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[InfluxServer]:
    """An influxd of the test's own, for tests that kill and restart it."""
    if influxd_path() is None:
        if _influx_required():
            pytest.fail(f"{_MISSING}; CI=true / ODPM_REQUIRE_INFLUXDB=1 require it", pytrace=False)
        pytest.skip(_MISSING)
    server = InfluxServer(tmp_path / "influxd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def auth_influxd(tmp_path: Path) -> Iterator[InfluxServer]:
    """An influxd of the test's own with authentication on (``[http] auth-enabled``)."""
    if influxd_path() is None:
        if _influx_required():
            pytest.fail(f"{_MISSING}; CI=true / ODPM_REQUIRE_INFLUXDB=1 require it", pytrace=False)
        pytest.skip(_MISSING)
    server = InfluxServer(tmp_path / "influxd-auth", auth=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
