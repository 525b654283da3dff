"""OSA drivers against their emulators over real TCP: binary and ASCII agree exactly, OSNR
matches the model's truth, air wavelengths land on the right channels, each fault becomes a
clear driver error, and the acquisition worker reconnects after one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from drivers.aq6370 import Aq6370, LoginRefused
from drivers.errors import DeviceError, DeviceTimeout, ProtocolError
from drivers.ms9740 import Ms9740
from drivers.odpm96 import Trace
from drivers.osa import trace_from_wavelengths
from drivers.registry import TraceFormat, open_driver
from drivers.simulator.aq6370_emulator import Aq6370Emulator
from drivers.simulator.ms9740_emulator import Ms9740Emulator
from drivers.simulator.osa_emulator import OsaServer
from odpm.acquisition import AcquisitionWorker, BackoffPolicy
from odpm.config import AlarmConfig, CalibrationConfig, DeviceConfig, PipelineConfig, PlanConfig
from odpm.models import Quality, RawScan, Reading, TraceScan
from odpm.pipeline import Pipeline
from tests.support.waiting import wait_for

SECRET = "pa55-not-for-logs"


@pytest.fixture
def aq() -> Iterator[OsaServer]:
    with OsaServer(Aq6370Emulator(seed=3, sweep_time_s=0.05)) as server:
        yield server


@pytest.fixture
def ms() -> Iterator[OsaServer]:
    with OsaServer(Ms9740Emulator(seed=4, sweep_time_s=0.05)) as server:
        yield server


def _aq_driver(server: OsaServer, fmt: TraceFormat = "binary", timeout_s: float = 5.0) -> Aq6370:
    d = open_driver(
        "aq6370", server.address, timeout_s=timeout_s, password=SECRET, trace_format=fmt
    )
    assert isinstance(d, Aq6370)
    d.identify()
    return d


def _process(trace: Trace) -> Reading:
    pipeline = Pipeline(
        PlanConfig().to_plan(), PipelineConfig(), AlarmConfig(), CalibrationConfig()
    )
    t = datetime(2026, 1, 1, tzinfo=UTC)
    return pipeline.process(
        TraceScan("osa", t, trace.frequency_thz, trace.power_dbm, trace.rbw_ghz)
    )


def _truth(driver: Aq6370 | Ms9740) -> np.ndarray:
    """``SIM:TRUTh:OSNR?`` through the OSA's own connection (the ODPM-96 simulator's command)."""
    text = driver.query("SIM:TRUTh:OSNR?")
    return np.array(text.split(","), dtype=np.float64)


def test_aq6370_binary_and_ascii_give_identical_readings(aq: OsaServer) -> None:
    d = _aq_driver(aq)
    try:
        binary = d.read_trace()
        d.trace_format = "ascii"
        d.configure()
        x_m, y_dbm = d.read_sweep()  # the same sweep, now as text
        ascii_trace = trace_from_wavelengths(x_m * 1e9, y_dbm, d.read_rbw_nm(), d.read_medium())
    finally:
        d.close()
    assert binary.frequency_thz.size == 10001
    np.testing.assert_array_equal(binary.frequency_thz, ascii_trace.frequency_thz)
    np.testing.assert_array_equal(binary.power_dbm, ascii_trace.power_dbm)
    assert _process(binary).to_dict() == _process(ascii_trace).to_dict()


@pytest.mark.parametrize("fmt", ["binary", "ascii"])
def test_osnr_from_each_osa_matches_the_model_truth(
    aq: OsaServer, ms: OsaServer, fmt: TraceFormat
) -> None:
    drivers: list[Aq6370 | Ms9740] = [_aq_driver(aq, fmt)]
    m = open_driver("ms9740", ms.address, timeout_s=5.0, trace_format=fmt)
    assert isinstance(m, Ms9740)
    m.identify()
    drivers.append(m)
    try:
        for d in drivers:
            reading = _process(d.read_trace())
            truth = _truth(d)
            ok = reading.quality == Quality.OK
            assert ok.sum() >= 20, f"{d.model_name}: only {ok.sum()} channels with an OSNR"
            err = np.abs(reading.osnr_db[ok] - truth[ok])
            assert err.max() < 0.5, f"{d.model_name}: OSNR off the truth by {err.max():.2f} dB"
    finally:
        for d in drivers:
            d.close()


def test_air_wavelengths_are_converted_and_would_misplace_channels_otherwise(
    aq: OsaServer,
) -> None:
    emulator = aq.emulator
    emulator.medium = "air"
    truth_offset = emulator.model.truth_offset_ghz()
    d = _aq_driver(aq)
    try:
        right = d.read_trace()
        d.medium_override = "vacuum"  # what a driver that ignored the setting would read
        wrong = d.read_trace()
    finally:
        d.close()
    reading = _process(right)
    ok = reading.quality == Quality.OK
    assert ok.sum() >= 20
    assert np.nanmax(np.abs(reading.offset_ghz[ok] - truth_offset[ok])) < 1.5
    # Taken as vacuum, air wavelengths put every channel ~53 GHz high: a whole slot off.
    shift_ghz = float((wrong.frequency_thz[0] - right.frequency_thz[0]) * 1000.0)
    assert 50 < shift_ghz < 56


def test_wdm_analysis_read_back(aq: OsaServer) -> None:
    d = _aq_driver(aq)
    try:
        d.read_trace()
        wdm = d.read_wdm_analysis()
        truth = _truth(d)
    finally:
        d.close()
    assert wdm.wavelength_nm.size == 80
    np.testing.assert_allclose(np.sort(wdm.osnr_db), np.sort(truth), atol=1e-3)


# -- faults --------------------------------------------------------------------------------------
def test_refused_login_is_a_clear_error_without_the_password(aq: OsaServer) -> None:
    aq.emulator.refuse_login()
    with pytest.raises(LoginRefused) as info:
        open_driver("aq6370", aq.address, timeout_s=2.0, password=SECRET)
    assert SECRET not in str(info.value) and "anonymous" in str(info.value)


def test_stall_mid_block_times_out(aq: OsaServer) -> None:
    d = _aq_driver(aq, timeout_s=0.5)
    try:
        aq.emulator.inject_block_stall(3.0)
        with pytest.raises(DeviceTimeout):
            d.read_trace()
    finally:
        d.close()


def test_truncated_block_is_a_driver_error(aq: OsaServer) -> None:
    d = _aq_driver(aq, timeout_s=0.5)
    try:
        aq.emulator.inject_truncated_block(100)
        with pytest.raises((DeviceTimeout, ProtocolError)):
            d.read_trace()
    finally:
        d.close()


def test_error_in_the_queue_fails_the_sweep(ms: OsaServer) -> None:
    m = open_driver("ms9740", ms.address, timeout_s=2.0)
    assert isinstance(m, Ms9740)
    try:
        m.identify()
        m.write("SIM:FAULt:ERRor 2001")  # over the wire, as a test client would
        with pytest.raises(DeviceError) as info:
            m.read_trace()
        assert info.value.code == 2001
    finally:
        m.close()


def test_sweep_that_never_completes_times_out(aq: OsaServer) -> None:
    aq.emulator.points = 1001
    aq.emulator.hang_sweep()
    d = _aq_driver(aq)
    d.sweep_margin_s = 0.0
    try:
        with pytest.raises(DeviceTimeout, match=r"sweep did not complete within 1\.0 s"):
            d.read_trace()
    finally:
        d.close()


def test_worker_reconnects_after_a_fault_and_keeps_scanning(aq: OsaServer) -> None:
    scans: list[RawScan] = []
    got = threading.Event()

    def on_scan(scan: RawScan) -> None:
        scans.append(scan)
        got.set()

    device = DeviceConfig.model_validate(
        {"id": "aq", "driver": "aq6370", "address": aq.address, "timeout_s": 1.0,
         "interval_s": 0.0, "password": SECRET}
    )  # fmt: skip
    assert device.mode == "trace"  # an OSA's default
    worker = AcquisitionWorker(device, on_scan, backoff=BackoffPolicy(0.01, 0.05))
    worker.start()
    try:
        wait_for(lambda: len(scans) >= 2, 30, "two OSA scans")
        assert worker.identity is not None and "AQ6370" in worker.identity
        with pytest.raises(ValueError, match="no power mode"):
            worker.request_scan("power")
        aq.emulator.inject_truncated_block(100)
        wait_for(lambda: worker.counters.errors >= 1, 30, "the fault to be seen")
        assert worker.last_error is not None and SECRET not in worker.last_error
        n = len(scans)
        wait_for(lambda: len(scans) >= n + 2 and worker.counters.reconnects >= 1, 30, "rescans")
    finally:
        worker.stop()
    assert isinstance(scans[-1], TraceScan) and scans[-1].temperature_c is None


def test_aq6370_over_a_visa_socket_resource_logs_in_too(aq: OsaServer) -> None:
    d = open_driver("aq6370", aq.visa_address, timeout_s=5.0, password=SECRET)
    assert isinstance(d, Aq6370)
    try:
        assert "AQ6370" in d.identify()
        trace = d.read_trace()
    finally:
        d.close()
    assert trace.frequency_thz.size == 10001 and np.all(np.diff(trace.frequency_thz) > 0)


def test_stopping_the_worker_interrupts_a_sweep_in_progress(aq: OsaServer) -> None:
    """A bench OSA's sweep may take minutes: stopping odpm (or the device) must not wait
    for it, and the interrupted sweep is not an error of the instrument."""
    aq.emulator.points = 1001
    aq.emulator.hang_sweep()  # the sweep never completes: only its ~6 s bound would end it
    device = DeviceConfig.model_validate(
        {"id": "aq", "driver": "aq6370", "address": aq.address, "timeout_s": 1.0,
         "interval_s": 0.0, "password": SECRET}
    )  # fmt: skip
    worker = AcquisitionWorker(device, lambda scan: None, backoff=BackoffPolicy(0.01, 0.05))
    worker.start()
    try:
        wait_for(lambda: worker.identity is not None, 30, "the OSA to be identified")
        time.sleep(0.3)  # well inside the sweep
    finally:
        t0 = time.monotonic()
        stopped = worker.stop(timeout_s=10.0)
        took_s = time.monotonic() - t0
    assert stopped and took_s < 2.0, f"stop took {took_s:.1f} s"
    assert worker.counters.errors == 0 and worker.last_error is None
