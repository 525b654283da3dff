"""docker-compose.yml and the Dockerfile, checked without Docker (no daemon on these machines).

What can be proven here is proven: the compose file parses, every file it mounts exists, the
odpm service's command is accepted by odpm's own argument parser, the services point at each
other consistently (Grafana's data source URL and database, the dashboards provider path and
the mount), and the Dockerfile's ``CMD`` program runs (``--help``).  Pulling images and
starting containers is not tested; README.md says so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from odpm.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROVISIONING = ROOT / "config" / "grafana" / "provisioning"


def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of each bind mount (short syntax ``./x:/y[:ro]``)."""
    out = []
    for vol in service.get("volumes", []):
        source, target = str(vol).split(":")[:2]
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


def test_compose_parses_with_the_three_services() -> None:
    doc = compose()
    assert set(doc["services"]) == {"influxdb", "grafana", "odpm"}
    named = {
        str(v).split(":")[0]
        for s in doc["services"].values()
        for v in s.get("volumes", [])
        if not str(v).startswith((".", "/"))
    }
    assert named <= set(doc.get("volumes") or {}), f"undeclared named volumes: {named}"


def test_every_mounted_file_exists() -> None:
    mounts = [m for s in compose()["services"].values() for m in bind_mounts(s)]
    assert mounts, "expected the Grafana provisioning and dashboards to be mounted"
    for source, target in mounts:
        assert (ROOT / source).exists(), f"{source} (mounted at {target}) does not exist"


def test_grafana_mounts_match_its_provisioning() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict((t, s) for s, t in bind_mounts(grafana))
    assert Path(ROOT / mounts["/etc/grafana/provisioning"]).resolve() == PROVISIONING
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "odpm.yaml").read_text())
    (prov,) = provider["providers"]
    assert prov["type"] == "file"
    dash_dir = ROOT / mounts[prov["options"]["path"]]
    assert sorted(dash_dir.glob("*.json")), f"no dashboards in {dash_dir}"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(prov["options"]["path"] + "/")
    assert (dash_dir / Path(home).name).is_file()
    assert all(str(v).endswith(":ro") for v in grafana["volumes"] if str(v).startswith("."))


def test_grafana_datasource_points_at_the_influxdb_service() -> None:
    services = compose()["services"]
    ds_doc = yaml.safe_load((PROVISIONING / "datasources" / "odpm.yaml").read_text())
    (ds,) = ds_doc["datasources"]
    url = urlsplit(ds["url"])
    assert url.hostname == "influxdb" and url.hostname in services
    assert services["influxdb"]["image"].startswith("influxdb:1.")
    assert f"{url.port}:{url.port}" in services["influxdb"]["ports"]
    assert services["influxdb"]["environment"]["INFLUXDB_DB"] == ds["jsonData"]["dbName"]
    # No credentials on either side, or both: the data source has none.
    assert services["influxdb"]["environment"]["INFLUXDB_HTTP_AUTH_ENABLED"] == "false"
    assert "user" not in ds and "secureJsonData" not in ds


def test_odpm_command_is_a_valid_serve_invocation() -> None:
    odpm = compose()["services"]["odpm"]
    command = [str(c) for c in odpm["command"]]
    assert command[0] == "odpm"
    args = build_parser().parse_args(command[1:])
    assert args.command == "serve"
    assert args.simulate == 4
    assert args.host == "0.0.0.0"
    assert not args.no_api and not args.no_acquisition
    assert f"{args.port}:{args.port}" in odpm["ports"]
    influx = urlsplit(args.influx_url)
    assert influx.hostname == "influxdb"
    database = compose()["services"]["influxdb"]["environment"]["INFLUXDB_DB"]
    assert odpm["environment"]["ODPM_STORAGE__INFLUX__DATABASE"] == database
    # The journal directory the Dockerfile configures is a volume, so it outlives the container.
    data_dir = re.search(r"ODPM_STORAGE__DATA_DIR=(\S+)", DOCKERFILE.read_text())
    assert data_dir is not None
    assert any(str(v).endswith(":" + data_dir.group(1)) for v in odpm["volumes"])
    assert odpm["build"] == "."


def dockerfile_cmd() -> list[str]:
    """The exec-form ``CMD`` of the Dockerfile (the last one wins, as in Docker)."""
    cmds = re.findall(r"(?m)^CMD\s+(\[.*\])\s*$", DOCKERFILE.read_text())
    assert cmds, "Dockerfile has no exec-form CMD"
    cmd = json.loads(cmds[-1])
    assert isinstance(cmd, list) and all(isinstance(c, str) for c in cmd)
    return cmd


def test_dockerfile_cmd_runs() -> None:
    cmd = dockerfile_cmd()
    assert cmd[:2] == ["odpm", "serve"]
    program = shutil.which(cmd[0])
    if program is None:
        pytest.fail(f"{cmd[0]!r} is not on PATH: install the package (pip install -e .)")
    done = subprocess.run(
        [program, *cmd[1:], "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "usage: odpm serve" in done.stdout
    # The same options the compose command uses are the ones the program documents.
    for option in ("--simulate", "--host", "--port", "--influx-url"):
        assert option in done.stdout


def test_module_entry_point_matches_console_script() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "odpm", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "usage: odpm serve" in done.stdout, done.stderr
