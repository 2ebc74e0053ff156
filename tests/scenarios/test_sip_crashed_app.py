# A crashed app gets its message as soon as it is back (issue 16): a real gateway process,
# smpplib as the carrier, the built-in test UA as an app that dies without unregistering.
from __future__ import annotations

import asyncio
import threading

import pytest

from tests.interop.rawsip import RawUA
from tests.scenarios.carrier import Carrier
from tests.scenarios.test_section1_carriers_to_apps import rows
from tests.security.test_sip_listeners import metric

# timer F of 20 s; every wait below is 10 s: what arrives in time did not wait for timer F
SIP = {
    "transaction_timeout": "20s",
    "listen": [{"transport": t, "host": "127.0.0.1", "port": 0} for t in ("udp", "tcp")],
}
WAIT = 10.0
# a retry schedule far beyond WAIT too: a message that arrives in time was sent again at once
DELIVERY = {"retry": ["30s", "60s"]}
ARABIC = "رمزك 4821 صالح 5 دقائق"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_app_back_from_a_crash_gets_the_message_at_once(make_env, transport):
    """The app gets a MESSAGE and dies without answering or unregistering; it starts again on
    another port and registers: the message reaches the new contact at once, not after the
    20 s timer of the attempt to the dead contact, and the carrier gets its DELIVRD."""
    gw = make_env(sip=SIP, delivery=DELIVERY).start()
    addr = ("127.0.0.1", gw.sip_ports[transport])

    async def scenario(tata: Carrier) -> None:
        crashed = await RawUA(transport, addr).open()
        assert (await crashed.register()).status == 200
        resp = await asyncio.to_thread(tata.submit, ARABIC.encode("utf-16-be"), data_coding=8)
        assert resp.status == 0
        first = await crashed.incoming(WAIT)
        assert first.text_body() == ARABIC  # never answered: the app crashed
        if transport == "udp":
            crashed.close()  # the socket is gone; the gateway cannot know
        back = await RawUA(transport, addr).open()
        assert (await back.register()).status == 200
        again = await back.incoming(WAIT)
        assert again.text_body() == ARABIC
        back.answer(again, 200)
        receipt = await asyncio.to_thread(tata.next_delivered, WAIT)
        assert receipt.receipted_message_id == resp.message_id
        assert b"stat:DELIVRD" in receipt.short_message
        back.close()
        if transport == "tcp":
            crashed.close()

    with Carrier(gw.smpp_port) as tata:
        asyncio.run(scenario(tata))
    gw.wait_for_log("registered again from .*cut short", timeout=WAIT)
    assert metric(gw, "gateway_sip_attempts_cut_total", reason="reregistered") == 1
    [row] = rows(gw)
    assert (row["state"], row["attempts"]) == ("delivered", 2)


def test_closed_tcp_connection_parks_the_message_at_once(make_env):
    """The app's TCP connection closes while a MESSAGE to it is unanswered: that attempt
    fails at once and the message waits (parked) for the app's next registration, which
    gets it, instead of the gateway waiting 20 s for an answer that cannot come."""
    gw = make_env(sip=SIP, delivery=DELIVERY).start()
    addr = ("127.0.0.1", gw.sip_ports["tcp"])

    async def scenario(tata: Carrier) -> None:
        app = await RawUA("tcp", addr).open()
        assert (await app.register()).status == 200
        resp = await asyncio.to_thread(tata.submit, "your code is 4821")
        assert resp.status == 0
        assert (await app.incoming(WAIT)).text_body() == "your code is 4821"
        app.close()
        await asyncio.to_thread(gw.wait_for_log, r"closed with 1 MESSAGE\(s\) unanswered", WAIT)
        row = await asyncio.to_thread(stored_state, gw, "retry-wait")
        assert row["reason"] == "waiting for account 1111 to register"  # parked for it
        back = await RawUA("tcp", addr).open()
        assert (await back.register()).status == 200
        again = await back.incoming(WAIT)
        assert again.text_body() == "your code is 4821"
        back.answer(again, 200)
        receipt = await asyncio.to_thread(tata.next_delivered, WAIT)
        assert b"stat:DELIVRD" in receipt.short_message
        back.close()

    with Carrier(gw.smpp_port) as tata:
        asyncio.run(scenario(tata))
    assert metric(gw, "gateway_sip_attempts_cut_total", reason="flow_closed") == 1
    [row] = rows(gw)
    assert (row["state"], row["attempts"]) == ("delivered", 2)


def stored_state(gw, state: str, timeout: float = WAIT) -> dict:
    """The message's row once the store shows ``state`` (read every 100 ms, bounded)."""
    tick = threading.Event()
    for _ in range(int(timeout * 10)):
        [row] = rows(gw)
        if row["state"] == state:
            return row
        tick.wait(0.1)
    raise AssertionError(f"the message never reached {state}: {row}")
