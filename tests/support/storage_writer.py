"""Synthetic readings for storage tests, and a writer process for the kill -9 test.

As a program: ``python -m tests.support.storage_writer JOURNAL INFLUX_URL DB RATE_HZ``
runs a Journal and a Forwarder, appends synthetic 80-channel readings at
``RATE_HZ`` and prints ``<scan id> <time_us>`` after each append has returned
(i.e. after its commit).  On a line ``stop`` on stdin it stops appending, waits
until the forwarder has shipped everything, prints ``drained`` and exits.
A test kills it with SIGKILL mid-run and starts it again.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from odpm.models import AlarmEvent, AlarmKind, Mode, Quality, Reading

CHANNELS = 80
_FIRST_THZ = 192.10


def make_reading(
    device: str,
    time: datetime,
    seed: int,
    *,
    channels: int = CHANNELS,
    mode: Mode = "trace",
    dark: tuple[int, ...] = (7, 33),
    alarms: bool = False,
) -> Reading:
    """A plausible reading; channels in ``dark`` have no signal (NaN values)."""
    rng = np.random.default_rng(seed)
    ch = np.arange(1, channels + 1, dtype=np.int64)
    freq = np.round(_FIRST_THZ + (ch - 1) * 0.05, 6)
    power = rng.uniform(-25.0, -5.0, channels)
    osnr = rng.uniform(15.0, 35.0, channels)
    offset = rng.uniform(-2.0, 2.0, channels)
    present = np.ones(channels, dtype=np.bool_)
    quality = np.full(channels, Quality.OK, dtype=np.uint8)
    idx = np.array([d - 1 for d in dark if d <= channels], dtype=np.int64)
    present[idx] = False
    quality[idx] = Quality.DARK
    signal = power - 0.1
    for arr in (signal, osnr, offset):
        arr[idx] = np.nan
    power[idx] = rng.uniform(-60, -55, idx.size)
    if mode != "trace":
        osnr[:] = np.nan
        offset[:] = np.nan
        quality[present] = Quality.POWER_ONLY
    events: tuple[AlarmEvent, ...] = ()
    if alarms:
        events = (
            AlarmEvent(device, time, AlarmKind.LOSS_OF_SIGNAL, int(dark[0]), True, -58.0, None),
            AlarmEvent(device, time, AlarmKind.TOTAL_POWER_HIGH, None, False, 12.5, 20.0),
        )
    finite = power[present]
    return Reading(
        device_id=device,
        time=time,
        mode=mode,
        channel=ch,
        frequency_thz=freq,
        present=present,
        power_dbm=power,
        signal_power_dbm=signal,
        osnr_db=osnr,
        offset_ghz=offset,
        quality=quality,
        total_power_dbm=float(10 * np.log10(np.sum(10 ** (finite / 10)))),
        lit_channels=int(present.sum()),
        tilt_db=float(rng.uniform(-1, 1)),
        flatness_db=float(np.ptp(finite)),
        min_osnr_db=float(np.nanmin(osnr)) if mode == "trace" else float("nan"),
        temperature_c=float(rng.uniform(20, 30)),
        alarms=events,
    )


def main(argv: list[str]) -> int:
    from odpm.config import InfluxConfig
    from odpm.storage import Forwarder, Journal

    journal_path, url, db, rate = Path(argv[0]), argv[1], argv[2], float(argv[3])
    journal = Journal(journal_path, retention_days=7, max_bytes=10**9)
    fwd = Forwarder(
        journal,
        InfluxConfig(url=url, database=db, batch_lines=500),
        backoff_initial_s=0.05,
        backoff_max_s=0.5,
        poll_interval_s=0.05,
    )
    fwd.start()
    stop = threading.Event()

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    # Continue after the newest stored reading: times stay unique across restarts.
    last = journal.latest("crash")
    t = max(datetime.now(UTC), last.time + timedelta(milliseconds=1) if last else datetime.now(UTC))
    seed = journal.scan_count()
    while not stop.is_set():
        reading = make_reading("crash", t, seed)
        scan_id = journal.append(reading)
        print(scan_id, int((t - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)))
        sys.stdout.flush()
        seed += 1
        t += timedelta(seconds=1 / rate)
        time.sleep(1 / rate)
    ok = fwd.wait_drained(60)
    fwd.stop()
    journal.close()
    print("drained" if ok else "not drained", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
