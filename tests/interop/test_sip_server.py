# The SIP server on the wire: registrar, digest, MESSAGE in/out, OPTIONS, errors (scripted peer).
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.sip.server import SipServer
from gateway.store.schema import messages
from tests.interop.inprocess import run_sip, sip_provisioned
from tests.interop.rawsip import DOMAIN, RawUA
from tests.stored import plain_rows

ARABIC = "مرحبا، رمز التحقق 4821"


@pytest.fixture
def ctl(tmp_path: Path, store_url: str):
    return sip_provisioned(tmp_path, store_url)


def stored_messages(ctl) -> list[dict]:
    return plain_rows(ctl.config, messages)  # texts decrypted (retention.encrypt_text)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_challenge_then_ok_and_listed(ctl, transport):
    async def scenario(server: SipServer, ports: dict[str, int]) -> None:
        ua = await RawUA(transport, ("127.0.0.1", ports[transport])).open()
        first = await ua.request(
            "REGISTER",
            f"sip:{DOMAIN}",
            auth=False,
            headers=[("Contact", f"<sip:1111@127.0.0.1:{ua.local[1]}>"), ("Expires", "300")],
        )
        assert first.status == 401
        # RFC 3581: the answer says where the request really came from
        assert f"rport={ua.local[1]}" in first.headers.get("Via")
        assert "received=127.0.0.1" in first.headers.get("Via")
        # MD5 alone by default: baresip 1.0, Zoiper and older phones reject a 401 that also
        # names SHA-256 (docs/clients.md)
        offered = first.headers.get_all("WWW-Authenticate")
        assert [("SHA-256" in v, "algorithm=MD5" in v) for v in offered] == [(False, True)]
        assert all('qop="auth"' in v for v in offered)
        ok = await ua.register(expires=300)
        assert ok.status == 200, ok
        [contact] = ok.headers.get_all("Contact")
        assert f"127.0.0.1:{ua.local[1]}" in contact
        assert "expires=" in contact
        assert len(server.bindings) == 1
        ua.close()

    run_sip(ctl, scenario)
    listed = ctl.json("registrations", "list", "--json")
    assert [(r["account"], r["transport"]) for r in listed] == [("1111", transport)]


def test_md5_digest_is_accepted_too(ctl):
    async def scenario(server, ports):
        ua = await RawUA("udp", ("127.0.0.1", ports["udp"]), algorithm="MD5").open()
        assert (await ua.register()).status == 200

    run_sip(ctl, scenario)


def test_sha256_is_offered_first_when_configured_and_md5_still_works(tmp_path, store_url):
    listen = [{"transport": "udp", "host": "127.0.0.1", "port": 0}]
    sip = {"domain": DOMAIN, "listen": listen, "digest_algorithms": ["SHA-256", "MD5"]}
    ctl = sip_provisioned(tmp_path, store_url, sip=sip)

    async def scenario(server, ports):
        addr = ("127.0.0.1", ports["udp"])
        first = await (await RawUA("udp", addr).open()).request(
            "REGISTER", f"sip:{DOMAIN}", auth=False
        )
        offered = first.headers.get_all("WWW-Authenticate")
        assert [v.split("algorithm=")[1].split(",")[0] for v in offered] == ["SHA-256", "MD5"]
        for algorithm in ("SHA-256", "MD5"):  # both HA1s are stored for every account
            ua = await RawUA("udp", addr, algorithm=algorithm).open()
            assert (await ua.register()).status == 200, algorithm
            ua.close()

    run_sip(ctl, scenario)


def test_sha256_credentials_are_refused_when_only_md5_is_offered(ctl):
    async def scenario(server, ports):
        addr = ("127.0.0.1", ports["udp"])
        ua = await RawUA("udp", addr).open()
        challenge = await ua.request("REGISTER", f"sip:{DOMAIN}", auth=False)
        [offered] = challenge.headers.get_all("WWW-Authenticate")
        nonce = offered.split('nonce="')[1].split('"')[0]
        ua.algorithm = "SHA-256"  # a downgrade the other way: not what was offered
        header = ("Authorization", ua.credentials("REGISTER", f"sip:{DOMAIN}", nonce, 1))
        contact = ("Contact", f"<sip:1111@127.0.0.1:{ua.local[1]}>")
        ua.send_raw(ua.build("REGISTER", f"sip:{DOMAIN}", headers=[contact, header]))
        answer = await ua.final()
        assert (answer.status, answer.reason) == (403, "Forbidden (digest SHA-256 not offered)")
        ua.close()

    run_sip(ctl, scenario)


def test_wrong_password_unknown_user_and_other_aor_are_refused(ctl):
    async def scenario(server, ports):
        server_addr = ("127.0.0.1", ports["udp"])
        wrong = await RawUA("udp", server_addr, password="not-it").open()
        assert (await wrong.register()).status == 403
        nobody = await RawUA("udp", server_addr, user="9999").open()
        assert (await nobody.register()).status == 403
        # 2222 authenticates as itself but tries to register 1111's address
        jane = await RawUA("udp", server_addr, user="2222", password="jane-Secret-2").open()
        hijack = await jane.request(
            "REGISTER",
            f"sip:{DOMAIN}",
            to=f"<sip:1111@{DOMAIN}>",
            headers=[("Contact", f"<sip:2222@127.0.0.1:{jane.local[1]}>")],
        )
        assert hijack.status == 403
        assert "own" in hijack.reason
        # ... but its DID is its own AOR
        by_did = await jane.request(
            "REGISTER",
            f"sip:{DOMAIN}",
            to=f"<sip:+964111222444@{DOMAIN}>",
            headers=[("Contact", f"<sip:2222@127.0.0.1:{jane.local[1]}>")],
        )
        assert by_did.status == 200
        assert len(server.bindings) == 1

    run_sip(ctl, scenario)


def test_account_without_messaging_cannot_register(ctl):
    async def scenario(server, ports):
        ua = await RawUA(
            "udp", ("127.0.0.1", ports["udp"]), user="3333", password="calls-Only-3"
        ).open()
        answer = await ua.register()
        assert answer.status == 403
        assert "messaging" in answer.reason

    run_sip(ctl, scenario)


def test_repeated_failures_are_blocked(tmp_path, store_url):
    ctl = sip_provisioned(
        tmp_path,
        store_url,
        sip={
            "domain": DOMAIN,
            "listen": [{"transport": "udp", "host": "127.0.0.1", "port": 0}],
            "failed_auth_limit": 3,
        },
    )

    async def scenario(server, ports):
        addr = ("127.0.0.1", ports["udp"])
        bad = await RawUA("udp", addr, password="nope").open()
        statuses = [(await bad.register()).status for _ in range(3)]
        assert statuses == [403, 403, 403]
        good = await RawUA("udp", addr).open()  # same address: blocked even with the password
        answer = await good.register()
        assert answer.status == 403
        assert "too many" in answer.reason
        assert server.stats["auth_blocked"] >= 1

    run_sip(ctl, scenario)


def test_expiry_rules_and_unregister(ctl):
    async def scenario(server, ports):
        ua = await RawUA("udp", ("127.0.0.1", ports["udp"])).open()
        brief = await ua.register(expires=10)
        assert brief.status == 423
        assert brief.headers.get("Min-Expires") == "60"
        long = await ua.register(expires=999_999)
        assert long.status == 200
        assert "expires=3600" in long.headers.get("Contact")
        tablet = f"<sip:1111@127.0.0.1:{ua.local[1] + 1}>"
        both = await ua.register(contact=tablet)
        assert len(both.headers.get_all("Contact")) == 2
        gone = await ua.request(
            "REGISTER", f"sip:{DOMAIN}", headers=[("Contact", "*"), ("Expires", "0")]
        )
        assert gone.status == 200
        assert gone.headers.get_all("Contact") == []
        assert len(server.bindings) == 0

    run_sip(ctl, scenario)


def test_registrations_survive_a_restart(ctl):
    async def register(server, ports):
        ua = await RawUA("udp", ("127.0.0.1", ports["udp"])).open()
        assert (await ua.register()).status == 200

    async def after(server, ports):
        assert len(server.bindings) == 1
        [binding] = server.bindings.contacts(server.directory.by_name("1111").id, _now())
        assert binding.transport == "udp"

    run_sip(ctl, register)
    run_sip(ctl, after)


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_message_from_app_is_stored_then_202(ctl, transport):
    async def scenario(server, ports):
        ua = await RawUA(transport, ("127.0.0.1", ports[transport])).open()
        unauth = await ua.message("0111222444", ARABIC, auth=False)
        assert unauth.status == 407
        assert unauth.headers.get_all("Proxy-Authenticate")
        answer = await ua.message("0111222444", ARABIC)
        assert answer.status == 202, answer

    run_sip(ctl, scenario)
    [row] = stored_messages(ctl)
    assert (row["origin"], row["source"], row["destination"]) == (
        "account",
        "964111222333",
        "964111222444",
    )
    assert row["body_text"] == ARABIC
    assert (row["data_coding"], row["state"]) == (8, "accepted")


def test_message_from_app_refusals(ctl):
    async def scenario(server, ports):
        ua = await RawUA("tcp", ("127.0.0.1", ports["tcp"])).open()
        forged = await ua.message("111222444", "hi", from_user="2222")
        assert forged.status == 403
        html = await ua.message("111222444", "<b>hi</b>", headers=[("Content-Type", "text/html")])
        assert html.status == 415
        assert html.headers.get("Accept") == "text/plain"
        big = await ua.message("111222444", "x" * 2001)
        assert big.status == 413
        latin = await ua.message(
            "111222444", "hi", headers=[("Content-Type", "text/plain;charset=x-unknown")]
        )
        assert latin.status == 415
        nowhere = await ua.message("not-a-number", "hi")
        assert nowhere.status == 404
        # every refusal went through its transaction, and on TCP those end at once (timer J=0)
        assert len(server.table) == 0

    run_sip(ctl, scenario)
    assert stored_messages(ctl) == []


def test_options_other_methods_and_malformed(ctl):
    async def scenario(server, ports):
        ua = await RawUA("udp", ("127.0.0.1", ports["udp"])).open()
        options = await ua.request("OPTIONS", f"sip:{DOMAIN}", auth=False)
        assert options.status == 200
        assert options.headers.get("Allow") == "REGISTER, MESSAGE, OPTIONS"
        invite = await ua.request("INVITE", f"sip:1111@{DOMAIN}", auth=False)
        assert invite.status == 405
        assert "MESSAGE" in invite.headers.get("Allow")
        ua.send_raw(
            ua.build("OPTIONS", f"sip:{DOMAIN}").replace(b"Max-Forwards: 70", b"Max-Forwards: many")
        )
        bad = await ua.final()
        assert bad.status == 400
        ua.send_raw(b"\x00\x01garbage that is not SIP\r\n\r\n")
        again = await ua.request("OPTIONS", f"sip:{DOMAIN}", auth=False)
        assert again.status == 200
        assert server.stats["malformed"] == 2
        assert server.stats["dropped"] == 1

    run_sip(ctl, scenario)


def test_max_forwards_zero_and_another_auth_scheme_as_rfc_4475_says(ctl):
    """zeromf: the gateway is the endpoint, so Max-Forwards 0 is processed normally;
    regaut01: credentials in a scheme it does not know get a Digest challenge (401)."""

    async def scenario(server, ports):
        ua = await RawUA("udp", ("127.0.0.1", ports["udp"])).open()
        ua.send_raw(
            ua.build("OPTIONS", f"sip:{DOMAIN}").replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
        )
        assert (await ua.final()).status == 200
        contact = ("Contact", f"<sip:1111@127.0.0.1:{ua.local[1]}>")
        assert (await ua.request("REGISTER", f"sip:{DOMAIN}", headers=[contact])).status == 200
        ua.send_raw(
            ua.build("REGISTER", f"sip:{DOMAIN}", headers=[contact]).replace(
                b"Max-Forwards: 70", b"Max-Forwards: 0"
            )
        )
        assert (await ua.final()).status == 401  # challenged as usual, not 483
        basic = ("Authorization", "Basic dXNlcjpwYXNz")
        ua.send_raw(ua.build("REGISTER", f"sip:{DOMAIN}", headers=[contact, basic]))
        challenge = await ua.final()
        assert challenge.status == 401
        assert "Digest" in challenge.headers.get("WWW-Authenticate")

    run_sip(ctl, scenario)


def test_retransmitted_register_gets_the_same_answer_once_processed(ctl):
    async def scenario(server, ports):
        ua = await RawUA("udp", ("127.0.0.1", ports["udp"])).open()
        data = ua.build("OPTIONS", f"sip:{DOMAIN}")
        ua.send_raw(data)
        first = await ua.final()
        ua.send_raw(data)  # same branch: absorbed by the transaction, last answer resent
        second = await ua.final()
        assert first.to_bytes() == second.to_bytes()

    run_sip(ctl, scenario)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_message_to_app_forks_and_reports_outcomes(ctl, transport):
    async def scenario(server: SipServer, ports):
        addr = ("127.0.0.1", ports[transport])
        phone = await RawUA(transport, addr).open()
        tablet = await RawUA(transport, addr).open()
        assert (await phone.register()).status == 200
        assert (await tablet.register()).status == 200
        account = server.directory.by_name("1111")

        send = asyncio.create_task(
            server.send_message(account, from_user="AsiaCell", to_user="+964111222333", text=ARABIC)
        )
        at_phone, at_tablet = await phone.incoming(), await tablet.incoming()
        for request in (at_phone, at_tablet):
            assert request.method == "MESSAGE"
            assert request.text_body() == ARABIC
            assert request.headers.get("Content-Type") == "text/plain;charset=UTF-8"
            assert request.from_header().uri.user == "AsiaCell"
            assert request.to_header().uri.user == "+964111222333"
        phone.answer(at_phone, 486)
        tablet.answer(at_tablet, 200)
        outcome = await send
        assert (outcome.kind, outcome.status) == ("delivered", 200)

        send = asyncio.create_task(
            server.send_message(account, from_user="AsiaCell", to_user="+964111222333", text="x")
        )
        phone.answer(await phone.incoming(), 404)
        tablet.answer(await tablet.incoming(), 480)
        outcome = await send
        assert (outcome.kind, outcome.status) == ("temporary", 480)

        send = asyncio.create_task(
            server.send_message(account, from_user="AsiaCell", to_user="+964111222333", text="x")
        )
        phone.answer(await phone.incoming(), 404)
        tablet.answer(await tablet.incoming(), 415)
        outcome = await send
        assert outcome.kind == "permanent"

        other = server.directory.by_name("2222")
        offline = await server.send_message(other, from_user="x", to_user="y", text="z")
        assert (offline.kind, offline.status) == ("temporary", 480)

    run_sip(ctl, scenario)


def test_message_to_app_that_never_answers_times_out(tmp_path, store_url):
    ctl = sip_provisioned(
        tmp_path,
        store_url,
        sip={
            "domain": DOMAIN,
            "listen": [{"transport": "udp", "host": "127.0.0.1", "port": 0}],
            "transaction_timeout": "2s",
        },
    )

    async def scenario(server, ports):
        silent = await RawUA("udp", ("127.0.0.1", ports["udp"])).open()
        assert (await silent.register()).status == 200
        account = server.directory.by_name("1111")
        send = asyncio.create_task(
            server.send_message(account, from_user="AsiaCell", to_user="1111", text="x")
        )
        first = await silent.incoming()
        again = await silent.incoming()  # retransmitted after T1 (UDP), same transaction
        assert again.headers.get("Via") == first.headers.get("Via")
        outcome = await send
        assert (outcome.kind, outcome.status) == ("temporary", 408)

    run_sip(ctl, scenario)


def test_offered_digest_algorithms_follow_the_config(tmp_path, store_url):
    listen = [{"transport": "udp", "host": "127.0.0.1", "port": 0}]
    sip = {"domain": DOMAIN, "listen": listen, "digest_algorithms": ["MD5"]}
    ctl = sip_provisioned(tmp_path, store_url, sip=sip)

    async def scenario(server, ports):
        addr = ("127.0.0.1", ports["udp"])
        ua = await RawUA("udp", addr, algorithm="MD5").open()
        first = await ua.request("OPTIONS", f"sip:{DOMAIN}", auth=False)
        assert first.status == 200
        challenge = await ua.request("REGISTER", f"sip:{DOMAIN}", auth=False)
        assert [
            v.split("algorithm=")[1][:3] for v in challenge.headers.get_all("WWW-Authenticate")
        ] == ["MD5"]
        assert (await ua.register()).status == 200

    run_sip(ctl, scenario)


def test_registration_expires_on_time_and_leaves_the_store(tmp_path, store_url):
    listen = [{"transport": "tcp", "host": "127.0.0.1", "port": 0}]
    ctl = sip_provisioned(
        tmp_path, store_url, sip={"domain": DOMAIN, "listen": listen, "min_expires": 1}
    )

    async def scenario(server, ports):
        expired = asyncio.Event()
        server.on_expired = lambda gone: expired.set()
        ua = await RawUA("tcp", ("127.0.0.1", ports["tcp"])).open()
        assert (await ua.register(expires=1)).status == 200
        ua.send_raw(b"\r\n\r\n")  # RFC 5626 keep-alive ping on the stream: a CRLF pong
        assert await asyncio.wait_for(ua.pongs.get(), 5) == b"\r\n"
        await expired.wait()  # committed removal (checked every second)
        assert len(server.bindings) == 0

    run_sip(ctl, scenario)
    assert ctl.json("registrations", "list", "--json") == []
