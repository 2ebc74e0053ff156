# Shared fixtures: stores on SQLite and PostgreSQL, and a gatewayctl bound to a temp config.
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import gatewayctl

PG_ENV = "GATEWAY_TEST_POSTGRES"

# No time limit per example: a deadline is a timing assertion, and the first example of a
# test pays one-off costs (phonenumbers metadata loading) on a busy 2-core machine.
settings.register_profile("gateway", deadline=None)
settings.load_profile("gateway")


def postgres_base_url() -> str | None:
    return os.environ.get(PG_ENV) or None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards.

    Skipped (with the reason) when $GATEWAY_TEST_POSTGRES is unset; when it is set, an
    unreachable server fails the test."""
    base = postgres_base_url()
    if base is None:
        pytest.skip(f"${PG_ENV} is not set: PostgreSQL store tests not run")
    schema = f"gwtest_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on the embedded default and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gateway.db'}"
    return request.getfixturevalue("pg_url")


@dataclass
class Ctl:
    """gatewayctl run in-process against one temporary config."""

    config: Path
    runner: CliRunner

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return self.runner.invoke(
            gatewayctl.main,
            ["--config", str(self.config), "--actor", "tester", *args],
            input=input,
            catch_exceptions=False,
        )

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.exit_code == 0, f"{args}: {result.output}"
        return result

    def refused(self, *args: str, contains: str) -> str:
        """Run a command that must fail with one clear error line mentioning ``contains``."""
        result = self(*args)
        assert result.exit_code != 0, f"{args} was accepted: {result.output}"
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one line, got: {result.output!r}"
        assert contains in lines[0], lines[0]
        return lines[0]

    def json(self, *args: str) -> object:
        import json

        return json.loads(self.ok(*args, "--json").stdout)


def write_config(folder: Path, database: str, **extra: object) -> Path:
    data = {
        "env": "env1",
        "database": database,
        "secret_key_file": str(folder / "gateway.key"),
        "numbering": {"country_code": "964", "national_prefix": "0"},
        "sip": {"domain": "env1.example.net"},
        **extra,
    }
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def ctl(tmp_path: Path, store_url: str) -> Ctl:
    """gatewayctl on an initialised store (SQLite and PostgreSQL)."""
    runner = CliRunner()
    tool = Ctl(write_config(tmp_path, store_url), runner)
    tool.ok("init")
    return tool
