"""Property-based API check: schemathesis drives every operation in /openapi.json of a running
``odpm serve --simulate 1`` (real uvicorn) and finds no 5xx and no response that breaks the
documented schema or status codes.  Bounded: a few examples per operation, no deadline.

The SSE stream of the one real device never ends, so a generic client cannot check it
(the end-to-end test reads it); its error answers are checked like any other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from odpm.config import hash_api_key
from tests.support.influxd import free_port

pytestmark = pytest.mark.slow

KEY = "schemathesis-key"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    port = free_port()
    env = {
        **os.environ,
        "ODPM_CONFIG": "",
        "ODPM_API__API_KEY_SHA256": json.dumps([hash_api_key(KEY)]),
        "ODPM_STORAGE__INFLUX__URL": "",
    }
    cmd = [sys.executable, "-m", "odpm", "--log-level", "WARNING", "serve", "--simulate", "1",
           "--port", str(port), "--data-dir", str(tmp / "data")]  # fmt: skip
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/api/v1/devices/sim1/latest", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp / "serve.log").read_text()
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


@pytest.fixture(scope="module")
def api_schema(base_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json").exclude(path_regex=r"/stream$")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: Any, base_url: str) -> None:
    if case.path.endswith("/stream") and case.path_parameters.get("device_id") == "sim1":
        return
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=20,
        checks=[
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
            content_type_conformance,
        ],
    )
