# Only `gatewayctl init` creates the store: a mistyped SQLite path leaves no empty file behind.
from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from tests.conftest import Ctl, write_config


@pytest.fixture
def typo(tmp_path):
    """gatewayctl on a config whose SQLite store was never created (a mistyped path)."""
    database = tmp_path / "gatway.db"
    return Ctl(write_config(tmp_path, f"sqlite:///{database}"), CliRunner()), database


@pytest.mark.parametrize(
    "args",
    [
        ("check-config",),
        ("account", "list"),
        ("carrier", "set", "TATA", "--max-binds", "2"),
        ("audit", "list"),
        ("purge", "--dry-run"),
        ("usage", "--carrier", "TATA", "--from", "2026-11-01", "--to", "2026-11-30"),
        ("registrations", "list"),
    ],
)
def test_a_command_on_a_missing_store_names_it_and_creates_nothing(typo, args) -> None:
    ctl, database = typo
    result = ctl(*args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if str(database) in line]
    assert len(errors) == 1, result.output
    assert errors[0].startswith("error: database ")
    assert "gatewayctl init" in errors[0]
    assert not database.exists()
    assert not any(database.parent.glob("gatway.db*"))  # no side files either


def test_serve_on_a_missing_store_creates_nothing(typo) -> None:
    ctl, database = typo
    ctl.ok("init")  # the key file; then the store goes missing (moved, or a typo)
    database.unlink()
    done = subprocess.run(
        ["gatewayctl", "--config", str(ctl.config), "serve"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"error: database sqlite:///{database}: file {database} does not exist" in done.stderr
    assert not database.exists()


def test_init_creates_it_and_then_commands_work(typo) -> None:
    ctl, database = typo
    ctl.ok("init")
    assert database.exists()
    assert ctl.ok("account", "list").exit_code == 0
    assert ctl.ok("check-config").exit_code == 0
