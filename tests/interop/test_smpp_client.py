# The outbound SMPP client against a real peer: the gateway's own SMPP server, in-process.
from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from datetime import UTC, datetime

import pytest
import trustme
from sqlalchemy import select

from gateway.config import load_config
from gateway.secrets import SecretBox
from gateway.smpp.client import ConnectionSettings, Outgoing, SmppClient
from gateway.smpp.codec import Pdu
from gateway.smpp.constants import CommandId, Status, Tag
from gateway.smpp.receipt import Receipt, format_receipt
from gateway.smpp.session import State
from gateway.smpp.storeops import AcceptOp
from gateway.store.schema import connections, fragments, messages
from tests.interop.inprocess import provisioned, run_smpp
from tests.interop.peers import TATA_PW
from tests.stored import plain_rows

ARABIC = "رمز التحقق الخاص بك هو 4711. لا تشارك هذا الرمز مع أي شخص على الإطلاق. " * 2
CLIENT_LOG = "gateway.smpp.client"


def settings(port: int, **changes: object) -> ConnectionSettings:
    values: dict = {
        "id": 1,
        "name": "to-env1",
        "host": "127.0.0.1",
        "port": port,
        "system_id": "TATA",
        "password": TATA_PW,
        "bind_type": "trx",
        "window": 10,
        "throughput": None,
        "tls": False,
        "response_timeout": 5.0,
        "reconnect_min": 0.01,
        "reconnect_max": 0.05,
    }
    values.update(changes)
    return ConnectionSettings(**values)


def outgoing(text: str = "Hello from env4", **changes: object) -> Outgoing:
    values: dict = {
        "message_id": 1,
        "source": "AsiaCell",
        "source_ton": 5,
        "destination": "964111222333",
        "text": text,
        "body": None,
        "data_coding": None,
        "registered_delivery": 1,
        "priority": 0,
        "tlvs": {},
    }
    values.update(changes)
    return Outgoing(**values)


class Peer:
    """The client under test and what its callbacks saw; waits on events, never on time."""

    def __init__(
        self, port: int, on_mo=None, ssl_context=None, base=None, **changes: object
    ) -> None:
        self.states: list[str] = []
        self.delays: list[float | None] = []
        self.receipts: asyncio.Queue = asyncio.Queue()
        self.mos: list[Pdu] = []
        self._changed = asyncio.Event()
        self.client = SmppClient(
            dataclasses.replace(base, **changes) if base else settings(port, **changes),
            on_receipt=lambda peer_id, receipt, pdu: self.receipts.put_nowait((peer_id, receipt)),
            on_mo=on_mo or self._mo,
            on_state=self._state,
            ssl_context=ssl_context,
        )

    async def _mo(self, pdu: Pdu) -> int:
        self.mos.append(pdu)
        return Status.ESME_ROK

    def _state(self, state: str) -> None:
        self.states.append(state)
        if state in ("refused", "disconnected"):
            self.delays.append(self.client.retry_delay)
        self._changed.set()

    async def reach(self, state: str, count: int = 1) -> None:
        while self.states.count(state) < count:
            self._changed.clear()
            await self._changed.wait()


def rows(ctl, table) -> list[dict]:
    return plain_rows(ctl.config, table)  # texts decrypted (retention.encrypt_text)


class Holder:
    """Holds the server's AcceptOps (so submit_sm stay unanswered) until released."""

    def __init__(self, server) -> None:
        self.real = server.writer.submit
        self.held: list[AcceptOp] = []
        self.most = 0
        self.arrived = asyncio.Event()
        server.writer.submit = self.submit

    def submit(self, op) -> None:
        if not isinstance(op, AcceptOp):
            self.real(op)
            return
        self.held.append(op)
        self.most = max(self.most, len(self.held))
        self.arrived.set()

    async def wait(self, count: int) -> None:
        while len(self.held) < count:
            self.arrived.clear()
            await self.arrived.wait()

    def release(self) -> None:
        self.real(self.held.pop(0))


def test_binds_trx_submits_gsm_and_arabic_and_unbinds_on_close(tmp_path, store_url, caplog) -> None:
    ctl = provisioned(tmp_path, store_url)
    results: dict = {}
    caplog.set_level(logging.INFO)

    async def scenario(server, port) -> None:
        ctl.ok(
            "connection", "add", "to-env1", "--host", "127.0.0.1", "--port", str(port),
            "--system-id", "TATA", "--password", TATA_PW, "--window", "5",
        )  # fmt: skip
        with server.engine.connect() as conn:
            row = conn.execute(select(connections)).mappings().one()
        box = SecretBox.from_key_file(load_config(ctl.config).secret_key_file)
        base = ConnectionSettings.from_row(row, box, response_timeout=5.0)
        assert (base.bind_type, base.window, base.password, base.tls) == ("trx", 5, TATA_PW, False)
        assert TATA_PW not in repr(base)
        peer = Peer(port, base=base)
        await peer.client.start()
        await peer.reach("bound")
        assert peer.client.bound and peer.states == ["connecting", "binding", "bound"]
        results["gsm"] = await peer.client.submit(outgoing("Price 10€ [ok]"))
        results["arabic"] = await peer.client.submit(
            outgoing(ARABIC, message_id=2, source="9647701234567", source_ton=1)
        )
        refused = await peer.client.submit(outgoing(destination="12"))
        assert not refused.ok and not refused.temporary and refused.peer_message_ids == ()
        assert refused.status == Status.ESME_RINVDSTADR
        assert refused.reason == "peer answered ESME_RINVDSTADR"
        local = await peer.client.submit(outgoing(source="x" * 30))  # never leaves
        assert not local.ok and local.status == Status.ESME_RINVSRCADR and not local.temporary
        [conn] = server.connections
        await peer.client.close()
        assert peer.states[-2:] == ["unbinding", "closed"] and not peer.client.bound
        assert conn.session.state is State.CLOSED

    run_smpp(ctl, scenario, timeout=15)
    gsm, arabic = results["gsm"], results["arabic"]
    assert gsm.ok and gsm.status == 0 and len(gsm.peer_message_ids) == 1
    assert arabic.ok and len(arabic.peer_message_ids) == 3
    stored = rows(ctl, messages)
    assert [r["body_text"] for r in stored] == ["Price 10€ [ok]", ARABIC]
    assert stored[0]["source"] == "AsiaCell" and stored[0]["data_coding"] == 0
    assert str(stored[0]["id"]) == gsm.peer_message_ids[0]
    assert stored[1]["source"] == "9647701234567" and stored[1]["parts"] == 3
    assert stored[1]["data_coding"] == 8
    parts = rows(ctl, fragments)
    assert [str(p["id"]) for p in parts] == list(arabic.peer_message_ids)
    assert {p["message_id"] for p in parts} == {stored[1]["id"]}
    assert "closing TATA (127.0.0.1): unbound by peer" in caplog.text  # the server's side


def test_window_is_respected_and_the_waiting_line_is_bounded(tmp_path, store_url) -> None:
    ctl = provisioned(tmp_path, store_url)

    async def scenario(server, port) -> None:
        holder = Holder(server)
        peer = Peer(port, window=2)
        peer.client.max_queued = 4
        await peer.client.start()
        await peer.reach("bound")
        tasks = [
            asyncio.create_task(peer.client.submit(outgoing(f"message {n}", message_id=n)))
            for n in range(6)
        ]
        await holder.wait(2)
        assert peer.client.queued == 4
        full = await peer.client.submit(outgoing("one too many"))
        assert not full.ok and full.temporary and full.reason == "queue full"
        assert full.status == Status.ESME_RMSGQFUL
        for _ in range(6):
            await holder.wait(1)
            holder.release()
        results = await asyncio.gather(*tasks)
        assert all(r.ok for r in results)
        assert holder.most == 2  # never more than the window unanswered at the peer
        await peer.client.close()

    run_smpp(ctl, scenario, timeout=15)
    assert sorted(r["body_text"] for r in rows(ctl, messages)) == [f"message {n}" for n in range(6)]


def test_wrong_password_is_retried_at_the_slow_pace_and_logged_once(
    tmp_path, store_url, caplog
) -> None:
    ctl = provisioned(tmp_path, store_url)
    caplog.set_level(logging.DEBUG, logger=CLIENT_LOG)

    async def scenario(server, port) -> None:
        peer = Peer(port, password="wrong-pw", reconnect_min=0.01, reconnect_max=0.03)
        await peer.client.start()
        await peer.reach("refused", 3)
        assert not peer.client.bound and "bound" not in peer.states
        assert peer.delays == [0.03, 0.03, 0.03]  # reconnect_max each time
        await peer.client.close()
        assert peer.states[-1] == "closed"

    run_smpp(ctl, scenario, timeout=15)
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == CLIENT_LOG and r.levelno == logging.WARNING
    ]
    assert warnings == ["connection to-env1: bind refused: ESME_RBINDFAIL"]
    assert "wrong-pw" not in caplog.text


def test_unreachable_peer_backs_off_exponentially_and_warns_once(caplog) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caplog.set_level(logging.DEBUG, logger=CLIENT_LOG)

    async def main() -> None:
        peer = Peer(port, reconnect_min=0.01, reconnect_max=0.04)
        await peer.client.start()
        await peer.reach("disconnected", 5)
        assert peer.delays == [0.01, 0.02, 0.04, 0.04, 0.04]
        result = await peer.client.submit(outgoing())
        assert not result.ok and result.temporary and result.reason == "not bound"
        await asyncio.wait_for(peer.client.close(), 5)

    asyncio.run(main())
    warnings = [r for r in caplog.records if r.name == CLIENT_LOG and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot connect" in warnings[0].getMessage()


def receipt_pdu(peer_id: str, stat: str = "DELIVRD") -> Pdu:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    text = format_receipt(Receipt(peer_id, 1, 1, now, now, stat, 0, "Hello"))
    pdu = Pdu(
        CommandId.DELIVER_SM,
        0,
        0,
        {
            "source_addr_ton": 1,
            "source_addr_npi": 1,
            "source_addr": "964111222333",
            "dest_addr_ton": 5,
            "destination_addr": "AsiaCell",
            "esm_class": 0x04,
            "short_message": text.encode("ascii"),
        },
    )
    pdu.set_tlv(Tag.receipted_message_id, peer_id.encode() + b"\0")
    pdu.set_tlv_int(Tag.message_state, 2 if stat == "DELIVRD" else 5)
    return pdu


def test_peer_receipts_reach_on_receipt_with_the_peer_message_id(tmp_path, store_url) -> None:
    ctl = provisioned(tmp_path, store_url)

    async def scenario(server, port) -> None:
        peer = Peer(port)
        await peer.client.start()
        await peer.reach("bound")
        result = await peer.client.submit(outgoing())
        [peer_id] = result.peer_message_ids
        tata = server.directory.by_system_id("TATA").id
        server.send_to_carrier(tata, receipt_pdu(peer_id), int(peer_id))
        server.send_to_carrier(tata, receipt_pdu("99999", "UNDELIV"), 99999)
        got = [await peer.receipts.get(), await peer.receipts.get()]
        assert [(i, r.message_id, r.stat) for i, r in got] == [
            (peer_id, peer_id, "DELIVRD"),
            ("99999", "99999", "UNDELIV"),
        ]
        while server.outbox.acknowledged < 2:  # both answered ESME_ROK
            await server.outbox.changed()
        assert peer.mos == []
        await peer.client.close()

    run_smpp(ctl, scenario, timeout=15)


def spy_answers(server) -> list[int]:
    """The statuses the peer answers the server's deliver_sm with, in order."""
    answered: list[int] = []
    real_answered = server.outbox.answered

    def spy(item, status) -> None:
        answered.append(status)
        real_answered(item, status)

    server.outbox.answered = spy
    return answered


def test_mo_reaches_on_mo_and_its_status_is_the_answer(tmp_path, store_url) -> None:
    ctl = provisioned(tmp_path, store_url)

    async def scenario(server, port) -> None:
        answered = spy_answers(server)
        gate, called = asyncio.Event(), asyncio.Event()
        calls: list[Pdu] = []

        async def on_mo(pdu: Pdu) -> int:
            calls.append(pdu)
            called.set()
            if len(calls) == 1:
                await gate.wait()
                return Status.ESME_RX_T_APPN  # not stored: the peer must try again
            return Status.ESME_ROK

        peer = Peer(port, on_mo=on_mo)
        await peer.client.start()
        await peer.reach("bound")
        mo = Pdu(
            CommandId.DELIVER_SM,
            0,
            0,
            {
                "source_addr_ton": 1,
                "source_addr_npi": 1,
                "source_addr": "9647701234567",
                "dest_addr_ton": 1,
                "dest_addr_npi": 1,
                "destination_addr": "964111222333",
                "data_coding": 8,
                "short_message": "مرحبا".encode("utf-16-be"),
            },
        )
        server.send_to_carrier(server.directory.by_system_id("TATA").id, mo)
        await called.wait()
        await server.writer.barrier()  # a round trip through the server's writer thread
        assert answered == []  # the deliver_sm_resp waits until on_mo returns
        gate.set()
        while server.outbox.acknowledged < 1:
            await server.outbox.changed()
        assert answered == [Status.ESME_RX_T_APPN, Status.ESME_ROK]
        assert [c.params["short_message"].decode("utf-16-be") for c in calls] == ["مرحبا"] * 2
        assert peer.receipts.empty()
        await peer.client.close()

    run_smpp(ctl, scenario, timeout=15)


def test_an_sme_acknowledgement_from_the_peer_is_answered_and_let_go(tmp_path, store_url) -> None:
    """esm_class 0x08 (SME delivery acknowledgement) and 0x10 (manual/user acknowledgement)
    are neither a receipt nor an MO: answered ESME_ROK, not handed on (they were refused as
    MO with ESME_RINVESMCLASS)."""
    ctl = provisioned(tmp_path, store_url)

    async def scenario(server, port) -> None:
        answered = spy_answers(server)
        calls: list[Pdu] = []

        async def on_mo(pdu: Pdu) -> int:
            calls.append(pdu)
            return Status.ESME_ROK

        peer = Peer(port, on_mo=on_mo)
        await peer.client.start()
        await peer.reach("bound")
        tata = server.directory.by_system_id("TATA").id
        for esm_class in (0x08, 0x10):
            ack = Pdu(CommandId.DELIVER_SM, 0, 0, {
                "source_addr_ton": 1, "source_addr_npi": 1, "source_addr": "9647701234567",
                "dest_addr_ton": 1, "dest_addr_npi": 1, "destination_addr": "964111222333",
                "esm_class": esm_class, "short_message": b"ack",
            })  # fmt: skip
            server.send_to_carrier(tata, ack)
        while server.outbox.acknowledged < 2:
            await server.outbox.changed()
        assert answered == [Status.ESME_ROK, Status.ESME_ROK]
        assert calls == [] and peer.receipts.empty()
        await peer.client.close()

    run_smpp(ctl, scenario, timeout=15)


def test_link_lost_or_unbound_by_the_server_reconnects_and_binds_again(tmp_path, store_url) -> None:
    ctl = provisioned(tmp_path, store_url)

    async def scenario(server, port) -> None:
        holder = Holder(server)
        peer = Peer(port)
        await peer.client.start()
        await peer.reach("bound")
        pending = asyncio.create_task(peer.client.submit(outgoing("in flight")))
        await holder.wait(1)
        [conn] = server.connections
        conn.abort()  # the connection drops with a submit_sm unanswered
        lost = await pending
        assert not lost.ok and lost.temporary and lost.reason == "connection lost"
        await peer.reach("bound", 2)
        assert peer.delays == [0.01]  # backoff starts again from the minimum after a bind
        holder.release()  # the server stores it; its resp has no connection to go to
        [conn] = server.connections
        conn.shut_down()  # the server unbinds politely (as it does when stopping)
        await peer.reach("bound", 3)
        assert peer.states.count("disconnected") == 2
        assert peer.delays == [0.01, 0.01]
        server.writer.submit = holder.real
        assert (await peer.client.submit(outgoing("after"))).ok
        await peer.client.close()

    run_smpp(ctl, scenario, timeout=15)


def test_idle_link_is_probed_and_an_unanswered_submit_times_out(tmp_path, store_url) -> None:
    ctl = provisioned(tmp_path, store_url)

    async def scenario(server, port) -> None:
        holder = Holder(server)
        peer = Peer(port, enquire_link=0.05, response_timeout=0.3)
        await peer.client.start()
        await peer.reach("bound")
        [conn] = server.connections
        seen: list[int] = []
        probed = asyncio.Event()
        real_receive = conn.session.receive_data

        def spy(data: bytes, now):
            seen.append(int.from_bytes(data[4:8], "big"))
            if CommandId.ENQUIRE_LINK in seen:
                probed.set()
            return real_receive(data, now)

        conn.session.receive_data = spy
        await probed.wait()  # the idle client probed the server
        result = await peer.client.submit(outgoing("never answered"))
        assert not result.ok and result.temporary
        assert result.reason == "no submit_sm_resp in time"
        assert peer.client.bound and peer.states.count("bound") == 1  # still the same bind
        holder.release()  # its late resp is counted by the client, nothing else
        server.writer.submit = holder.real
        assert (await peer.client.submit(outgoing("answered"))).ok
        await peer.client.close()

    run_smpp(ctl, scenario, timeout=15)


def test_throughput_limit_spaces_the_parts(tmp_path) -> None:
    ctl = provisioned(tmp_path, f"sqlite:///{tmp_path / 'gateway.db'}")

    async def scenario(server, port) -> None:
        peer = Peer(port, throughput=10)  # 10 parts a second, a burst of 10
        await peer.client.start()
        await peer.reach("bound")
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(
            *(peer.client.submit(outgoing(f"m{n}", message_id=n)) for n in range(15))
        )
        assert all(r.ok for r in results)
        assert loop.time() - started >= 0.45  # 5 beyond the burst need 0.5 s of tokens
        await peer.client.close()

    run_smpp(ctl, scenario, timeout=15)


@pytest.fixture
def tls_files(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)  # the gateway refuses a private key others can read
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    return ca, str(cert_file), str(key_file)


def test_binds_and_submits_over_tls(tmp_path, tls_files) -> None:
    import ssl

    ca, cert, key = tls_files
    listen = [{"host": "127.0.0.1", "port": 0, "tls": {"cert": cert, "key": key}}]
    ctl = provisioned(
        tmp_path,
        f"sqlite:///{tmp_path / 'gateway.db'}",
        smpp={"system_id": "GW-ENV1", "listen": listen},
    )
    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def scenario(server, port) -> None:
        peer = Peer(port, tls=True, ssl_context=context)
        await peer.client.start()
        await peer.reach("bound")
        assert (await peer.client.submit(outgoing("over TLS"))).ok
        await peer.client.close()

    run_smpp(ctl, scenario, timeout=15)
    assert [r["body_text"] for r in rows(ctl, messages)] == ["over TLS"]
