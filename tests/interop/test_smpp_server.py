# smpplib (a real ESME) against a real gateway process: binds, submissions, query/cancel, errors.
from __future__ import annotations

import socket

import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp
from click.testing import CliRunner

from gateway.smpp.codec import Framer, Pdu, decode, encode
from gateway.smpp.constants import CommandId, Status, Tag
from gateway.store.schema import fragments, messages
from tests.conftest import Ctl
from tests.interop.gateway_process import GatewayProcess
from tests.interop.peers import TATA_PW, add_tata
from tests.stored import plain_rows


def connect(gateway, port: int | None = None) -> smpplib.client.Client:
    client = smpplib.client.Client(
        "127.0.0.1", port or gateway.smpp_port, timeout=10, allow_unknown_opt_params=True
    )
    client.connect()
    return client


def stored(gateway, table=messages) -> list[dict]:
    return plain_rows(gateway.config, table)  # texts decrypted (retention.encrypt_text)


def raw_exchange(sock: socket.socket, pdu: Pdu) -> Pdu:
    """Send one PDU and read the next one back, with our codec."""
    sock.sendall(encode(pdu))
    framer = Framer()
    while True:
        chunk = sock.recv(4096)
        assert chunk, "connection closed"
        frames = framer.feed(chunk)
        if frames:
            return decode(frames[0])


def submit(
    client,
    text: bytes,
    *,
    data_coding: int = 0,
    esm_class: int = 0,
    dest: str = "964111222333",
    source: str = "AsiaCell",
    source_ton: int = 5,
    registered_delivery: int = 1,
):
    client.send_message(
        source_addr_ton=source_ton,
        source_addr_npi=0,
        source_addr=source,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=dest,
        short_message=text,
        data_coding=data_coding,
        esm_class=esm_class,
        registered_delivery=registered_delivery,
    )
    resp = client.read_pdu()
    assert resp.command == "submit_sm_resp"
    return resp


def test_bind_kinds_submit_enquire_and_unbind(gateway) -> None:
    gateway.start()
    for bind in ("bind_transmitter", "bind_receiver", "bind_transceiver"):
        client = connect(gateway)
        resp = getattr(client, bind)(system_id="TATA", password=TATA_PW)
        assert resp.status == 0 and resp.system_id == b"GW-ENV1"
        client.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=client))
        assert client.read_pdu().command == "enquire_link_resp"
        if bind != "bind_receiver":
            resp = submit(client, b"Hello from AsiaCell")
            assert resp.status == 0 and int(resp.message_id) > 0
        client.unbind()
        client.disconnect()
    rows = stored(gateway)
    assert len(rows) == 2  # the transmitter and the transceiver submitted
    row = rows[0]
    assert (row["source"], row["destination"], row["body_text"]) == (
        "AsiaCell",
        "964111222333",
        "Hello from AsiaCell",
    )
    # John is not registered: the message is kept for his app (an offline app)
    assert row["state"] == "retry-wait" and row["registered_delivery"] == 1
    assert row["reason"] == "waiting for account 1111 to register"
    # national form, and a number as sender, both become E.164
    client = connect(gateway)
    client.bind_transceiver(system_id="TATA", password=TATA_PW)
    client.send_message(
        source_addr_ton=2,
        source_addr_npi=1,
        source_addr="07701234567",
        dest_addr_ton=2,
        dest_addr_npi=1,
        destination_addr="0111222333",
        short_message=b"national",
        data_coding=0,
    )
    assert client.read_pdu().status == 0
    client.unbind()
    row = stored(gateway)[-1]
    assert (row["source"], row["destination"]) == ("9647701234567", "964111222333")
    assert gateway.stop() == 0


@pytest.mark.parametrize(
    ("system_id", "password", "status"),
    [
        # the same answer for both: the wire does not tell which system_ids exist
        ("TATA", "wrongpw", smpplib.consts.SMPP_ESME_RBINDFAIL),
        ("NOBODY", TATA_PW, smpplib.consts.SMPP_ESME_RBINDFAIL),
    ],
)
def test_wrong_credentials_are_refused_and_not_logged(gateway, system_id, password, status) -> None:
    gateway.start()
    client = connect(gateway)
    with pytest.raises(smpplib.exceptions.PDUError) as info:
        client.bind_transceiver(system_id=system_id, password=password)
    assert info.value.args[1] == status
    client.disconnect()
    gateway.wait_for_log("bind refused")
    assert password not in gateway.log()


def test_bind_from_a_disallowed_address_is_refused(gateway) -> None:
    gateway.ctl.ok(
        "carrier",
        "add",
        "ASIACELL",
        "--system-id",
        "ASIACELL",
        "--password",
        "asia1234",
        "--allow-ip",
        "192.0.2.0/24",
    )
    gateway.start()
    client = connect(gateway)
    with pytest.raises(smpplib.exceptions.PDUError) as info:
        client.bind_transmitter(system_id="ASIACELL", password="asia1234")
    assert info.value.args[1] == smpplib.consts.SMPP_ESME_RBINDFAIL
    gateway.wait_for_log("address 127.0.0.1 not allowed")


def test_max_binds_is_enforced(gateway) -> None:
    gateway.start()
    clients = [connect(gateway) for _ in range(4)]
    for client in clients[:3]:
        client.bind_transceiver(system_id="TATA", password=TATA_PW)
    with pytest.raises(smpplib.exceptions.PDUError) as info:
        clients[3].bind_transceiver(system_id="TATA", password=TATA_PW)
    assert info.value.args[1] == smpplib.consts.SMPP_ESME_RBINDFAIL
    clients[0].unbind()
    clients[0].disconnect()
    gateway.wait_for_log("disconnected")
    again = connect(gateway)
    assert again.bind_transceiver(system_id="TATA", password=TATA_PW).status == 0


def test_latin1_ucs2_emoji_and_concatenated_arabic(gateway) -> None:
    gateway.start()
    client = connect(gateway)
    client.bind_transceiver(system_id="TATA", password=TATA_PW)
    assert submit(client, "Grüße, ça va".encode("latin-1"), data_coding=3).status == 0
    assert submit(client, "رمز التحقق 4711 😀".encode("utf-16-be"), data_coding=8).status == 0
    # GSM 03.38 with the extension table: ESC e is the euro sign, ESC < and ESC > brackets
    assert submit(client, b"Price 10\x1b\x65 \x1b\x3cok\x1b\x3e", data_coding=0).status == 0
    arabic = ("رمز التحقق الخاص بك في فايبر هو 4711. لا تشارك هذا الرمز مع أي شخص. " * 3)[:190]
    parts, coding, esm = smpplib.gsm.make_parts(
        arabic, encoding=smpplib.consts.SMPP_ENCODING_ISO10646
    )
    assert len(parts) == 3
    ids = [submit(client, part, data_coding=coding, esm_class=esm).message_id for part in parts]
    assert len(set(ids)) == 3
    client.unbind()
    rows = stored(gateway)
    texts = [r["body_text"] for r in rows]
    assert len(rows) == 4  # the last part was answered once the whole message was stored
    assert texts[:3] == ["Grüße, ça va", "رمز التحقق 4711 😀", "Price 10€ [ok]"]
    whole = rows[3]
    assert whole["body_text"] == arabic and whole["parts"] == 3
    # admitted as a whole when its last part came: John is offline, so it is kept for his app
    assert whole["state"] == "retry-wait" and whole["route"] == "sip:1111"
    linked = {r["id"]: r["message_id"] for r in stored(gateway, fragments)}
    assert {int(i) for i in ids} == set(linked) and set(linked.values()) == {whole["id"]}


def test_query_and_cancel_of_own_messages_only(gateway) -> None:
    gateway.ctl.ok(
        "carrier",
        "add",
        "ASIACELL",
        "--system-id",
        "ASIACELL",
        "--password",
        "asia1234",
        "--allow-ip",
        "127.0.0.1",
    )
    gateway.start()
    tata = connect(gateway)
    tata.bind_transceiver(system_id="TATA", password=TATA_PW)
    message_id = submit(tata, b"to cancel").message_id.decode()
    asia = connect(gateway)
    asia.bind_transceiver(system_id="ASIACELL", password="asia1234")
    for client, expected in ((asia, smpplib.consts.SMPP_ESME_RQUERYFAIL), (tata, 0)):
        client.send_pdu(
            smpplib.smpp.make_pdu(
                "query_sm",
                client=client,
                message_id=message_id,
                source_addr_ton=5,
                source_addr="AsiaCell",
            )
        )
        resp = client.read_pdu()
        assert resp.command == "query_sm_resp" and resp.status == expected
    assert resp.message_state == smpplib.consts.SMPP_MESSAGE_STATE_ENROUTE
    # smpplib has no cancel_sm: sent with our codec on the same bound sockets
    for sequence, (client, expected) in enumerate(
        ((asia, Status.ESME_RCANCELFAIL), (tata, Status.ESME_ROK), (tata, Status.ESME_RCANCELFAIL)),
        start=100,
    ):
        resp = raw_exchange(
            client._socket,
            Pdu(
                CommandId.CANCEL_SM,
                sequence,
                0,
                {
                    "message_id": message_id,
                    "source_addr_ton": 5,
                    "source_addr": "AsiaCell",
                    "dest_addr_ton": 1,
                    "destination_addr": "964111222333",
                },
            ),
        )
        assert resp.command_id == CommandId.CANCEL_SM_RESP and resp.sequence == sequence
        assert resp.status == expected
    [row] = stored(gateway)
    assert row["state"] == "deleted" and row["reason"] == "cancelled by the carrier (cancel_sm)"
    # it ended like any message: its CDR (billing sees it, as deleted) and its trace
    trace = gateway.ctl.ok("messages", "show", str(row["id"])).output
    assert "deleted       cancelled by the carrier (cancel_sm)" in trace
    assert "cdr " in trace and ": deleted, 1 part," in trace


def test_bad_submissions_get_precise_statuses(gateway) -> None:
    gateway.start()
    client = connect(gateway)
    client.bind_transceiver(system_id="TATA", password=TATA_PW)
    assert submit(client, b"x", dest="12ab").status == smpplib.consts.SMPP_ESME_RINVDSTADR
    assert (
        submit(client, "odd".encode("utf-16-be")[:-1], data_coding=8).status
        == smpplib.consts.SMPP_ESME_RINVMSGLEN
    )
    assert submit(client, b"x", esm_class=0x04).status == smpplib.consts.SMPP_ESME_RINVESMCLASS
    assert (
        submit(client, b"x", registered_delivery=3).status == smpplib.consts.SMPP_ESME_RINVREGDLVFLG
    )
    assert (
        submit(client, b"\x05\x00\x03\x01\x02", esm_class=0x40).status
        == smpplib.consts.SMPP_ESME_RINVMSGLEN
    )
    assert stored(gateway) == []


def test_garbage_from_one_carrier_does_not_disturb_another(gateway) -> None:
    gateway.start()
    good = connect(gateway)
    good.bind_transceiver(system_id="TATA", password=TATA_PW)
    bad = socket.create_connection(("127.0.0.1", gateway.smpp_port), timeout=10)
    bad.sendall(
        encode(Pdu(CommandId.BIND_TRANSMITTER, 1, 0, {"system_id": "TATA", "password": TATA_PW}))
    )
    bad.recv(1024)
    bad.sendall(b"\xff\xff\xff\xff garbage garbage garbage")
    reply = bad.recv(1024)
    assert int.from_bytes(reply[4:8], "big") == CommandId.GENERIC_NACK
    assert int.from_bytes(reply[8:12], "big") == Status.ESME_RINVCMDLEN
    assert bad.recv(1024) == b""  # closed by the gateway
    for i in range(5):
        assert submit(good, f"still fine {i}".encode()).status == 0
    assert len(stored(gateway)) == 5


def test_throughput_limit_answers_throttled(gateway) -> None:
    gateway.ctl.ok(
        "carrier",
        "add",
        "SLOW",
        "--system-id",
        "SLOW",
        "--password",
        "slow1234",
        "--allow-ip",
        "127.0.0.1",
        "--throughput",
        "2",
    )
    gateway.start()
    client = connect(gateway)
    client.bind_transceiver(system_id="SLOW", password="slow1234")
    statuses = [submit(client, f"m{i}".encode()).status for i in range(6)]
    assert statuses.count(0) >= 2 and smpplib.consts.SMPP_ESME_RTHROTTLED in statuses
    assert len(stored(gateway)) == statuses.count(0)


def test_repeated_failed_binds_from_one_address_are_blocked(tmp_path, store_url) -> None:
    gateway = GatewayProcess(
        tmp_path, store_url, extra={"smpp": {"failed_bind_limit": 3, "failed_bind_block": "10m"}}
    )
    gateway.write_config()
    ctl = Ctl(gateway.config, CliRunner())
    ctl.ok("init")
    add_tata(ctl)
    gateway.start()
    try:
        for _ in range(3):
            client = connect(gateway)
            with pytest.raises(smpplib.exceptions.PDUError) as info:
                client.bind_transceiver(system_id="TATA", password="guess123")
            assert info.value.args[1] == smpplib.consts.SMPP_ESME_RBINDFAIL
            client.disconnect()
        # blocked now: even the right password is refused from this address
        client = connect(gateway)
        with pytest.raises(smpplib.exceptions.PDUError) as info:
            client.bind_transceiver(system_id="TATA", password=TATA_PW)
        assert info.value.args[1] == smpplib.consts.SMPP_ESME_RBINDFAIL
        client.disconnect()
        gateway.wait_for_log("too many failed binds for this system_id from this address")
        assert "guess123" not in gateway.log() and TATA_PW not in gateway.log()
    finally:
        gateway.kill()


def test_sar_tlvs_message_payload_and_a_latin1_carrier(gateway) -> None:
    gateway.ctl.ok(
        "carrier",
        "add",
        "LATIN",
        "--system-id",
        "LATIN",
        "--password",
        "latin123",
        "--allow-ip",
        "127.0.0.1",
        "--data-coding",
        "latin1",
    )
    gateway.start()
    tata = connect(gateway)
    tata.bind_transceiver(system_id="TATA", password=TATA_PW)
    sock = tata._socket
    base = {
        "source_addr_ton": 1,
        "source_addr": "+9647701234567",
        "dest_addr_ton": 1,
        "destination_addr": "964111222333",
        "data_coding": 0,
    }
    # two parts joined by SAR TLVs (no UDH), answered in order
    for seq, text in ((1, b"First half, "), (2, b"second half.")):
        pdu = Pdu(CommandId.SUBMIT_SM, 10 + seq, 0, {**base, "short_message": text})
        pdu.set_tlv_int(Tag.sar_msg_ref_num, 0x1234)
        pdu.set_tlv_int(Tag.sar_total_segments, 2)
        pdu.set_tlv_int(Tag.sar_segment_seqnum, seq)
        assert raw_exchange(sock, pdu).status == Status.ESME_ROK
    # a long text in message_payload instead of short_message
    long_text = "Long message carried in the message payload. " * 8  # 360 characters
    pdu = Pdu(CommandId.SUBMIT_SM, 20, 0, {**base, "short_message": b""})
    pdu.set_tlv(Tag.message_payload, long_text.encode("ascii"))
    assert raw_exchange(sock, pdu).status == Status.ESME_ROK
    # both at once is refused
    pdu = Pdu(CommandId.SUBMIT_SM, 21, 0, {**base, "short_message": b"x"})
    pdu.set_tlv(Tag.message_payload, b"y")
    assert raw_exchange(sock, pdu).status == Status.ESME_RINVOPTPARAMVAL
    latin = connect(gateway)
    latin.bind_transmitter(system_id="LATIN", password="latin123")
    assert submit(latin, "Grüße".encode("latin-1"), data_coding=0).status == 0
    # and a concatenated one: its whole text is read as Latin-1 too, not as GSM
    for seq, half in ((1, "Schöne "), (2, "Grüße!")):
        udh = bytes([5, 0, 3, 0x42, 2, seq])
        assert (
            submit(latin, udh + half.encode("latin-1"), data_coding=0, esm_class=0x40).status == 0
        )
    # (the last part is answered once the whole message is stored)
    rows = {r["body_text"]: r for r in stored(gateway)}
    assert "Schöne Grüße!" in rows, list(rows)
    assert rows["First half, second half."]["parts"] == 2
    assert rows["First half, second half."]["source"] == "9647701234567"
    assert long_text in rows, list(rows)
    assert rows[long_text]["parts"] == 3  # 360 GSM characters: three SMS of 153 for billing
    assert "Grüße" in rows  # data_coding 0 read as Latin-1 for this carrier


def test_data_sm_is_accepted_and_submit_multi_refused_clearly(gateway) -> None:
    gateway.start()
    client = connect(gateway)
    client.bind_transceiver(system_id="TATA", password=TATA_PW)
    pdu = Pdu(
        CommandId.DATA_SM,
        30,
        0,
        {
            "source_addr_ton": 5,
            "source_addr": "Viber",
            "dest_addr_ton": 1,
            "destination_addr": "964111222333",
            "registered_delivery": 1,
            "data_coding": 8,
        },
    )
    pdu.set_tlv(Tag.message_payload, "Your code is 4711".encode("utf-16-be"))
    resp = raw_exchange(client._socket, pdu)
    assert resp.command_id == CommandId.DATA_SM_RESP and resp.status == Status.ESME_ROK
    data_sm_id = int(resp.params["message_id"])
    multi = Pdu(
        CommandId.SUBMIT_MULTI,
        31,
        0,
        {
            "source_addr_ton": 5,
            "source_addr": "Viber",
            "short_message": b"hi",
            "dest_addresses": [
                {
                    "dest_flag": 1,
                    "dest_addr_ton": 1,
                    "dest_addr_npi": 1,
                    "destination_addr": "964111222333",
                }
            ],
        },
    )
    resp = raw_exchange(client._socket, multi)
    assert resp.command_id == CommandId.SUBMIT_MULTI_RESP and resp.status == Status.ESME_RINVCMDID
    [row] = stored(gateway)
    assert (row["source"], row["body_text"], row["id"]) == (
        "Viber",
        "Your code is 4711",
        data_sm_id,
    )
