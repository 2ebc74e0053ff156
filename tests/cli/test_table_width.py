# Tables piped to another program (or a file) carry whole values, not rich's 80-column cut.
from __future__ import annotations

import os
import subprocess

from tests.cli.test_set_commands import provision

LONG_HOST = "smpp-gateway.vendor-one.example.net"
COLUMNS = ("name", "host", "port", "system_id", "bind", "window", "throughput", "tls", "enabled")


def piped(ctl, *args: str) -> str:
    """gatewayctl's stdout through a pipe, as ``gatewayctl ... | grep`` sees it."""
    done = subprocess.run(
        ["gatewayctl", "--config", str(ctl.config), *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_connection_list_piped_shows_whole_hosts_and_every_column(ctl) -> None:
    provision(ctl)
    ctl.ok(
        "connection", "add", "Messages to vendor via SMPP", "--host", LONG_HOST, "--port",
        "2775", "--system-id", "GW-ENV1", "--password", "peer1234",
    )  # fmt: skip
    out = piped(ctl, "connection", "list")
    assert "…" not in out
    header = next(line for line in out.splitlines() if "name" in line)
    assert [c for c in COLUMNS if c in header] == list(COLUMNS)
    assert "198.51.100.4" in out and LONG_HOST in out
    assert "Messages to vendor via SMPP" in out  # on one line, not folded
    assert "GW-ENV1" in out


def test_carrier_list_and_show_piped_show_every_network(ctl) -> None:
    provision(ctl)
    networks = [f"203.0.{i}.0/24" for i in range(20)]
    ctl.ok("carrier", "set", "TATA", *(a for n in networks for a in ("--allow-ip", n)))
    for args in (("carrier", "list"), ("carrier", "show", "TATA")):
        out = piped(ctl, *args)
        assert "…" not in out
        assert ", ".join(networks) in out, out
