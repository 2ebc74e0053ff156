# Real apps against the gateway's SIP side: pjsua2 (PJSIP) registers over UDP, TCP and TLS,
# receives and sends SIP MESSAGE (the gateway runs in the test's loop; pjsua2 in its threads).
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.config import load_config
from gateway.store.engine import make_engine
from gateway.store.schema import messages
from tests.interop.inprocess import run_sip, sip_provisioned
from tests.interop.rawsip import DOMAIN
from tests.interop.sipua import SipUA, make_tls_files

ARABIC = "مرحبا بالعالم، رمز التحقق 4821"
JOHN = {"username": "1111", "password": "john-Secret-1"}


@pytest.fixture
def ctl(tmp_path: Path, store_url: str):
    ca, cert, key = make_tls_files(tmp_path)
    listen = [{"transport": t, "host": "127.0.0.1", "port": 0} for t in ("udp", "tcp")] + [
        {"transport": "tls", "host": "127.0.0.1", "port": 0, "cert": str(cert), "key": str(key)}
    ]
    ctl = sip_provisioned(tmp_path, store_url, sip={"domain": DOMAIN, "listen": listen})
    ctl.ca = str(ca)
    return ctl


def app(ctl, ports, transport: str, **account) -> SipUA:
    return SipUA(
        transport=transport,
        registrar=("127.0.0.1", ports[transport]),
        domain=DOMAIN,
        ca_file=ctl.ca if transport == "tls" else None,
        **{**JOHN, **account},
    )


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_app_registers_receives_and_sends(ctl, transport):
    async def scenario(server, ports):
        ua = await asyncio.to_thread(app, ctl, ports, transport)
        try:
            assert await asyncio.to_thread(ua.wait_registered) == 200
            account = server.directory.by_name("1111")
            [binding] = server.bindings.contacts(account.id, _now())
            assert binding.transport == transport
            outcome = await server.send_message(
                account, from_user="AsiaCell", to_user="+964111222333", text=ARABIC
            )
            assert (outcome.kind, outcome.status) == ("delivered", 200)
            received = await asyncio.to_thread(ua.next_message)
            assert received.body == ARABIC
            assert "AsiaCell" in received.from_uri
            assert received.content_type.lower().startswith("text/plain")
            status = await asyncio.to_thread(ua.send_message, f"sip:0111222444@{DOMAIN}", ARABIC)
            assert status == 202
            assert await asyncio.to_thread(ua.unregister) == 200
            assert len(server.bindings) == 0
        finally:
            await asyncio.to_thread(ua.close)

    run_sip(ctl, scenario)
    engine = make_engine(load_config(ctl.config).database)
    with engine.connect() as conn:
        [row] = conn.execute(select(messages)).mappings().all()
    engine.dispose()
    assert (row["source"], row["destination"], row["body_text"]) == (
        "964111222333",
        "964111222444",
        ARABIC,
    )


def test_wrong_password_and_registering_someone_else_fail(ctl):
    async def scenario(server, ports):
        wrong = await asyncio.to_thread(app, ctl, ports, "udp", password="not-the-password")
        try:
            assert await asyncio.to_thread(wrong.wait_registration_failed) == 403
        finally:
            await asyncio.to_thread(wrong.close)

        def as_jane(cfg) -> None:  # AOR of 1111, credentials of 2222
            import pjsua2 as pj

            cfg.sipConfig.authCreds.clear()
            cfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", "*", "2222", 0, "jane-Secret-2")
            )

        hijack = await asyncio.to_thread(
            lambda: SipUA(
                transport="tcp",
                registrar=("127.0.0.1", ports["tcp"]),
                domain=DOMAIN,
                configure=as_jane,
                **JOHN,
            )
        )
        try:
            assert await asyncio.to_thread(hijack.wait_registration_failed) == 403
        finally:
            await asyncio.to_thread(hijack.close)
        assert len(server.bindings) == 0

    run_sip(ctl, scenario)


def test_phone_and_tablet_both_get_the_message(ctl):
    async def scenario(server, ports):
        phone = await asyncio.to_thread(app, ctl, ports, "udp", contact_user="phone")
        tablet = await asyncio.to_thread(app, ctl, ports, "tcp", contact_user="tablet")
        try:
            assert await asyncio.to_thread(phone.wait_registered) == 200
            assert await asyncio.to_thread(tablet.wait_registered) == 200
            account = server.directory.by_name("1111")
            assert len(server.bindings.contacts(account.id, _now())) == 2
            outcome = await server.send_message(
                account, from_user="+964770000001", to_user="1111", text="كلاهما"
            )
            assert outcome.delivered
            got = [await asyncio.to_thread(ua.next_message) for ua in (phone, tablet)]
            assert [m.body for m in got] == ["كلاهما", "كلاهما"]
        finally:
            await asyncio.to_thread(phone.close)
            await asyncio.to_thread(tablet.close)

    run_sip(ctl, scenario)


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)
