"""A missing database or bucket is a configuration state, never bad data (real influxd).

Before: every batch to a fresh InfluxDB 1.x without the database was answered
``404 database not found`` and quarantined, old journal rows included.  Now the
v1 forwarder creates the database (as Telegraf does) or, when it may not,
pauses with a message naming the database and the fix, keeping every row in the
journal until the database exists.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from odpm.config import InfluxConfig
from odpm.storage import Forwarder, ForwarderStats, Journal
from tests.support.influxd import InfluxServer
from tests.support.storage_writer import make_reading
from tests.support.waiting import wait_for

pytestmark = pytest.mark.influx

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def forwarder(journal: Journal, cfg: InfluxConfig) -> Forwarder:
    """Test timings: quick backoff, and a paused forwarder retries every 0.2 s."""
    return Forwarder(
        journal,
        cfg,
        backoff_initial_s=0.05,
        backoff_max_s=0.3,
        poll_interval_s=0.02,
        auth_retry_s=0.2,
    )


def wait_paused(fwd: Forwarder) -> ForwarderStats:
    def paused() -> ForwarderStats | None:
        st = fwd.stats
        return st if st.state == "paused" else None

    st = wait_for(paused, 20, "forwarding paused")
    assert st is not None
    return st


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "j.sqlite3")
    yield j
    j.close()


@pytest.fixture
def new_db(influxd: InfluxServer) -> Iterator[str]:
    """A database name that does not exist on the server (dropped afterwards if made)."""
    name = "odpm_fresh_" + uuid.uuid4().hex[:10]
    yield name
    influxd.drop_database(name)


def databases(server: InfluxServer, auth: tuple[str, str] | None = None) -> set[str]:
    res = server.query("SHOW DATABASES", auth=auth)["results"][0]
    return {v[0] for s in res.get("series", []) for v in s.get("values", [])}


def scan_count(server: InfluxServer, db: str, auth: tuple[str, str] | None = None) -> int:
    res = server.query('SELECT count("lit_channels") FROM "scan"', db=db, auth=auth)
    series = res["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


def fill(journal: Journal, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        journal.append(make_reading("fresh", T0 + timedelta(seconds=i), i))


def test_fresh_influxd_database_is_created_and_old_rows_arrive(
    influxd: InfluxServer, new_db: str, journal: Journal
) -> None:
    fill(journal, 5)  # rows journaled before InfluxDB was ever configured
    assert new_db not in databases(influxd)
    cfg = InfluxConfig(url=influxd.url, database=new_db, batch_lines=200)
    with forwarder(journal, cfg) as fwd:
        assert fwd.wait_drained(30)
        st = fwd.stats
    assert new_db in databases(influxd)
    assert st.quarantined_batches == 0 and journal.quarantined_count() == 0
    assert scan_count(influxd, new_db) == 5


def test_database_dropped_while_running_is_recreated_on_404(
    influxd: InfluxServer, new_db: str, journal: Journal
) -> None:
    cfg = InfluxConfig(url=influxd.url, database=new_db, batch_lines=200)
    with forwarder(journal, cfg) as fwd:
        fill(journal, 2)
        assert fwd.wait_drained(30)
        influxd.drop_database(new_db)  # the 404 path, not the start-up creation
        fill(journal, 3, start=2)
        assert fwd.wait_drained(30)
        st = fwd.stats
    assert st.quarantined_batches == 0 and journal.quarantined_count() == 0
    assert scan_count(influxd, new_db) == 3  # the rows sent after the drop


def test_create_database_false_pauses_until_it_exists(
    influxd: InfluxServer, new_db: str, journal: Journal
) -> None:
    fill(journal, 4)
    cfg = InfluxConfig(url=influxd.url, database=new_db, create_database=False)
    with forwarder(journal, cfg) as fwd:
        st = wait_paused(fwd)
        assert new_db in (st.last_error or "") and "create_database is false" in (
            st.last_error or ""
        )
        time.sleep(0.5)  # several retries while paused: still nothing quarantined
        assert journal.quarantined_count() == 0 and new_db not in databases(influxd)
        assert fwd.stats.backlog_rows == 4
        influxd.create_database(new_db)
        assert fwd.wait_drained(30)
    assert scan_count(influxd, new_db) == 4


def test_user_who_may_not_create_it_pauses_then_resumes(
    auth_influxd: InfluxServer, journal: Journal
) -> None:
    srv = auth_influxd
    admin = ("admin", "adminpw")
    srv.query(f"CREATE USER {admin[0]} WITH PASSWORD '{admin[1]}' WITH ALL PRIVILEGES")
    srv.query("CREATE USER writer WITH PASSWORD 'writerpw'", auth=admin)
    fill(journal, 6)
    cfg = InfluxConfig(url=srv.url, database="lab", username="writer", password="writerpw")
    with forwarder(journal, cfg) as fwd:
        st = wait_paused(fwd)
        msg = st.last_error or ""
        assert "'lab'" in msg and 'CREATE DATABASE "lab"' in msg and "admin" in msg
        time.sleep(0.5)
        assert journal.quarantined_count() == 0 and fwd.stats.backlog_rows == 6
        # The fix the message names: an admin creates it and grants WRITE.
        srv.query('CREATE DATABASE "lab"', auth=admin)
        srv.query('GRANT WRITE ON "lab" TO writer', auth=admin)
        assert fwd.wait_drained(30)
        assert fwd.stats.state in ("sending", "idle")
    assert scan_count(srv, "lab", auth=admin) == 6
    assert journal.quarantined_count() == 0


def test_v2_missing_bucket_pauses_and_is_never_quarantined(
    influxd: InfluxServer, journal: Journal
) -> None:
    """InfluxDB 1.6 has no /api/v2/write at all: 404 like a missing bucket, so a pause."""
    fill(journal, 3)
    cfg = InfluxConfig(url=influxd.url, dialect="v2", org="lab", bucket="nope", token="t")
    with forwarder(journal, cfg) as fwd:
        st = wait_paused(fwd)
        assert "bucket 'nope'" in (st.last_error or "")
        time.sleep(0.6)
        assert fwd.stats.retries >= 2
        assert journal.quarantined_count() == 0 and fwd.stats.backlog_rows == 3
