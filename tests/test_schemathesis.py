"""Property-based API check: ``schemathesis run --checks all`` against a running
``odpm serve --simulate 1`` (real uvicorn), once with reads open and once with
``read_requires_key = true``.

Every check schemathesis has is on: no 5xx, responses that match the documented
schema, status codes and content types, invalid input refused (ST201) and valid
input accepted (ST202), missing credentials refused where the schema says a key
is needed and nowhere else (ST203, ST401), 405 with an ``Allow`` header that
lists the documented methods (ST204, ST205).  Bounded: a few examples per
operation and a time budget per mode, one worker (the machine is shared).

One tuning, in the config written below: the history query may answer 422 to
schema-valid input, for the rules a schema cannot state because they relate two
parameters (``every`` finer than the data resolution of the range, too many
buckets, ``end`` before ``start``) or the time range (1970..2200, which JSON
Schema's ``date-time`` cannot bound).  ``tests/test_api_abuse.py`` asserts those
422s one by one.  Likewise ``PUT /thresholds`` answers 422 for a channel number
within 1..800 that some device's channel plan does not have (plans are per device,
the schema is one for all), or a low threshold above its high one (a rule between two
fields); ``PATCH /thresholds`` likewise.  And the trace archive's two writes that take data: an
uploaded reference CSV is parsed (an empty or malformed file is 422 naming what is
wrong), re-analysing a stored trace with another channel plan is 422 when that
plan does not fit the stored trace's frequency axis; and the trace list's ``end``
before ``start`` and the archive's times (``at``, ``start``, ``end``) outside
1970..2200, as for the history.

The SSE stream of the one real device never ends, so a generic client cannot check
it (the end-to-end test reads it); it is excluded.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from odpm.config import hash_api_key
from tests.support.serve_proc import served

pytestmark = pytest.mark.slow

#: Per mode: the whole run stops after this many seconds (schemathesis' --max-time).
MAX_TIME_S = 25
#: Test cases per operation and phase.
MAX_EXAMPLES = 6

CONFIG = """
[[operations]]
include-name = "GET /api/v1/devices/{device_id}/channels/{ch}/history"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]

[[operations]]
include-name = "PUT /api/v1/thresholds"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-name = "PATCH /api/v1/thresholds"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-name = "GET /api/v1/devices/{device_id}/trace"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]

[[operations]]
include-name = "GET /api/v1/devices/{device_id}/traces"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]

[[operations]]
include-name = "PUT /api/v1/devices/{device_id}/references/{name}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-name = "POST /api/v1/devices/{device_id}/traces/{trace_id}/analyze"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]
"""


def _schemathesis() -> list[str]:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe is not None, "schemathesis is a dev dependency (pip install -e .[dev])"
    return [exe]


@pytest.mark.parametrize("read_requires_key", [False, True], ids=["reads-open", "reads-locked"])
def test_api_passes_every_schemathesis_check(tmp_path: Path, read_requires_key: bool) -> None:
    key = "schemathesis-key"
    env = {"ODPM_API__READ_REQUIRES_KEY": "true" if read_requires_key else "false"}
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    with served(tmp_path, key=key, env=env) as s:
        cmd = [
            *_schemathesis(),
            "--config-file", str(config),
            "run", f"{s.url}/openapi.json",
            "--checks", "all",
            "--header", f"Authorization: Bearer {key}",
            "--exclude-path-regex", "/stream$",
            "--max-examples", str(MAX_EXAMPLES),
            "--max-time", str(MAX_TIME_S),
            "--workers", "1",
            "--request-timeout", "20",
            "--seed", "12",
            "--no-color",
        ]  # fmt: skip
        run = subprocess.run(
            cmd, cwd=tmp_path, capture_output=True, text=True, timeout=MAX_TIME_S + 120
        )
        log = s.log.read_text()
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-12000:]
    assert "Traceback" not in log, log[-5000:]
    assert hash_api_key(key) not in out
