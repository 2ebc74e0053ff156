# deliver_sm towards carriers: kept durably until a receiver binds, removed once answered.
from __future__ import annotations

import asyncio

import smpplib.client
import smpplib.consts
import yaml
from sqlalchemy import select

from gateway.smpp.codec import Pdu
from gateway.smpp.constants import CommandId, Tag
from gateway.smpp.receipt import Receipt, format_receipt
from gateway.store.engine import make_engine
from gateway.store.schema import outbox
from tests.interop.inprocess import provisioned, run_smpp


def receipt_pdu(message_id: str, stat: str = "DELIVRD") -> Pdu:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    text = format_receipt(Receipt(message_id, 1, 1, now, now, stat, 0, "Hello"))
    pdu = Pdu(
        CommandId.DELIVER_SM,
        0,
        0,
        {
            "source_addr_ton": 1,
            "source_addr_npi": 1,
            "source_addr": "964111222333",
            "dest_addr_ton": 5,
            "dest_addr_npi": 0,
            "destination_addr": "AsiaCell",
            "esm_class": 0x04,
            "short_message": text.encode("ascii"),
        },
    )
    pdu.set_tlv(Tag.receipted_message_id, message_id.encode() + b"\0")
    pdu.set_tlv_int(Tag.message_state, 2)
    return pdu


def outbox_rows(ctl) -> int:
    return len(outbox_attempts(ctl))


def outbox_attempts(ctl) -> list[int]:
    engine = make_engine(yaml.safe_load(ctl.config.read_text())["database"])
    with engine.connect() as conn:
        found = list(conn.execute(select(outbox.c.attempts).order_by(outbox.c.id)).scalars())
    engine.dispose()
    return found


def receive(port: int, bind: str, count: int, answers: list[int] | None = None) -> list:
    """A carrier's receiver: bind, take ``count`` deliver_sm (smpplib answers each, with the
    next of ``answers`` when given, else ESME_ROK), unbind."""
    got = []
    client = smpplib.client.Client("127.0.0.1", port, timeout=20, allow_unknown_opt_params=True)
    client.set_message_received_handler(
        lambda pdu: got.append(pdu) or (answers.pop(0) if answers else None)
    )
    client.connect()
    getattr(client, bind)(system_id="TATA", password="tata1234")
    while len(got) < count:
        client.read_once()
    client.unbind()
    client.disconnect()
    return got


async def receive_all(server, port: int, count: int) -> list:
    """``receive`` on a transceiver, then wait until the server has every answer written."""
    got = await asyncio.get_running_loop().run_in_executor(
        None, receive, port, "bind_transceiver", count
    )
    while server.outbox.acknowledged < count:
        await server.outbox.changed()
    await server.writer.barrier()
    return got


def test_receipt_waits_for_a_receiver_bind_then_is_delivered_and_removed(
    tmp_path, store_url
) -> None:
    ctl = provisioned(tmp_path, store_url)
    seen: list = []

    async def scenario(server, port) -> None:
        loop = asyncio.get_running_loop()
        carrier = server.directory.by_system_id("TATA")
        server.send_to_carrier(carrier.id, receipt_pdu("1001"), message_id=1001)
        server.send_to_carrier(carrier.id, receipt_pdu("1002", "EXPIRED"), message_id=1002)
        await server.writer.barrier()
        assert outbox_rows(ctl) == 2  # stored, nobody bound to take them
        seen.extend(await loop.run_in_executor(None, receive, port, "bind_receiver", 2))
        while server.outbox.acknowledged < 2:
            await server.outbox.changed()
        await server.writer.barrier()
        assert outbox_rows(ctl) == 0

    run_smpp(ctl, scenario)
    assert [p.receipted_message_id for p in seen] == [b"1001", b"1002"]
    assert b"stat:DELIVRD" in seen[0].short_message and b"stat:EXPIRED" in seen[1].short_message
    assert all(p.esm_class == 0x04 for p in seen)


def test_receipts_survive_a_restart_of_the_gateway(tmp_path, store_url) -> None:
    ctl = provisioned(tmp_path, store_url)

    async def before(server, port) -> None:
        server.send_to_carrier(server.directory.by_system_id("TATA").id, receipt_pdu("77"), 77)
        await server.writer.barrier()

    run_smpp(ctl, before)
    assert outbox_rows(ctl) == 1
    seen: list = []

    async def after(server, port) -> None:
        seen.extend(await receive_all(server, port, 1))

    run_smpp(ctl, after)
    assert [p.receipted_message_id for p in seen] == [b"77"]
    assert outbox_rows(ctl) == 0


def test_receipts_left_by_a_previous_process_are_sent_after_newer_ones_were_queued(
    tmp_path, store_url
) -> None:
    """Found by the kill test: a receipt made after a restart but before the carrier's bind
    used to hide the previous process's receipts (their ids are lower) for good."""
    ctl = provisioned(tmp_path, store_url)

    async def before(server, port) -> None:
        carrier = server.directory.by_system_id("TATA").id
        for mid in (11, 12):
            server.send_to_carrier(carrier, receipt_pdu(str(mid)), mid)
        await server.writer.barrier()

    run_smpp(ctl, before)  # the process ends with both receipts still in the outbox
    seen: list = []

    async def after(server, port) -> None:
        server.send_to_carrier(server.directory.by_system_id("TATA").id, receipt_pdu("13"), 13)
        await server.writer.barrier()  # queued while nobody is bound
        seen.extend(await receive_all(server, port, 3))

    run_smpp(ctl, after)
    assert [p.receipted_message_id for p in seen] == [b"11", b"12", b"13"]  # oldest first
    assert outbox_rows(ctl) == 0


def test_a_carrier_disabled_while_bound_is_unbound(tmp_path, store_url) -> None:
    ctl = provisioned(tmp_path, store_url)
    got: list = []

    async def scenario(server, port) -> None:
        loop = asyncio.get_running_loop()
        client = smpplib.client.Client("127.0.0.1", port, timeout=20, allow_unknown_opt_params=True)
        client.connect()
        await loop.run_in_executor(
            None, lambda: client.bind_transceiver(system_id="TATA", password="tata1234")
        )
        ctl.ok("carrier", "disable", "TATA")
        await loop.run_in_executor(None, server.directory.load)
        server.enforce_directory()
        got.append(await loop.run_in_executor(None, client.read_pdu))
        client.disconnect()

    run_smpp(ctl, scenario)
    assert got[0].command == "unbind"


def test_a_receipt_the_carrier_throttles_is_sent_again_after_a_delay(tmp_path, store_url) -> None:
    """The carrier answers the first deliver_sm ESME_RTHROTTLED: the receipt is not sent again
    at once (it waits out a delay, the carrier's line goes on), then it is, and is removed."""
    ctl = provisioned(tmp_path, store_url)
    answers = [smpplib.consts.SMPP_ESME_RTHROTTLED, 0]
    got: list = []

    async def scenario(server, port) -> None:
        loop = asyncio.get_running_loop()
        carrier = server.directory.by_system_id("TATA")
        server.send_to_carrier(carrier.id, receipt_pdu("2001"), message_id=2001)
        await server.writer.barrier()
        receiving = loop.run_in_executor(None, receive, port, "bind_receiver", 2, answers)
        await server.outbox.changed()  # the throttled answer came back
        assert server.outbox.delayed(carrier.id) == 1 and server.outbox.waiting(carrier.id) == 0
        await server.writer.barrier()
        assert outbox_attempts(ctl) == [1]  # kept with the PDU: a restart goes on counting
        got.extend(await receiving)  # the second delivery came, after the delay
        while server.outbox.acknowledged < 1:
            await server.outbox.changed()
        await server.writer.barrier()
        assert outbox_rows(ctl) == 0 and server.outbox.delayed(carrier.id) == 0

    run_smpp(ctl, scenario)
    assert [p.receipted_message_id for p in got] == [b"2001", b"2001"]
