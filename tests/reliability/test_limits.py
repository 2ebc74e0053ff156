# Every configurable limit on a running gateway, set small: the next one over it gets its
# precise protocol answer, and what was within it goes on being served.
from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from gateway.smpp.codec import Pdu, encode
from gateway.smpp.constants import CommandId, Status
from tests.interop.peers import TATA_PW
from tests.interop.rawsip import RawUA
from tests.reliability.test_hostile_input import bound, read_pdu, submit
from tests.scenarios.carrier import Carrier
from tests.scenarios.conftest import DELIVERY, JOHN_PW
from tests.scenarios.test_section1_carriers_to_apps import john, rows

OFFLINE = ("3333", "111222444", "offline-Secret-3")  # an account whose app never registers
LIMITS = {
    "smpp": {"max_pdu": 1024, "max_pending_messages": 2},
    "sip": {"max_contacts": 2, "max_message_body": 100},
}


@pytest.fixture
def gw(make_env):
    gw = make_env(accounts=[("1111", "111222333", JOHN_PW), OFFLINE], **LIMITS).start()
    yield gw
    gw.stop()


@pytest.fixture
def few_stored(make_env):
    delivery = {**DELIVERY, "max_stored_per_destination": 3}
    gw = make_env(accounts=[("1111", "111222333", JOHN_PW), OFFLINE], delivery=delivery).start()
    yield gw
    gw.stop()


def bind(port: int) -> int:
    """A raw bind_transceiver as TATA; its command_status (the socket is closed after)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode(Pdu(CommandId.BIND_TRANSCEIVER, 1, 0, {
            "system_id": "TATA", "password": TATA_PW, "system_type": "",
            "interface_version": 0x34, "addr_ton": 0, "addr_npi": 0, "address_range": "",
        })))  # fmt: skip
        return read_pdu(sock)[1]


def test_binds_per_carrier(gw):
    """TATA is provisioned with --max-binds 4: a 5th bind is refused, the 4 go on; trying
    again and again beyond the limit is no password guessing (the address is not blocked)."""
    carriers = [Carrier(gw.smpp_port) for _ in range(4)]
    try:
        for _ in range(12):  # more than smpp.failed_bind_limit (10)
            assert bind(gw.smpp_port) == Status.ESME_RBINDFAIL
        assert carriers[3].submit("still served").status == 0
    finally:
        for carrier in carriers:
            carrier.close()
    assert bind(gw.smpp_port) == 0  # a bind is free again


def test_pdu_size(gw):
    """smpp.max_pdu 1024: a bigger submit_sm gets generic_nack ESME_RINVCMDLEN, the bind
    is closed (the stream cannot be trusted); a new bind is served."""
    sock = bound(gw.smpp_port)
    head = submit(2, short_message=b"")
    payload = struct.pack(">HH", 0x0424, 1100) + b"x" * 1100  # message_payload TLV
    big = struct.pack(">I", len(head) + len(payload)) + head[4:] + payload
    assert len(big) > 1024
    sock.sendall(big)
    command, status, _, _ = read_pdu(sock)
    assert (command, status) == (CommandId.GENERIC_NACK, Status.ESME_RINVCMDLEN)
    assert sock.recv(1) == b""  # closed
    sock.close()
    with Carrier(gw.smpp_port) as tata:
        assert tata.submit("small enough").status == 0


def test_pending_concatenated_messages(gw):
    """smpp.max_pending_messages 2: a third concatenated message waiting for its parts is
    refused ESME_RMSGQFUL; parts of the two waiting are still taken."""
    sock = bound(gw.smpp_port)

    def part(seq: int, ref: int, number: int) -> int:
        udh = bytes([5, 0, 3, ref, 2, number])
        sock.sendall(submit(seq, esm_class=0x40, short_message=udh + b"part"))
        return read_pdu(sock)[1]

    assert part(2, 1, 1) == 0 and part(3, 2, 1) == 0  # two messages wait for their 2nd part
    assert part(4, 3, 1) == Status.ESME_RMSGQFUL
    assert part(5, 1, 2) == 0  # message 1 is whole now: room for another
    assert part(6, 3, 1) == 0
    sock.close()


def test_stored_messages_per_offline_number(few_stored):
    """delivery.max_stored_per_destination 3: the 4th message for an app that is offline is
    refused ESME_RMSGQFUL, the 3 are kept."""
    gw = few_stored
    offline = "964" + OFFLINE[1]
    with Carrier(gw.smpp_port) as tata:
        resps = [tata.submit(f"kept {i}", destination_addr=offline) for i in range(3)]
        assert [r.status for r in resps] == [0, 0, 0]
        assert tata.submit("one too many", destination_addr=offline).status == (
            Status.ESME_RMSGQFUL
        )
        assert tata.submit("another number").status == 0  # other numbers are not held back
    kept = [r for r in rows(gw) if r["destination"] == offline]
    assert sorted(r["body_text"] for r in kept) == ["kept 0", "kept 1", "kept 2"]
    assert {r["state"] for r in kept} == {"retry-wait"}


def test_registrations_per_account_and_message_size(gw, sip_ua):
    """sip.max_contacts 2: a third contact of one account is refused 403, the two stay;
    sip.max_message_body 100: a bigger MESSAGE is refused 413, a smaller one accepted."""
    phone = john(sip_ua, gw)
    assert phone.wait_registered() == 200

    async def scenario() -> tuple[int, int, int, int]:
        ua = await RawUA("udp", ("127.0.0.1", gw.sip_ports["udp"]), domain=gw.domain).open()
        try:
            tablet = (await ua.register(contact="<sip:1111@127.0.0.1:5071>")).status
            third = (await ua.register(contact="<sip:1111@127.0.0.1:5072>")).status
            big = (await ua.message("+964111222444", "x" * 101)).status
            small = (await ua.message("+964111222444", "x" * 100)).status
            return tablet, third, big, small
        finally:
            ua.close()

    tablet, third, big, small = asyncio.run(scenario())
    assert (tablet, third, big, small) == (200, 403, 413, 202)
    listed = gw.ctl.ok("registrations", "list", "--account", "1111", "--json").output
    assert "5071" in listed and "5072" not in listed
    # the phone's own registration was not disturbed: it still gets messages
    with Carrier(gw.smpp_port) as tata:
        assert tata.submit("to the phone").status == 0
    assert phone.next_message(timeout=30).body == "to the phone"
