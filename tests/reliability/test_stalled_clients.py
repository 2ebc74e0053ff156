# Clients that stop reading: a carrier flooding requests without reading the answers, an app
# flooding SIP over TCP without reading. They are held back (the gateway stops reading them
# instead of buffering answers without bound), and everyone else is served meanwhile.
from __future__ import annotations

import select
import socket
import struct

from gateway.smpp.codec import Pdu, encode
from gateway.smpp.constants import CommandId
from tests.interop.peers import TATA_PW
from tests.scenarios.carrier import Carrier
from tests.scenarios.test_section1_carriers_to_apps import john

CAP = 96 * 1024 * 1024  # what an unthrottled reader would let through; kernel buffers are far less
STALL = 3.0  # seconds the socket must stay unwritable to count as held back


def flood(sock: socket.socket, chunk: bytes) -> int:
    """Send ``chunk`` over and over without reading; return the bytes the peer took before it
    stopped taking more (or CAP if it never did)."""
    sock.setblocking(False)
    sent = 0
    while sent < CAP:
        _, writable, _ = select.select([], [sock], [], STALL)
        if not writable:
            return sent  # held back: the gateway stopped reading this client
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            continue
    return sent


def read_pdu(sock: socket.socket) -> bytes:
    head = sock.recv(4, socket.MSG_WAITALL)
    (length,) = struct.unpack(">I", head)
    return head + sock.recv(length - 4, socket.MSG_WAITALL)


def test_a_carrier_that_stops_reading_is_held_back_and_others_are_served(make_env, sip_ua):
    gw = make_env().start()
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    stalled = socket.create_connection(("127.0.0.1", gw.smpp_port), timeout=10)
    bind = Pdu(CommandId.BIND_TRANSCEIVER, 1, 0, {
        "system_id": "TATA", "password": TATA_PW, "system_type": "", "interface_version": 0x34,
        "addr_ton": 0, "addr_npi": 0, "address_range": "",
    })  # fmt: skip
    stalled.sendall(encode(bind))
    resp = read_pdu(stalled)
    assert struct.unpack(">III", resp[4:16])[1] == 0  # bound, ESME_ROK
    links = b"".join(encode(Pdu(CommandId.ENQUIRE_LINK, i, 0, {})) for i in range(2, 4098))
    try:
        taken = flood(stalled, links)
        assert taken < CAP, "the gateway kept reading a carrier that reads nothing"
        # meanwhile another bind of the carrier is served as usual
        with Carrier(gw.smpp_port) as tata:
            assert tata.submit("still served").status == 0
            assert app.next_message(timeout=30).body == "still served"
    finally:
        stalled.close()
    print(f"stalled carrier held back after {taken:,} bytes of enquire_link")
    gw.stop()


def options(i: int, domain: str) -> bytes:
    return (
        f"OPTIONS sip:{domain} SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKflood{i}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=f{i}\r\n"
        f"To: <sip:{domain}>\r\n"
        f"Call-ID: flood{i}@127.0.0.1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_a_sip_tcp_client_that_never_reads_is_held_back_and_others_are_served(make_env, sip_ua):
    listen = [{"transport": t, "host": "127.0.0.1", "port": 0} for t in ("udp", "tcp")]
    # the flood guard off: it would close this connection after sip.pike_limit requests
    # (tests/security/test_sip_listeners.py); here the back-pressure is under test
    gw = make_env(sip={"listen": listen, "pike_limit": 0}).start()
    stalled = socket.create_connection(("127.0.0.1", gw.sip_ports["tcp"]), timeout=10)
    burst = b"".join(options(i, gw.domain) for i in range(200))
    try:
        taken = flood(stalled, burst)
        assert taken < CAP, "the gateway kept reading an app that reads nothing"
        app = john(sip_ua, gw)  # another app, over UDP, registers meanwhile
        assert app.wait_registered() == 200
    finally:
        stalled.close()
    print(f"stalled SIP client held back after {taken:,} bytes of OPTIONS")
    gw.stop()
