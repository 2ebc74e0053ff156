# conf/gateway@.service runs commands gatewayctl has, with the config the unit names.
from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from click.testing import CliRunner

from gatewayctl import main

UNIT = Path(__file__).resolve().parents[2] / "conf" / "gateway@.service"


def test_the_unit_starts_serve_after_check_config_and_stops_gracefully():
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # keys are case-sensitive in systemd
    unit.read_string(UNIT.read_text(encoding="utf-8"))
    service = unit["Service"]
    assert service["Environment"] == "GATEWAY_CONFIG=/etc/gateway/%i.yaml"
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) >= 30
    for key, wanted in (("ExecStartPre", ["check-config"]), ("ExecStart", ["serve"])):
        program, *args = shlex.split(service[key])
        assert program.endswith("/gatewayctl") and args == wanted
        assert CliRunner().invoke(main, [*args, "--help"]).exit_code == 0  # a real command
    assert service["WorkingDirectory"] == service["ReadWritePaths"]  # the store can be written


def test_the_unit_makes_every_file_the_gateway_creates_owner_only():
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str
    unit.read_string(UNIT.read_text(encoding="utf-8"))
    assert unit["Service"]["UMask"] == "0077"  # the store and its -wal/-shm: 0600
