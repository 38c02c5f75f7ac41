"""The shipped deployment files (deploy/): each systemd unit runs a real `edgeward` command
with real options, and has what a long-running service needs."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import click
import pytest

from edgeward.cli import cli

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_there_are_units_for_the_agent_and_the_fleet_manager() -> None:
    assert {p.name for p in UNITS} == {"edgeward-agent.service", "edgeward-fleet.service"}


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_each_unit_runs_a_real_command(path: Path) -> None:
    unit = _unit(path)
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "edgeward"
    # the command path names real (sub)commands, every option is one the command has, and
    # every required option is given (files need not exist here)
    cmd: click.Command = cli
    rest = argv[1:]
    while isinstance(cmd, click.Group):
        cmd = cmd.commands[rest.pop(0)]
    opts = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    given = {a.split("=")[0] for a in rest if a.startswith("--")}
    assert given <= opts, given - opts
    required = {p.opts[0] for p in cmd.params if isinstance(p, click.Option) and p.required}
    assert required <= given, required - given
    assert service["User"] == "edgeward" and service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM" and service["NoNewPrivileges"] == "true"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_mosquitto_config_and_acl_are_shipped() -> None:
    conf = (DEPLOY / "mosquitto" / "edgeward.conf").read_text()
    assert "allow_anonymous false" in conf and "require_certificate true" in conf
    assert "use_identity_as_username true" in conf and "max_queued_messages 1000000" in conf
    acl = (DEPLOY / "mosquitto" / "acl").read_text()
    assert "pattern readwrite edgeward/v1/devices/%u/#" in acl
