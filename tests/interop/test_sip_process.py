# The SIP side inside a real `gatewayctl serve` process: listeners from config, restart keeps
# registrations, accounts provisioned while it runs are served without a restart.
from __future__ import annotations

import asyncio

from tests.interop.rawsip import RawUA

SIP = {
    "listen": [
        {"transport": "udp", "host": "127.0.0.1", "port": 0},
        {"transport": "tcp", "host": "127.0.0.1", "port": 0},
    ]
}


def register(port: int, transport: str, **kw) -> int:
    async def main() -> int:
        ua = await RawUA(transport, ("127.0.0.1", port), **kw).open()
        try:
            return (await ua.register()).status
        finally:
            ua.close()

    return asyncio.run(main())


def test_serve_registers_over_udp_and_tcp_and_keeps_them_across_restart(gateway):
    gateway.extra["sip"] = SIP
    gateway.write_config()
    gateway.start()
    assert set(gateway.sip_ports) == {"udp", "tcp"}
    assert register(gateway.sip_ports["udp"], "udp") == 200
    assert register(gateway.sip_ports["tcp"], "tcp") == 200
    assert gateway.stop() == 0
    listed = gateway.ctl.json("registrations", "list", "--json")
    assert sorted(r["transport"] for r in listed) == ["tcp", "udp"]
    gateway.start()
    gateway.wait_for_log(r"sip: 2 registrations restored")
    assert gateway.stop() == 0


def test_account_added_while_running_can_register(gateway):
    gateway.extra["sip"] = SIP
    gateway.write_config()
    gateway.start()
    port = gateway.sip_ports["udp"]
    assert register(port, "udp", user="4444", password="new-Secret-4") == 403
    gateway.ctl.ok(
        "account", "add", "4444", "--customer", "John Doe", "--did", "111222666",
        "--password", "new-Secret-4", "--product", "Call & Chat",
    )  # fmt: skip
    gateway.wait_for_log(r"sip: 2 accounts \(was 1\)")  # the node's periodic reload
    assert register(port, "udp", user="4444", password="new-Secret-4") == 200
    assert gateway.stop() == 0


def test_a_nonce_from_before_a_restart_gets_a_stale_challenge(gateway):
    """An app that re-registers after the gateway restarted, with the nonce it was given
    before, gets 401 with stale=true (RFC 7616 §3.3: it retries with the new nonce without
    asking its user) and its retry is accepted. Not 200 on the old nonce (its nonce counts
    are unknown after a restart: a captured REGISTER could be replayed), and not 403 (an app
    refused after each restart, and counted as guessing): even more re-registrations with old
    nonces than failed_auth_limit leave the address unblocked."""
    gateway.extra["sip"] = {**SIP, "failed_auth_limit": 2}
    gateway.write_config()
    gateway.start()

    async def first() -> tuple[int, str]:
        ua = await RawUA("udp", ("127.0.0.1", gateway.sip_ports["udp"])).open()
        try:
            status = (await ua.register()).status
            assert ua.nonce is not None
            return status, ua.nonce
        finally:
            ua.close()

    status, nonce = asyncio.run(first())
    assert status == 200
    assert gateway.stop() == 0
    gateway.start()

    async def again(count: int) -> tuple[int, str | None, int]:
        ua = await RawUA("udp", ("127.0.0.1", gateway.sip_ports["udp"])).open()
        try:
            uri = f"sip:{ua.domain}"
            header = ("Authorization", ua.credentials("REGISTER", uri, nonce, count))
            contact = ("Contact", f"<sip:1111@127.0.0.1:{ua.local[1]};transport=udp>")
            ua.send_raw(ua.build("REGISTER", uri, headers=[contact, header]))
            stale = await ua.final()
            challenge = next(iter(stale.headers.get_all("WWW-Authenticate")), None)
            retried = await ua.register()  # answers the fresh challenge
            return stale.status, challenge, retried.status
        finally:
            ua.close()

    for count in range(2, 6):  # more than failed_auth_limit
        status, challenge, retried = asyncio.run(again(count))
        assert status == 401
        assert challenge is not None and "stale=true" in challenge
        assert nonce not in challenge
        assert retried == 200
    assert gateway.stop() == 0
