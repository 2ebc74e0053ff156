# Hostile input at gatewayctl: one line naming the field and the reason, never a traceback.
from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import Ctl, write_config

TATA = ("carrier", "add", "TATA", "--system-id", "TATA", "--password", "tata1234",
        "--allow-ip", "10.0.0.0/8")  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config on an initialised store with carrier TATA (made in-process: quicker)."""
    folder = tmp_path_factory.mktemp("cli-errors")
    ctl = Ctl(write_config(folder, f"sqlite:///{folder / 'gateway.db'}"), CliRunner())
    ctl.ok("init")
    ctl.ok(*TATA)
    return ctl.config


def gatewayctl(config: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["gatewayctl", "--config", str(config), *args],
        capture_output=True, text=True, timeout=60, check=False, cwd=cwd,
    )  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess, *wanted: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for text in wanted:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (("messages", "list", "--since", "9999999d"), ("--since", "before the year 1")),
        (("messages", "list", "--since", "0001-01-01T00:00:00+23:59"),
         ("--since", "out of range")),
        (("usage", "--carrier", "TATA", "--from", "9999-12-31", "--to", "9999-12-31"),
         ("from", "out of range")),
        (("cdrs", "export", "--carrier", "TATA", "--from", "2026-10-01", "--to", "2026-10-31",
          "--out", "/nonexistent-folder/cdrs.csv"), ("--out", "/nonexistent-folder", "exist")),
        (("settlement", "run", "--month", "9999-12"), ("month", "1970 to 9998")),
        (("settlement", "export", "--month", "2026-10", "--carrier", "TATA", "--format", "csv",
          "--out", "/nonexistent-folder/tata.csv"), ("--out", "/nonexistent-folder", "exist")),
        (("status", "--url", "http://[::1"), ("http://[::1", "Invalid IPv6 URL")),
    ],
)  # fmt: skip
def test_hostile_values_are_one_line(store, args, wanted):
    one_line_error(gatewayctl(store, *args), *wanted)


def test_settlement_export_of_every_carrier_needs_an_existing_folder_and_refuses_stdout(
    store, tmp_path
):
    missing = tmp_path / "a" / "b"
    base = ("settlement", "export", "--month", "2026-10", "--format", "csv")
    one_line_error(gatewayctl(store, *base, "--out", str(missing)), "--out", "does not exist")
    assert not (tmp_path / "a").exists()  # no folder made on the way
    one_line_error(gatewayctl(store, *base, "--out", "-", cwd=tmp_path), "--out", "--carrier")
    assert not (tmp_path / "-").exists()
    a_file = tmp_path / "file.csv"
    a_file.write_text("x", encoding="utf-8")
    one_line_error(gatewayctl(store, *base, "--out", str(a_file)), "--out", "is a file")


def test_a_config_nested_beyond_reason_is_one_line(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 50_000 + "]" * 50_000, encoding="utf-8")
    one_line_error(gatewayctl(deep, "check-config"), str(deep), "nested too deeply")


@pytest.fixture
def busy() -> Iterator[tuple[int, int]]:
    """A TCP port with a listener on it and a UDP port with a bound socket (free ports)."""
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        yield tcp.getsockname()[1], udp.getsockname()[1]


@pytest.mark.parametrize("which", ["smpp", "sip", "management"])
def test_serve_on_a_busy_port_is_one_line_naming_the_listener(store, tmp_path, busy, which):
    tcp, udp = busy
    data = yaml.safe_load(store.read_text(encoding="utf-8"))
    data["smpp"] = {"listen": [{"host": "127.0.0.1", "port": tcp if which == "smpp" else 0}]}
    data["sip"]["listen"] = [{"transport": "tcp", "host": "127.0.0.1", "port": 0},
                             {"transport": "udp", "host": "127.0.0.1",
                              "port": udp if which == "sip" else 0}]  # fmt: skip
    data["management"] = {"host": "127.0.0.1", "port": tcp if which == "management" else 0}
    config = tmp_path / "busy.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    key, port = {"smpp": ("smpp.listen[0]", tcp), "sip": ("sip.listen[1]", udp),
                 "management": ("management", tcp)}[which]  # fmt: skip
    one_line_error(
        gatewayctl(config, "serve"),
        f"{key}: cannot listen on 127.0.0.1:{port}: address already in use",
    )
