# Hostile input against a running gateway: each gets its precise protocol answer, the gateway
# stays up and every other session carries on.
from __future__ import annotations

import socket
import struct

import pytest

from gateway.smpp.codec import Pdu, encode
from gateway.smpp.constants import CommandId, Status
from tests.interop.peers import TATA_PW
from tests.scenarios.carrier import Carrier
from tests.scenarios.test_section1_carriers_to_apps import john


def read_pdu(sock: socket.socket) -> tuple[int, int, int, bytes]:
    head = sock.recv(16, socket.MSG_WAITALL)
    length, command, status, seq = struct.unpack(">IIII", head)
    body = sock.recv(length - 16, socket.MSG_WAITALL) if length > 16 else b""
    return command, status, seq, body


def bound(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(encode(Pdu(CommandId.BIND_TRANSCEIVER, 1, 0, {
        "system_id": "TATA", "password": TATA_PW, "system_type": "", "interface_version": 0x34,
        "addr_ton": 0, "addr_npi": 0, "address_range": "",
    })))  # fmt: skip
    assert read_pdu(sock)[1] == 0
    return sock


def submit(seq: int, **fields) -> bytes:
    params = {
        "service_type": "", "source_addr_ton": 5, "source_addr_npi": 0, "source_addr": "Shop",
        "dest_addr_ton": 1, "dest_addr_npi": 1, "destination_addr": "964111222333",
        "esm_class": 0, "protocol_id": 0, "priority_flag": 0, "schedule_delivery_time": "",
        "validity_period": "", "registered_delivery": 0, "replace_if_present_flag": 0,
        "data_coding": 0, "sm_default_msg_id": 0, "short_message": b"hi", **fields,
    }  # fmt: skip
    return encode(Pdu(CommandId.SUBMIT_SM, seq, 0, params))


@pytest.fixture
def running(make_env, sip_ua):
    gw = make_env().start()
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    yield gw, app
    gw.stop()


@pytest.mark.parametrize(
    ("label", "fields", "status"),
    [
        ("UCS-2 with an odd length", {"data_coding": 8, "short_message": b"\x00H\x00"},
         Status.ESME_RINVMSGLEN),
        ("a UDH longer than the message", {"esm_class": 0x40, "short_message": b"\x09\x00\x03"},
         Status.ESME_RINVMSGLEN),
        ("a concatenation part 0 of 2", {"esm_class": 0x40,
                                          "short_message": b"\x05\x00\x03\x07\x02\x00hi"},
         Status.ESME_RINVESMCLASS),
        ("a concatenation part over 160 octets",  # stored, it could never be joined
         {"esm_class": 0x40, "short_message": b"\x05\x00\x03\x08\x02\x01" + b"x" * 161},
         Status.ESME_RINVMSGLEN),
        ("a GSM escape as the last octet", {"short_message": b"price 5\x1b"},
         Status.ESME_RINVMSGLEN),
        ("header injection in the sender", {"source_addr": "Shop\r\nX-Evil: 1"},
         Status.ESME_RINVSRCADR),
    ],
)  # fmt: skip
def test_bad_submit_sm_gets_its_status_and_nothing_breaks(running, label, fields, status):
    gw, app = running
    sock = bound(gw.smpp_port)
    try:
        sock.sendall(submit(2, **fields))
        command, answer, seq, _ = read_pdu(sock)
        assert (command, seq) == (CommandId.SUBMIT_SM_RESP, 2)
        assert answer == status, f"{label}: 0x{answer:08X}"
        sock.sendall(submit(3))  # the same session goes on
        assert read_pdu(sock)[1] == 0
        assert app.next_message(timeout=30).body == "hi"
    finally:
        sock.close()


def test_impossible_length_and_out_of_state_pdus(running):
    gw, app = running
    # command_length of 4 GB: the bind is closed at once, nothing is read or allocated
    sock = bound(gw.smpp_port)
    sock.sendall(struct.pack(">IIII", 0xFFFFFFFF, CommandId.SUBMIT_SM, 0, 9))
    command, status, *_ = read_pdu(sock)
    assert command == CommandId.GENERIC_NACK and status == Status.ESME_RINVCMDLEN
    assert sock.recv(1) == b""  # closed
    sock.close()
    # submit_sm before any bind: refused with ESME_RINVBNDSTS, the connection stays usable
    sock = socket.create_connection(("127.0.0.1", gw.smpp_port), timeout=10)
    sock.sendall(submit(5))
    command, status, seq, _ = read_pdu(sock)
    assert (command, status, seq) == (CommandId.SUBMIT_SM_RESP, Status.ESME_RINVBNDSTS, 5)
    sock.close()
    # and a carrier is served as ever
    with Carrier(gw.smpp_port) as tata:
        assert tata.submit("after the abuse").status == 0
    assert app.next_message(timeout=30).body == "after the abuse"
