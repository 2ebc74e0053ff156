# A gateway's SMPP or SIP side running in the test's own event loop, for tests that drive its API.
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine

from gateway.config import Config, load_config
from gateway.sip.accounts import AccountDirectory
from gateway.sip.server import SipServer
from gateway.smpp.carriers import CarrierDirectory
from gateway.smpp.server import SmppServer
from gateway.store.engine import make_engine
from gateway.store.writer import BatchWriter
from tests.conftest import Ctl, write_config
from tests.interop.peers import add_tata

Scenario = Callable[[SmppServer, int], Awaitable[None]]


def provisioned(tmp_path: Path, store_url: str, **extra: object) -> Ctl:
    extra.setdefault("smpp", {"system_id": "GW-ENV1", "listen": [{"host": "127.0.0.1", "port": 0}]})
    ctl = Ctl(write_config(tmp_path, store_url, **extra), CliRunner())
    ctl.ok("init")
    add_tata(ctl, "--max-binds", "4")
    return ctl


@contextlib.asynccontextmanager
async def store_and_writer(config: Config) -> AsyncIterator[tuple[Engine, BatchWriter]]:
    """The store engine and a running batch writer; the writer drains and stops on exit."""
    loop = asyncio.get_running_loop()
    engine = make_engine(config.database)
    writer = BatchWriter(engine)
    writer.start(loop)
    try:
        yield engine, writer
    finally:
        await loop.run_in_executor(None, writer.close)
        engine.dispose()


def run_smpp(ctl: Ctl, scenario: Scenario, timeout: float = 60.0) -> None:
    """Start writer + SMPP server on the store, run ``scenario(server, port)``, shut down."""
    config = load_config(ctl.config)

    async def main() -> None:
        async with store_and_writer(config) as (engine, writer):
            directory = CarrierDirectory(engine)
            directory.load()
            server = SmppServer(config, engine, writer, directory)
            await server.start()
            try:
                await asyncio.wait_for(scenario(server, server.addresses[0][1]), timeout)
            finally:
                await server.close(timeout=10)

    asyncio.run(main())


SipScenario = Callable[[SipServer, dict[str, int]], Awaitable[None]]


def sip_provisioned(tmp_path: Path, store_url: str, **extra: object) -> Ctl:
    """A store with John Doe's account 1111 (DID 111222333, messaging) and account 2222
    (DID 111222444), SIP listeners on UDP and TCP port 0."""
    extra.setdefault(
        "sip",
        {
            "domain": "env1.example.net",
            "listen": [
                {"transport": "udp", "host": "127.0.0.1", "port": 0},
                {"transport": "tcp", "host": "127.0.0.1", "port": 0},
            ],
        },
    )
    ctl = provisioned(tmp_path, store_url, **extra)
    ctl.ok("customer", "add", "John Doe")
    ctl.ok("product", "add", "Call & Chat")
    ctl.ok("product", "add", "Calls only", "--no-messaging")
    for account, did, password, product in (
        ("1111", "111222333", "john-Secret-1", "Call & Chat"),
        ("2222", "111222444", "jane-Secret-2", "Call & Chat"),
        ("3333", "111222555", "calls-Only-3", "Calls only"),
    ):
        ctl.ok(
            "account", "add", account, "--customer", "John Doe", "--did", did,
            "--password", password, "--product", product,
        )  # fmt: skip
    return ctl


def run_sip(ctl: Ctl, scenario: SipScenario, timeout: float = 60.0) -> None:
    """Start writer + SIP server on the store, run ``scenario(server, ports)``, shut down."""
    config = load_config(ctl.config)

    async def main() -> None:
        async with store_and_writer(config) as (engine, writer):
            accounts = AccountDirectory(engine)
            accounts.load()
            server = SipServer(config, engine, writer, accounts)
            await server.start()
            ports = {b.transport: b.port for b in server.transports.bound}
            try:
                await asyncio.wait_for(scenario(server, ports), timeout)
            finally:
                await server.close()

    asyncio.run(main())
