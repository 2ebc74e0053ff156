# The message joined from a carrier's parts: its receipt request and acceptance time (issue 16).
from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.config import load_config
from gateway.pipeline_store import WriteOp, pending_from_row, stage_cdr
from gateway.smpp.accept import read_submission
from gateway.smpp.codec import Pdu
from gateway.smpp.constants import CommandId, Status
from gateway.smpp.server import SmppServer
from gateway.smpp.storeops import AcceptOp
from gateway.store.schema import cdrs, messages
from tests.interop.inprocess import provisioned, run_smpp, store_and_writer
from tests.stored import plain_rows

# parts of one message either side of a month end, which is also a price change
JAN = datetime(2027, 1, 31, 23, 59, 59, 500_000, tzinfo=UTC)
FEB = datetime(2027, 2, 1, 0, 0, 0, 700_000, tzinfo=UTC)


class Answers:
    """Stands for the carrier's connection: the answers the store operations give."""

    def __init__(self) -> None:
        self.got: list[tuple[int, dict[str, Any]]] = []

    def respond(self, pdu: Pdu, status: int = Status.ESME_ROK, **params: Any) -> None:
        self.got.append((status, params))


def part(ref: int, seq: int, total: int, registered_delivery: int) -> Pdu:
    udh = bytes([5, 0, 3, ref, total, seq])
    return Pdu(
        CommandId.SUBMIT_SM,
        seq,
        0,
        {
            "source_addr_ton": 5,
            "source_addr": "AsiaCell",
            "dest_addr_ton": 1,
            "destination_addr": "964111222333",
            "esm_class": 0x40,
            "registered_delivery": registered_delivery,
            "short_message": udh + f"part {seq} of {total}. ".encode(),
        },
    )


async def store_parts(
    server: SmppServer, ref: int, parts: list[tuple[int, int, datetime]], *, join: bool
) -> Answers:
    """Store ``parts`` ((seq, registered_delivery, accepted at), of len(parts) in all) as the
    server does on submit_sm, each accepted at its own time; ``join=False``: the node stops
    before joining them (the parts stay stored, unlinked)."""
    carrier = server.directory.by_system_id("TATA")
    assert carrier is not None
    answers = Answers()
    total = max(seq for seq, _, _ in parts)
    for seq, asked, now in parts:
        pdu = part(ref, seq, total, asked)
        sub = read_submission(pdu, server.rules(carrier), now)
        server.writer.submit(
            AcceptOp(
                answers, pdu, sub, carrier.id, carrier.receipt_id, now, now + timedelta(hours=1),
                server.part_stored if join else None,
            )
        )  # fmt: skip
        await server.writer.barrier()
    await server.writer.barrier()  # the joined message is written
    return answers


def end_all(ctl: Any, at: datetime) -> None:
    """Write each message's CDR as the pipeline does when it ends (stage_cdr)."""
    config = load_config(ctl.config)

    async def main() -> None:
        async with store_and_writer(config) as (_engine, writer):
            ended = [pending_from_row(row) for row in plain_rows(ctl.config, messages)]
            writer.submit(
                WriteOp(
                    [lambda batch, p=p: stage_cdr(batch, p, "delivered", None, at) for p in ended]
                )
            )
            await writer.barrier()

    asyncio.run(main())


def export(ctl: Any, day: str) -> list[dict[str, str]]:
    out = ctl.ok(
        "cdrs", "export", "--carrier", "TATA", "--from", day, "--to", day, "--out", "-"
    ).output
    return list(csv.DictReader(io.StringIO(out[out.index("message_id") :])))


def test_parts_joined_live_take_the_first_parts_time_and_any_parts_receipt_request(
    tmp_path, store_url
) -> None:
    """Part 1 (registered_delivery 1) is accepted on 31 January, part 2 (0x00) completes the
    message on 1 February, after a price change: the message, its CDR and its tariff are
    January's, and it asks for a receipt."""
    ctl = provisioned(tmp_path, store_url)
    for price, start in (("0.010", "2027-01-01"), ("0.020", "2027-02-01")):
        ctl.ok(
            "tariff", "add", "--carrier", "TATA", "--prefix", "964", "--price", price,
            "--currency", "USD", "--from", start,
        )  # fmt: skip

    async def scenario(server: SmppServer, _port: int) -> None:
        answers = await store_parts(server, 0x51, [(1, 1, JAN), (2, 0, FEB)], join=True)
        assert [status for status, _ in answers.got] == [Status.ESME_ROK] * 2

    run_smpp(ctl, scenario)
    [row] = plain_rows(ctl.config, messages)
    assert row["accepted_at"] == JAN and row["registered_delivery"] == 1
    assert row["body_text"] == "part 1 of 2. part 2 of 2. "
    end_all(ctl, FEB + timedelta(seconds=3))
    [cdr] = plain_rows(ctl.config, cdrs)
    assert cdr["accepted_at"] == JAN
    [line] = export(ctl, "2027-01-31")
    assert (line["unit_price"], line["currency"]) == ("0.010", "USD")
    assert export(ctl, "2027-02-01") == []


def test_parts_joined_at_start_or_on_expiry_follow_the_same_rule(tmp_path, store_url) -> None:
    """Parts stored but not joined when the node stopped are joined at the next start; a group
    whose part never comes is written failed when it expires: both take the first part's time
    and the strongest receipt request of the parts (1 over 2 over 0), as the live join does."""
    ctl = provisioned(tmp_path, store_url)

    async def before(server: SmppServer, _port: int) -> None:
        await store_parts(server, 0x52, [(1, 1, JAN), (2, 0, FEB), (3, 0, FEB)], join=False)
        # part 2 of 3 never comes; part 3 asks for failure receipts only
        await store_parts(server, 0x53, [(1, 0, JAN), (3, 2, FEB)], join=False)

    run_smpp(ctl, before)
    assert plain_rows(ctl.config, messages) == []

    async def after(server: SmppServer, _port: int) -> None:
        await server.writer.barrier()  # the complete group, joined at start
        server.expire_parts(FEB + timedelta(hours=2))
        await server.writer.barrier()  # reads the expired group's parts
        await server.writer.barrier()  # writes its message

    run_smpp(ctl, after)
    expired, joined = sorted(plain_rows(ctl.config, messages), key=lambda r: r["state"] != "failed")
    assert joined["state"] != "failed" and joined["parts"] == 3
    assert (joined["accepted_at"], joined["registered_delivery"]) == (JAN, 1)
    assert expired["state"] == "failed" and expired["reason"] == "parts 2 of 3 never arrived"
    assert (expired["accepted_at"], expired["registered_delivery"]) == (JAN, 2)
