# Fixtures for tests against a real gateway process and real peers (smpplib as the carrier).
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from tests.conftest import Ctl
from tests.interop.gateway_process import GatewayProcess
from tests.interop.peers import add_tata

if TYPE_CHECKING:
    from tests.interop.sipua import SipUA


@pytest.fixture
def gateway(tmp_path: Path, store_url: str) -> Iterator[GatewayProcess]:
    """A provisioned (John Doe's account 1111 + TATA) but not yet started gateway; stopped afterwards."""
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


@pytest.fixture
def sip_ua() -> Iterator[Callable[..., SipUA]]:
    """Factory of pjsua2 SIP apps (tests/interop/sipua.py): ``sip_ua(transport=..., ...)`` takes
    SipUA's keyword arguments; every UA made is closed after the test."""
    from tests.interop.sipua import SipUA  # pjsua2 is loaded only by the tests that use it

    made: list[SipUA] = []

    def make(**kwargs: Any) -> SipUA:
        ua = SipUA(**kwargs)
        made.append(ua)
        return ua

    yield make
    for ua in made:
        ua.close()
