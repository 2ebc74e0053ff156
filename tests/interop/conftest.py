# Fixtures for tests against a real gateway process and real peers (smpplib as the carrier).
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import Ctl
from tests.interop.gateway_process import GatewayProcess
from tests.interop.peers import add_tata


@pytest.fixture
def gateway(tmp_path: Path, store_url: str) -> Iterator[GatewayProcess]:
    """A provisioned (SCENARIOS 1.1 + TATA) but not yet started gateway; stopped afterwards."""
    gw = GatewayProcess(tmp_path, store_url)
    gw.write_config()
    ctl = Ctl(gw.config, CliRunner())
    ctl.ok("init")
    ctl.ok("customer", "add", "John Doe")
    ctl.ok("product", "add", "Call & Chat")
    ctl.ok(
        "account",
        "add",
        "1111",
        "--customer",
        "John Doe",
        "--did",
        "111222333",
        "--password",
        "john-Secret-1",
        "--product",
        "Call & Chat",
    )
    add_tata(ctl, "--max-binds", "3")
    gw.ctl = ctl  # type: ignore[attr-defined]
    yield gw
    gw.kill()
