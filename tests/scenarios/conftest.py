# Scenario tests (the operator's use cases end to end): real gateway processes, smpplib carriers, pjsua2 apps.
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import Ctl
from tests.interop.conftest import sip_ua  # noqa: F401 - the pjsua2 app factory
from tests.interop.gateway_process import GatewayProcess
from tests.interop.peers import add_tata

JOHN_PW = "john-Secret-1"
DELIVERY = {"retry": ["1s", "2s"], "verification_senders": ["Viber"]}


def provision_env(ctl: Ctl, accounts: list[tuple[str, str, str]]) -> None:
    """Customer, messaging product and the given (account, DID, password) accounts."""
    ctl.ok("init")
    ctl.ok("customer", "add", "John Doe")
    ctl.ok("product", "add", "Call & Chat")
    for account, did, password in accounts:
        ctl.ok(
            "account", "add", account, "--customer", "John Doe", "--did", did,
            "--password", password, "--product", "Call & Chat",
        )  # fmt: skip


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Factory of provisioned, not yet started gateway processes (killed after the test)."""
    made: list[GatewayProcess] = []

    def make(
        name: str = "env1",
        database: str | None = None,
        accounts: list[tuple[str, str, str]] | None = None,
        carrier: bool = True,
        **extra: object,
    ) -> GatewayProcess:
        folder = tmp_path / name
        folder.mkdir()
        gw = GatewayProcess(
            folder,
            database or f"sqlite:///{folder / 'gateway.db'}",
            extra={"delivery": DELIVERY, **extra},
            env=name,
            system_id=f"GW-{name.upper()}"[:15],
            domain=f"{name}.example.net",
        )
        gw.write_config()
        ctl = Ctl(gw.config, CliRunner())
        provision_env(ctl, [("1111", "111222333", JOHN_PW)] if accounts is None else accounts)
        if carrier:
            add_tata(ctl, "--max-binds", "4")
        gw.ctl = ctl  # type: ignore[attr-defined]
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.kill()
