# A gateway's SMPP side running in the test's own event loop, for tests that drive its API.
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from click.testing import CliRunner

from gateway.config import load_config
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


def run_smpp(ctl: Ctl, scenario: Scenario, timeout: float = 60.0) -> None:
    """Start writer + SMPP server on the store, run ``scenario(server, port)``, shut down."""
    config = load_config(ctl.config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        engine = make_engine(config.database)
        writer = BatchWriter(engine)
        writer.start(loop)
        directory = CarrierDirectory(engine)
        directory.load()
        server = SmppServer(config, engine, writer, directory)
        await server.start()
        try:
            await asyncio.wait_for(scenario(server, server.addresses[0][1]), timeout)
        finally:
            await server.close(timeout=10)
            await loop.run_in_executor(None, writer.close)
            engine.dispose()

    asyncio.run(main())
