# A crashed app does not hold its messages back: a new REGISTER cuts short attempts to the
# contacts it left, and a closed TCP connection fails its pending MESSAGE at once (issue 16).
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.sip.server import SipServer, utcnow
from tests.interop.inprocess import run_sip, sip_provisioned
from tests.interop.rawsip import DOMAIN, RawUA

ARABIC = "رمز التحقق 4821"
# timer F far beyond what any wait below allows: an outcome seen within the wait cannot
# come from it
SLOW_TIMER_F = "120s"
WAIT = 10.0


@pytest.fixture
def ctl(tmp_path: Path, store_url: str):
    listen = [{"transport": t, "host": "127.0.0.1", "port": 0} for t in ("udp", "tcp")]
    sip = {"domain": DOMAIN, "listen": listen, "transaction_timeout": SLOW_TIMER_F}
    return sip_provisioned(tmp_path, store_url, sip=sip)


def send(server: SipServer, text: str = ARABIC) -> asyncio.Task:
    account = server.directory.by_name("1111")
    return asyncio.create_task(
        server.send_message(account, from_user="AsiaCell", to_user="+964111222333", text=text)
    )


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_from_a_new_contact_cuts_short_the_attempt_to_the_old_one(ctl, transport):
    async def scenario(server: SipServer, ports):
        addr = ("127.0.0.1", ports[transport])
        crashed = await RawUA(transport, addr).open()
        assert (await crashed.register()).status == 200
        pending = send(server)
        assert (await crashed.incoming()).text_body() == ARABIC  # never answered
        back = await RawUA(transport, addr).open()  # the app restarted: another port
        assert (await back.register()).status == 200
        outcome = await asyncio.wait_for(pending, WAIT)
        assert (outcome.kind, outcome.status, outcome.retry_now) == ("temporary", 503, True)
        assert "registered again" in outcome.reason
        assert server.stats["superseded"] == 1
        assert not server._forks and not server._account_forks  # transactions ended
        # the retry forks to the live bindings: the new contact answers
        again = send(server)
        back.answer(await back.incoming(), 200)
        assert (await asyncio.wait_for(again, WAIT)).kind == "delivered"
        crashed.close()
        back.close()

    run_sip(ctl, scenario)


def test_a_refresh_from_the_contact_being_tried_leaves_its_attempt_alone(ctl):
    async def scenario(server: SipServer, ports):
        addr = ("127.0.0.1", ports["udp"])
        phone = await RawUA("udp", addr).open()
        assert (await phone.register()).status == 200
        pending = send(server)
        request = await phone.incoming()
        assert (await phone.register()).status == 200  # a refresh from the same flow
        assert not pending.done() and server.stats["superseded"] == 0
        phone.answer(request, 200)
        assert (await asyncio.wait_for(pending, WAIT)).kind == "delivered"
        phone.close()

    run_sip(ctl, scenario)


def test_a_closed_tcp_connection_fails_its_pending_message_at_once(ctl):
    async def scenario(server: SipServer, ports):
        app = await RawUA("tcp", ("127.0.0.1", ports["tcp"])).open()
        assert (await app.register()).status == 200
        pending = send(server)
        assert (await app.incoming()).method == "MESSAGE"
        app.close()  # the app dies: its connection closes with the MESSAGE unanswered
        outcome = await asyncio.wait_for(pending, WAIT)
        assert (outcome.kind, outcome.status) == ("temporary", 503)
        assert "transport error" in outcome.reason
        assert server.stats["flow_closed_forks"] == 1
        assert not server._forks and not server._flow_forks
        account = server.directory.by_name("1111")
        assert server.live_contacts(account.id, utcnow()) == 0  # offline: the pipeline parks

    run_sip(ctl, scenario)


def test_a_register_that_only_removes_a_contact_leaves_the_pending_attempt_alone(ctl):
    """A device signing out from a new connection (its binding removed, none added) is no
    sign that the device being tried is gone: its attempt runs on."""

    async def scenario(server: SipServer, ports):
        phone = await RawUA("udp", ("127.0.0.1", ports["udp"])).open()
        assert (await phone.register()).status == 200
        tablet = await RawUA("tcp", ("127.0.0.1", ports["tcp"])).open()
        contact = f"<sip:1111@127.0.0.1:{tablet.local[1]};transport=tcp>"
        assert (await tablet.register(contact=contact)).status == 200
        tablet.close()  # its binding stays, unreachable: the delivery forks to the phone only
        pending = send(server)
        request = await phone.incoming()
        again = await RawUA("tcp", ("127.0.0.1", ports["tcp"])).open()
        assert (await again.register(expires=0, contact=contact)).status == 200
        assert not pending.done() and server.stats["superseded"] == 0
        phone.answer(request, 200)
        assert (await asyncio.wait_for(pending, WAIT)).kind == "delivered"
        phone.close()
        again.close()

    run_sip(ctl, scenario)
