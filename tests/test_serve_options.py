"""``odpm serve``'s options for the simulated devices: parsing, errors, and the device
configs they produce."""

from __future__ import annotations

import pytest

from odpm.cli import build_parser
from odpm.commands.serve import simulate_options
from odpm.config import DeviceConfig
from odpm.errors import UserError


def test_simulated_devices_default_to_trace_at_1_hz() -> None:
    args = build_parser().parse_args(["serve", "--simulate", "1"])
    options = simulate_options(args.simulate_mode, args.simulate_interval_s)
    cfg = DeviceConfig.model_validate({**options, "id": "sim1", "address": "loop://"})
    assert (cfg.mode, cfg.interval_s) == ("trace", 1.0)


def test_mode_and_interval_reach_the_device_config() -> None:
    args = build_parser().parse_args(
        ["serve", "--simulate", "2", "--simulate-mode", "power", "--simulate-interval-s", "0.25"]
    )
    options = simulate_options(args.simulate_mode, args.simulate_interval_s)
    cfg = DeviceConfig.model_validate({**options, "id": "sim1", "address": "loop://"})
    assert (cfg.mode, cfg.interval_s) == ("power", 0.25)


def test_stream_mode_turns_the_interval_into_a_frame_rate() -> None:
    options = simulate_options("stream", 0.05)
    cfg = DeviceConfig.model_validate({**options, "id": "sim1", "address": "loop://"})
    assert cfg.mode == "stream" and cfg.stream_rate_hz == pytest.approx(20.0)
    with pytest.raises(UserError, match=r"frame rate.*0\.001\.\.10 s, got 0"):
        simulate_options("stream", 0.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--simulate-mode", "laser"], "--simulate-mode: invalid choice: 'laser'"),
        (["--simulate-interval-s", "-1"], "--simulate-interval-s: must be in 0..86400 s"),
        (["--simulate-interval-s", "nan"], "--simulate-interval-s: must be in 0..86400 s"),
        (["--simulate-interval-s", "soon"], "--simulate-interval-s: not a number of seconds"),
    ],
)
def test_bad_values_are_refused_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["serve", "--simulate", "1", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_help_documents_both_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--simulate-mode {power,trace,stream}" in out and "(default: trace)" in out
    assert "--simulate-interval-s SECONDS" in out and "(default: 1.0)" in out
