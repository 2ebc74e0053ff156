# Small shared pieces of the interop tests: the TATA carrier, a raw bound SMPP link.
from __future__ import annotations

import asyncio

from gateway.smpp.codec import Framer, Pdu, decode, encode
from gateway.smpp.constants import CommandId, Status

TATA_PW = "tata1234"


def add_tata(ctl, *extra: str) -> None:
    """Provision carrier TATA (system_id TATA) allowed from 127.0.0.1."""
    ctl.ok(
        "carrier",
        "add",
        "TATA",
        "--system-id",
        "TATA",
        "--password",
        TATA_PW,
        "--allow-ip",
        "127.0.0.1",
        *extra,
    )


async def bound_link(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Framer]:
    """A transceiver bind as TATA over our own codec (for windowed load without smpplib)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        encode(Pdu(CommandId.BIND_TRANSCEIVER, 1, 0, {"system_id": "TATA", "password": TATA_PW}))
    )
    framer = Framer()
    while True:
        frames = framer.feed(await reader.read(4096))
        if frames:
            assert decode(frames[0]).status == Status.ESME_ROK
            return reader, writer, framer
