"""``[devices.osnr]`` on real parts: a simulated ODPM-96 on a TCP socket, read in trace mode by
the real worker, pipeline and journal behind the real API, with the device's reference trace
(an archived reference taken from the same simulator at high OSNR) or signal-off trace (a CSV
file, as ``odpm analyze --noise-trace`` reads) passed to the pipeline on every scan."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from drivers.odpm96 import Odpm96
from drivers.simulator import SimulatorServer
from drivers.transport import open_transport
from odpm.config import ConfigError, DeviceConfig, Settings, StorageConfig, load_settings
from odpm.osnr_traces import CompanionError, CompanionTrace
from odpm.service import Service
from tests.support.waiting import wait_for

V1 = "/api/v1"


def _write_csv(path: Path, frequency_thz: np.ndarray, power_dbm: np.ndarray, rbw: float) -> None:
    lines = [f"# rbw_ghz: {rbw!r}", "frequency_thz,power_dbm"]
    points = zip(frequency_thz.tolist(), power_dbm.tolist(), strict=True)
    lines += [f"{f!r},{p:.3f}" for f, p in points]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two simulators: 32 GBd filling 50 GHz (reference case); the same behind a WSS with
    a signal-off trace saved as CSV (signal-off case)."""
    tmp = tmp_path_factory.mktemp("osnr-traces")
    with (
        SimulatorServer.start_tcp(seed=4040) as ref_sim,
        SimulatorServer.start_tcp(seed=4041) as off_sim,
    ):
        with Odpm96(open_transport(ref_sim.address, timeout_s=5.0)) as d:
            for ch in range(1, 81):
                d.write(f"SIM:CHAN:SRAT {ch},32")
            d.write("SIM:CHAN:DARK 9")
            d.write("SIM:AMP:NF 3")
            reference = d.read_trace()
            d.write("SIM:OSNR 17")
            d.check_errors()
            ref_truth = np.array(d.query("SIM:TRUT:OSNR?").split(","), dtype=float)
        with Odpm96(open_transport(off_sim.address, timeout_s=5.0)) as d:
            for ch in range(1, 81):
                d.write(f"SIM:CHAN:SRAT {ch},32")
            d.write("SIM:WSS ON")
            d.write("SIM:OSNR 19")
            d.write("SIM:SIGN ON")  # transmitters off, passbands kept: the noise alone
            off = d.read_trace()
            d.write("SIM:SIGN OFF")
            d.check_errors()
            off_truth = np.array(d.query("SIM:TRUT:OSNR?").split(","), dtype=float)
        noise_csv = tmp / "signal-off.csv"
        _write_csv(noise_csv, off.frequency_thz, off.power_dbm, off.rbw_ghz)
        narrow_csv = tmp / "narrow.csv"  # covers only part of the live axis
        keep = slice(100, 3000)
        _write_csv(narrow_csv, off.frequency_thz[keep], off.power_dbm[keep], off.rbw_ghz)
        yield {
            "tmp": tmp,
            "ref_sim": ref_sim,
            "off_sim": off_sim,
            "reference": reference,
            "ref_truth": ref_truth,
            "off_truth": off_truth,
            "noise_csv": noise_csv,
            "narrow_csv": narrow_csv,
        }


@pytest.fixture(scope="module")
def client(line: dict[str, Any]) -> Iterator[TestClient]:
    common: dict[str, Any] = {"mode": "trace", "interval_s": 0.3}
    devices = [
        DeviceConfig(
            id="ref", address=line["ref_sim"].address, osnr={"reference": "hi-osnr"}, **common
        ),
        DeviceConfig(
            id="off",
            address=line["off_sim"].address,
            osnr={"noise_trace": str(line["noise_csv"])},
            **common,
        ),
        DeviceConfig(
            id="missing", address=line["ref_sim"].address, osnr={"reference": "nope"}, **common
        ),
        DeviceConfig(
            id="narrow",
            address=line["off_sim"].address,
            osnr={"noise_trace": str(line["narrow_csv"])},
            **common,
        ),
    ]
    settings = Settings(storage=StorageConfig(data_dir=line["tmp"] / "data"), devices=devices)
    service = Service.from_settings(settings)
    assert service.traces is not None
    ref = line["reference"]
    service.traces.archive.put_reference(
        "ref",
        "hi-osnr",
        time=datetime.now(UTC),
        frequency_thz=ref.frequency_thz,
        power_dbm=ref.power_dbm,
        rbw_ghz=ref.rbw_ghz,
        source="test: SIM:AMP:NF 3",
    )
    with TestClient(create_app(service)) as c:
        for dev in ("ref", "off", "missing", "narrow"):

            def has_reading(dev: str = dev) -> bool:
                return bool(c.get(f"{V1}/devices/{dev}/latest").status_code == 200)

            wait_for(has_reading, 60, f"a reading of {dev}")
        yield c


def _channels(client: TestClient, device: str) -> list[dict[str, Any]]:
    r = client.get(f"{V1}/devices/{device}/latest")
    assert r.status_code == 200
    return list(r.json()["channels"])


def _within(channels: list[dict[str, Any]], truth: np.ndarray, method: str) -> float:
    lit = ~np.isnan(truth)
    ok = [
        c["osnr_method"] == method
        and c["osnr_db"] is not None
        and abs(c["osnr_db"] - truth[c["channel"] - 1]) <= 0.5
        for c in channels
        if lit[c["channel"] - 1]
    ]
    return float(sum(ok) / len(ok))


def test_configured_reference_gives_the_reference_method(
    client: TestClient, line: dict[str, Any]
) -> None:
    channels = _channels(client, "ref")
    assert _within(channels, line["ref_truth"], "reference") >= 0.95


def test_configured_signal_off_csv_gives_the_signal_off_method(
    client: TestClient, line: dict[str, Any]
) -> None:
    channels = _channels(client, "off")
    assert _within(channels, line["off_truth"], "signal_off") >= 0.95


def test_unusable_companions_are_health_reasons_and_not_used(client: TestClient) -> None:
    reasons = client.get(f"{V1}/health").json()["reasons"]
    missing = [r for r in reasons if r.startswith("device missing:")]
    narrow = [r for r in reasons if r.startswith("device narrow:")]
    assert len(missing) == 1 and "no reference trace 'nope'" in missing[0], reasons
    assert len(narrow) == 1 and "the live trace 191.2500-196.1000 THz" in narrow[0], reasons
    for device in ("missing", "narrow"):
        methods = {c["osnr_method"] for c in _channels(client, device)}
        assert not methods & {"reference", "signal_off"}
    for device in ("ref", "off"):
        assert not any(r.startswith(f"device {device}:") for r in reasons)


def test_companion_at_another_resolution_is_refused() -> None:
    f = np.linspace(191.0, 196.5, 100)
    trace = CompanionTrace("reference", "reference 'x'", f, np.full(100, -50.0), 12.5)
    with pytest.raises(CompanionError, match=r"taken at 12\.5 GHz resolution"):
        trace.on_axis(f, 6.25)
    # same resolution, another axis that it covers: resampled linearly in mW
    live = np.linspace(191.5, 196.0, 37)
    np.testing.assert_allclose(trace.on_axis(live, 12.5), -50.0, atol=1e-5)


def test_osnr_config_rejects_a_multi_line_name(tmp_path: Path) -> None:
    cfg = tmp_path / "odpm.toml"
    cfg.write_text(
        '[[devices]]\nid = "a"\naddress = "socket://127.0.0.1:1"\n'
        '[devices.osnr]\nreference = "a\\nb"\n'
    )
    with pytest.raises(ConfigError, match=r"osnr\.reference"):
        load_settings(cfg)
