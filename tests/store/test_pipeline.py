# The pipeline against a real store (SQLite and PostgreSQL) with scripted SIP and SMPP peers:
# retries, permanent failures, offline apps, failover between connections, receipts, hops.
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gateway.admission import Refused
from gateway.config import load_config
from gateway.pipeline import Pipeline
from gateway.routes import RoutingCache
from gateway.sip.accounts import AccountDirectory
from gateway.sip.delivery import Outcome
from gateway.smpp.carriers import CarrierDirectory
from gateway.smpp.client import SubmitResult
from gateway.smpp.constants import Status, VendorStatus
from gateway.smpp.receipt import Receipt
from gateway.smpp.storeops import message_row
from gateway.store.schema import cdrs, messages
from tests.interop.inprocess import sip_provisioned, store_and_writer

OK = Outcome("delivered", 200, "OK")


@dataclass
class FakeSip:
    online: set[int] = field(default_factory=set)
    answers: deque[Outcome] = field(default_factory=deque)
    sent: list[tuple[str, str, str]] = field(default_factory=list)

    def live_contacts(self, account: int, now: datetime) -> int:
        return 1 if account in self.online else 0

    async def send_message(self, account, *, from_user, to_user, text) -> Outcome:
        self.sent.append((from_user, to_user, text))
        return self.answers.popleft() if self.answers else OK


@dataclass
class FakeClient:
    bound: bool = True
    results: deque[SubmitResult] = field(default_factory=deque)
    submitted: list[Any] = field(default_factory=list)

    async def submit(self, message) -> SubmitResult:
        self.submitted.append(message)
        if self.results:
            return self.results.popleft()
        return SubmitResult(True, 0, (f"peer-{len(self.submitted)}",), "", False)


@dataclass
class FakeConnections:
    clients: dict[int, FakeClient] = field(default_factory=dict)

    def client(self, connection_id: int) -> FakeClient | None:
        return self.clients.get(connection_id)


@dataclass
class FakeOutbox:
    items: list[Any] = field(default_factory=list)

    def queued(self, item) -> None:
        self.items.append(item)


class Store:
    """Write one carrier message row (as the SMPP server's AcceptOp does)."""

    def __init__(self, fields, text, carrier_id, rd, admission, now, done, parts=1):
        self.args = (fields, text, carrier_id, rd, admission, now, parts)
        self.done = done
        self.row = None

    def stage(self, batch):
        fields, text, carrier_id, rd, admission, now, parts = self.args
        [mid] = batch.new_ids(1)
        self.row = message_row(
            mid, carrier_id, fields, text=text, body=None, parts=parts,
            registered_delivery=rd, now=now, admission=admission,
        )  # fmt: skip
        batch.add(messages, self.row)

    def finish(self, error):
        self.done.set_result(self.row)


@dataclass
class Harness:
    pipeline: Pipeline
    sip: FakeSip
    connections: FakeConnections
    outbox: FakeOutbox
    engine: Any
    writer: Any
    tata: int
    conn_ids: dict[str, int]

    async def submit(
        self, destination, text="hi", *, rd=1, path=(), validity=timedelta(hours=1), parts=1
    ):
        now = datetime.now(UTC)
        admission = self.pipeline.admit(
            origin="carrier", sender="TATA", source="AsiaCell", destination=destination,
            text=text, priority=0, validity_until=now + validity, path=path, now=now,
        )  # fmt: skip
        fields = {
            "source": "AsiaCell", "source_ton": 5, "destination": destination,
            "data_coding": 0, "esm_class": 0, "priority": 0,
            "validity_until": now + validity, "schedule_at": None,
        }  # fmt: skip
        done = asyncio.get_running_loop().create_future()
        self.writer.submit(Store(fields, text, self.tata, rd, admission, now, done, parts))
        row = await done
        self.pipeline.accepted(row)
        return row["id"]

    settled: int = 0

    async def settle(self, count: int = 1) -> None:
        """Wait until ``count`` more attempts have ended."""
        self.settled += count
        while self.pipeline.attempts_settled < self.settled:
            await asyncio.wait_for(self.pipeline.changed(), 10)

    async def quiet(self) -> None:
        """Everything the pipeline queued is written."""
        for _ in range(3):
            self.pipeline.flush()
            await self.writer.barrier()
            await asyncio.sleep(0)

    def row(self, message_id: int) -> dict:
        with self.engine.connect() as conn:
            return dict(
                conn.execute(select(messages).where(messages.c.id == message_id)).mappings().one()
            )


def run(ctl, scenario, **config_changes) -> None:
    config = load_config(ctl.config)

    async def main() -> None:
        async with store_and_writer(config) as (engine, writer):
            carriers, accounts, routes = (
                CarrierDirectory(engine),
                AccountDirectory(engine),
                RoutingCache(engine),
            )
            carriers.load()
            accounts.load()
            routes.load()
            pipeline = Pipeline(config, writer, routes, accounts, carriers)
            sip, connections, outbox = FakeSip(), FakeConnections(), FakeOutbox()
            pipeline.sip, pipeline.connections, pipeline.outbox = sip, connections, outbox
            for name, value in config_changes.items():
                setattr(pipeline, name, value)
            with engine.connect() as conn:
                from gateway.store.schema import connections as table

                ids = {r.name: r.id for r in conn.execute(select(table.c.name, table.c.id))}
            await pipeline.start()
            h = Harness(
                pipeline, sip, connections, outbox, engine, writer,
                carriers.by_system_id("TATA").id, ids,
            )  # fmt: skip
            try:
                await asyncio.wait_for(scenario(h), 60)
            finally:
                await pipeline.close(timeout=2)
                await writer.barrier()

    asyncio.run(main())


@pytest.fixture
def ctl(tmp_path, store_url):
    ctl = sip_provisioned(tmp_path, store_url)
    for name, port in (("A", 2001), ("B", 2002)):
        ctl.ok(
            "connection", "add", name, "--host", "127.0.0.1", "--port", str(port),
            "--system-id", "GW-ENV1", "--password", "peerpw12",
        )  # fmt: skip
    ctl.ok("policy", "add", "--pattern", "222%", "--connection", "A", "--priority", "1")
    ctl.ok("policy", "add", "--pattern", "222%", "--connection", "B", "--priority", "2")
    return ctl


JOHN = "964111222333"


def account_id(h: Harness, name: str) -> int:
    return h.pipeline.accounts.by_name(name).id


def test_temporary_failure_is_retried_after_its_wait_then_delivered(ctl):
    async def scenario(h: Harness) -> None:
        h.sip.online.add(account_id(h, "1111"))
        h.sip.answers.append(Outcome("temporary", 408, "Request Timeout"))
        mid = await h.submit(JOHN, "code 1234")
        await h.settle()
        await h.quiet()
        row = h.row(mid)
        assert (row["state"], row["attempts"], row["error_code"]) == ("retry-wait", 1, 408)
        assert row["next_attempt_at"] > datetime.now(UTC)  # the first wait of delivery.retry
        h.pipeline.sweep(row["next_attempt_at"])  # its time has come
        await h.settle()
        await h.quiet()
        row = h.row(mid)
        assert (row["state"], row["attempts"]) == ("delivered", 2)
        assert len(h.sip.sent) == 2
        [item] = h.outbox.items
        assert b"stat:DELIVRD" in item.pdu.params["short_message"]

    run(ctl, scenario)


def test_permanent_failure_fails_with_the_sip_status_in_the_receipt(ctl):
    async def scenario(h: Harness) -> None:
        h.sip.online.add(account_id(h, "1111"))
        h.sip.answers.append(Outcome("permanent", 415, "Unsupported Media Type"))
        mid = await h.submit(JOHN)
        await h.settle()
        await h.quiet()
        row = h.row(mid)
        assert (row["state"], row["error_code"]) == ("failed", 415)
        assert "415" in row["reason"]
        [item] = h.outbox.items
        assert b"stat:UNDELIV err:415" in item.pdu.params["short_message"]
        with h.engine.connect() as conn:
            [cdr] = conn.execute(select(cdrs)).mappings().all()
        assert (cdr["message_id"], cdr["state"], cdr["route"]) == (mid, "failed", "sip:1111")

    run(ctl, scenario)


def test_offline_app_messages_wait_and_go_in_order_when_it_registers(ctl):
    async def scenario(h: Harness) -> None:
        ids = [await h.submit(JOHN, f"m{i}") for i in range(3)]
        await h.quiet()
        assert {h.row(i)["state"] for i in ids} == {"retry-wait"}
        assert h.sip.sent == []
        john = h.pipeline.accounts.by_name("1111")
        h.sip.online.add(john.id)
        h.pipeline.registered(john)
        await h.settle(3)
        assert [text for _, _, text in h.sip.sent] == ["m0", "m1", "m2"]
        assert h.sip.sent[0][:2] == ("AsiaCell", "+964111222333")

    run(ctl, scenario)


def test_an_offline_number_takes_at_most_max_stored_messages(ctl):
    """Stored messages per number that is not taking them are bounded: beyond the limit new
    ones are refused (ESME_RMSGQFUL / 486), counted again from the store, and accepted again
    once the app took its messages."""

    async def scenario(h: Harness) -> None:
        h.pipeline.parked.limit = 3
        ids = [await h.submit(JOHN, f"m{i}") for i in range(3)]
        with pytest.raises(Refused) as refused:
            await h.submit(JOHN, "one too many")
        assert (refused.value.status, refused.value.sip) == (Status.ESME_RMSGQFUL, 486)
        assert "3 messages are already waiting for 964111222333" in refused.value.reason
        await h.pipeline._count_waiting()  # counted from the store: still full
        assert h.pipeline.in_store == {"retry-wait": 3}  # /metrics gateway_messages
        with pytest.raises(Refused):
            await h.submit(JOHN, "still too many")
        john = h.pipeline.accounts.by_name("1111")
        h.sip.online.add(john.id)
        h.pipeline.registered(john)
        await h.settle(3)
        await h.quiet()
        assert {h.row(i)["state"] for i in ids} == {"delivered"}
        await h.pipeline._count_waiting()  # nothing waits any more: accepted again
        mid = await h.submit(JOHN, "after")
        await h.settle(1)
        await h.quiet()
        assert h.row(mid)["state"] == "delivered"

    run(ctl, scenario)


def test_a_route_whose_peer_takes_nothing_holds_at_most_max_waiting_messages(ctl):
    """Messages waiting for a route's peers (both connections down here) are bounded over
    the route: beyond the limit new ones are refused (ESME_RMSGQFUL / SIP 503), still after
    a count from the store; once the peer takes them, new ones are accepted at once."""

    async def scenario(h: Harness) -> None:
        h.pipeline.waiting.limit = 4
        a, b = FakeClient(bound=False), FakeClient(bound=False)
        h.connections.clients = {h.conn_ids["A"]: a, h.conn_ids["B"]: b}
        ids = [
            await h.submit(f"2224512345{i}", f"m{i}", validity=timedelta(days=1)) for i in range(4)
        ]
        await h.settle(4)
        await h.quiet()
        assert {h.row(i)["state"] for i in ids} == {"retry-wait"}
        with pytest.raises(Refused) as refused:
            await h.submit("22245123459", "one too many")
        assert (refused.value.status, refused.value.sip) == (Status.ESME_RMSGQFUL, 503)
        assert "4 messages are already waiting for the peer of 'A'" in refused.value.reason
        await h.pipeline._count_waiting()  # counted from the store: still full
        with pytest.raises(Refused):
            await h.submit("22245123459", "still too many")
        h.sip.online.add(account_id(h, "1111"))
        local = await h.submit(JOHN, "local")
        b.bound = True  # the second connection comes up: the backlog drains over it
        h.pipeline.sweep(datetime.now(UTC) + timedelta(hours=2))
        await h.settle(5)
        await h.quiet()
        assert {h.row(i)["state"] for i in ids} == {"forwarded"}
        assert {h.row(i)["route"] for i in ids} == {"smpp:B"}
        assert h.row(local)["state"] == "delivered"
        later = await h.submit("22245123459", "accepted again")  # no count needed
        await h.settle()
        await h.quiet()
        assert h.row(later)["state"] == "forwarded"
        await h.pipeline._count_waiting()
        assert h.pipeline.waiting.waiting(["smpp:A", "smpp:B"]) == 0

    run(ctl, scenario)


def test_parked_message_expires_with_an_expired_receipt(ctl):
    async def scenario(h: Harness) -> None:
        mid = await h.submit(JOHN, validity=timedelta(seconds=1))
        await h.quiet()
        assert h.row(mid)["state"] == "retry-wait"
        h.pipeline.sweep(datetime.now(UTC) + timedelta(seconds=2))
        await h.quiet()
        await h.quiet()
        assert h.row(mid)["state"] == "expired"
        [item] = h.outbox.items
        assert b"stat:EXPIRED" in item.pdu.params["short_message"]

    run(ctl, scenario)


def test_a_refusing_connection_fails_over_to_the_next_and_the_peer_receipt_settles_it(ctl):
    async def scenario(h: Harness) -> None:
        a = FakeClient(
            results=deque(
                [
                    SubmitResult(
                        False, Status.ESME_RINVDSTADR, (), "peer answered ESME_RINVDSTADR", False
                    )
                ]
            )
        )
        b = FakeClient()
        h.connections.clients = {h.conn_ids["A"]: a, h.conn_ids["B"]: b}
        mid = await h.submit("22245123456", "to env4")
        await h.settle()
        await h.quiet()
        row = h.row(mid)
        assert (row["state"], row["route"], row["peer_message_id"]) == (
            "forwarded",
            "smpp:B",
            "peer-1",
        )
        assert len(a.submitted) == 1 and len(b.submitted) == 1
        sent = b.submitted[0]
        assert sent.registered_delivery == 1
        assert sent.tlvs == {0x1501: b"env1", 0x1502: str(mid).encode()}  # path, our id
        now = datetime.now(UTC)
        status = await h.pipeline.peer_receipt(
            h.conn_ids["B"], "peer-1", Receipt("peer-1", 1, 1, now, now, "DELIVRD", 0, "")
        )
        assert status == 0
        await h.quiet()
        assert h.row(mid)["state"] == "delivered"
        [item] = h.outbox.items
        assert b"stat:DELIVRD" in item.pdu.params["short_message"]
        # a receipt for an id we never sent is answered too (the peer must not resend it)
        assert (
            await h.pipeline.peer_receipt(
                h.conn_ids["B"], "nope", Receipt("nope", 1, 1, now, now, "DELIVRD", 0, "")
            )
            == 0
        )

    run(ctl, scenario)


def test_no_connection_up_waits_for_a_retry(ctl):
    async def scenario(h: Harness) -> None:
        h.connections.clients = {h.conn_ids["A"]: FakeClient(bound=False)}
        mid = await h.submit("22245123456")
        await h.settle()
        await h.quiet()
        row = h.row(mid)
        assert row["state"] == "retry-wait" and "no connection is up ('A', 'B')" in row["reason"]

    run(ctl, scenario)


def test_all_connections_refusing_for_good_fails_the_message(ctl):
    async def scenario(h: Harness) -> None:
        refuse = SubmitResult(
            False, Status.ESME_RINVDSTADR, (), "peer answered ESME_RINVDSTADR", False
        )
        h.connections.clients = {
            h.conn_ids["A"]: FakeClient(results=deque([refuse])),
            h.conn_ids["B"]: FakeClient(results=deque([refuse])),
        }
        mid = await h.submit("22245123456")
        await h.settle()
        await h.quiet()
        row = h.row(mid)
        assert (row["state"], row["error_code"]) == ("failed", Status.ESME_RINVDSTADR)
        assert "connection 'A'" in row["reason"]

    run(ctl, scenario)


def test_loops_and_hop_limits(ctl):
    async def scenario(h: Harness) -> None:
        with pytest.raises(Refused) as caught:
            await h.submit(JOHN, path=("env4", "env1"))
        assert caught.value.status == VendorStatus.GW_LOOP_DETECTED and caught.value.sip == 482
        with pytest.raises(Refused) as caught:
            await h.submit(JOHN, path=("a", "b", "c", "d", "e"))
        assert caught.value.status == VendorStatus.GW_TOO_MANY_HOPS
        h.connections.clients = {h.conn_ids["A"]: FakeClient()}
        # 4 envs passed, this is the 5th: the next would refuse it, so it is not sent at all
        mid = await h.submit("22245123456", path=("a", "b", "c", "d"))
        await h.settle()
        await h.quiet()
        row = h.row(mid)
        assert (row["state"], row["error_code"]) == ("failed", VendorStatus.GW_TOO_MANY_HOPS)
        assert h.connections.clients[h.conn_ids["A"]].submitted == []

    run(ctl, scenario)


def test_unroutable_destinations_are_refused_at_submit_time(ctl):
    async def scenario(h: Harness) -> None:
        with pytest.raises(Refused) as caught:
            await h.submit("4420799999")
        assert caught.value.status == Status.ESME_RINVDSTADR and caught.value.sip == 404
        with pytest.raises(Refused) as caught:
            await h.submit("964111222555")  # account 3333's product has no messaging
        assert "has a product without messaging" in caught.value.reason

    run(ctl, scenario)


def test_cancel_takes_a_queued_message_out(ctl):
    async def scenario(h: Harness) -> None:
        john = account_id(h, "1111")
        h.sip.online.add(john)
        h.pipeline.max_in_flight = 0  # nothing goes out: the message stays queued
        mid = await h.submit(JOHN)
        # another carrier's cancel leaves it where it is (the store then says it is unknown)
        assert h.pipeline.withdraw(mid, carrier_id=h.tata + 1000) is None
        assert h.pipeline.queue.get(mid) is not None
        withdrawn = h.pipeline.withdraw(mid, carrier_id=h.tata)
        assert withdrawn is not None and withdrawn is not False and withdrawn.id == mid
        assert h.pipeline.withdraw(mid) is None
        h.pipeline.restore(withdrawn)
        h.pipeline.max_in_flight = 10
        h.pipeline._pump_later()
        await h.settle()
        assert len(h.sip.sent) == 1

    run(ctl, scenario)


def test_an_mo_deliver_sm_on_a_connection_enters_the_pipeline(ctl):
    from gateway.connections import ConnectionManager
    from gateway.smpp.codec import Pdu
    from gateway.smpp.constants import CommandId

    def mo(destination: str, text: bytes = b"reply from the vendor", esm_class: int = 0) -> Pdu:
        return Pdu(
            CommandId.DELIVER_SM, 7, 0,
            {"source_addr_ton": 1, "source_addr_npi": 1, "source_addr": "447700900123",
             "dest_addr_ton": 1, "dest_addr_npi": 1, "destination_addr": destination,
             "esm_class": esm_class, "data_coding": 0, "short_message": text},
        )  # fmt: skip

    async def scenario(h: Harness) -> None:
        h.sip.online.add(account_id(h, "1111"))
        manager = ConnectionManager(h.pipeline.config, h.engine, h.writer, None, h.pipeline)
        cid = h.conn_ids["A"]
        assert await manager.mo(cid, "A", mo(JOHN)) == Status.ESME_ROK  # answered once stored
        await h.settle()
        assert h.sip.sent == [("+447700900123", "+964111222333", "reply from the vendor")]
        await h.quiet()
        with h.engine.connect() as conn:
            [row] = conn.execute(select(messages)).mappings().all()
        assert (row["origin"], row["connection_id"], row["state"]) == (
            "connection",
            cid,
            "delivered",
        )
        assert await manager.mo(cid, "A", mo("4420799999")) == Status.ESME_RINVDSTADR
        udh_part = b"\x05\x00\x03\x01\x02\x01" + b"first half"
        assert (
            await manager.mo(cid, "A", mo(JOHN, udh_part, esm_class=0x40)) == Status.ESME_RX_P_APPN
        )

    run(ctl, scenario)


def test_a_long_text_sent_whole_gets_its_receipt_under_its_own_id(ctl):
    """message_payload: several SMS parts, one submit_sm, no fragments."""

    async def scenario(h: Harness) -> None:
        h.sip.online.add(account_id(h, "1111"))
        mid = await h.submit(JOHN, "x" * 400, parts=3)
        await h.settle()
        await h.quiet()
        [item] = h.outbox.items
        assert item.pdu.tlv_str(0x001E) == str(mid)
        assert b"sub:003 dlvrd:003 " in item.pdu.params["short_message"]

    run(ctl, scenario)
