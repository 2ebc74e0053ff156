# Attacks on SIP registration (issue 15): nonce replay across a restart, SSRF through the Contact.
from __future__ import annotations

import asyncio
import re
import select
import socket

from tests.interop.rawsip import RawUA
from tests.interop.sipp import free_port
from tests.scenarios.carrier import Carrier
from tests.scenarios.conftest import JOHN_PW

UDP_TCP = [
    {"transport": "udp", "host": "127.0.0.1", "port": 0},
    {"transport": "tcp", "host": "127.0.0.1", "port": 0},
]


def _with_contact(request: bytes, contact: str) -> bytes:
    return re.sub(rb"(?m)^Contact: .*\r$", f"Contact: {contact}\r".encode(), request)


def test_a_register_captured_before_a_restart_cannot_be_replayed_after_it(make_env, sip_ua):
    """The victim registers; an attacker who captured that REGISTER replays it after the
    gateway restarted (within the nonce's 5 minutes), with its own Contact: the digest does
    not cover the Contact, and the nonce, signed with the key file's key, used to be valid
    again with its nonce counts forgotten. Now it is answered 401 stale=true and binds
    nothing; a real app (pjsua2) re-registers after the restart as before."""
    port = free_port()  # fixed, so the pjsua2 app finds the gateway again after the restart
    gw = make_env(sip={"listen": [{"transport": "udp", "host": "127.0.0.1", "port": port}]})
    gw.start()
    app = sip_ua(
        transport="udp", registrar=("127.0.0.1", port), domain=gw.domain, username="1111",
        password=JOHN_PW,
    )  # fmt: skip
    assert app.wait_registered() == 200

    async def victim() -> bytes:
        ua = await RawUA("udp", ("127.0.0.1", port), domain=gw.domain).open()
        try:
            uri = f"sip:{gw.domain}"
            contact = ("Contact", f"<sip:1111@127.0.0.1:{ua.local[1]}>")
            challenged = await ua.request("REGISTER", uri, auth=False, headers=[contact])
            assert challenged.status == 401
            nonce = re.search(r'nonce="([^"]+)"', challenged.headers.get("WWW-Authenticate") or "")
            assert nonce is not None
            header = ("Authorization", ua.credentials("REGISTER", uri, nonce.group(1), 1))
            captured = ua.build("REGISTER", uri, headers=[contact, header])
            ua.send_raw(captured)
            assert (await ua.final()).status == 200
            return captured
        finally:
            ua.close()

    captured = asyncio.run(victim())
    assert gw.stop() == 0
    gw.start()

    async def attacker() -> tuple[int, str, int]:
        ua = await RawUA("udp", ("127.0.0.1", port), domain=gw.domain).open()
        try:
            ua.send_raw(_with_contact(captured, f"<sip:1111@127.0.0.1:{ua.local[1]}>"))
            answer = await ua.final()
            challenge = " ".join(answer.headers.get_all("WWW-Authenticate"))
            return answer.status, challenge, ua.local[1]
        finally:
            ua.close()

    status, challenge, attacker_port = asyncio.run(attacker())
    assert status == 401
    assert "stale=true" in challenge
    listed = gw.ctl.json("registrations", "list", "--json")
    assert not [r for r in listed if str(attacker_port) in r["contact"] + r["source"]]
    assert "authentication of '1111' failed" not in gw.log()  # not counted as guessing
    # the real app's next REGISTER (with its cached nonce, if it sends one) goes through
    assert app.register() == 200
    assert gw.stop() == 0


def test_delivery_never_connects_to_a_contact_address(make_env):
    """SSRF through the Contact: an app registered over TCP naming another host is refused
    403; one naming its own host but a port of some local service, then dropping its
    connection, no longer makes the gateway connect to that port and write a MESSAGE with
    the SMS text there: the message waits and is delivered over the app's next
    registration."""
    gw = make_env(sip={"listen": UDP_TCP}).start()
    tcp = ("127.0.0.1", gw.sip_ports["tcp"])
    victim_service = socket.socket()  # stands for any local service (Redis, an admin port...)
    victim_service.bind(("127.0.0.1", 0))
    victim_service.listen(8)
    service_port = victim_service.getsockname()[1]

    async def register_and_drop() -> None:
        ua = await RawUA("tcp", tcp, domain=gw.domain).open()
        try:
            for host in ("192.0.2.1", "localhost", "10.0.0.1"):
                answer = await ua.register(contact=f"<sip:1111@{host}:19999;transport=tcp>")
                assert answer.status == 403, host
                assert "Contact host" in answer.reason
            forged = f"<sip:1111@127.0.0.1:{service_port};transport=tcp>"
            assert (await ua.register(contact=forged)).status == 200
        finally:
            ua.close()  # the registration's flow is gone

    asyncio.run(register_and_drop())
    with Carrier(gw.smpp_port) as tata:
        resp = tata.submit("FLUSHALL\r\nSET pwned 1\r\n", source_addr="AsiaCell")
        assert resp.status == 0

        async def registers_again() -> str:
            ua = await RawUA("tcp", tcp, domain=gw.domain).open()
            try:
                assert (await ua.register()).status == 200
                message = await ua.incoming(timeout=15)
                ua.answer(message, 200)
                return message.text_body()
            finally:
                ua.close()

        assert asyncio.run(registers_again()) == "FLUSHALL\r\nSET pwned 1\r\n"
        receipt = tata.next_delivered()
        assert b"stat:DELIVRD" in receipt.short_message
    # the MESSAGE was on its way before the app registered again: had the gateway connected
    # to the Contact, the connection would be waiting in the service's backlog by now
    readable, _, _ = select.select([victim_service], [], [], 0)
    victim_service.close()
    assert readable == [], "the gateway connected to the address named in the Contact"
    assert gw.stop() == 0
