# The registrar's RFC 3261 §10.3 steps 1-2 and §19.1.4 contact matching on the wire (raw UA).
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.sip.server import SipServer
from tests.interop.inprocess import run_sip, sip_provisioned
from tests.interop.rawsip import DOMAIN, RawUA


@pytest.fixture
def ctl(tmp_path: Path, store_url: str):
    return sip_provisioned(tmp_path, store_url)


def test_register_for_another_domain_is_404_before_any_challenge(ctl):
    """§10.3 step 1: a Request-URI naming a domain the gateway does not serve is 404
    (§21.4.5), whatever the credentials; our domain or our address is served."""

    async def scenario(server: SipServer, ports: dict[str, int]) -> None:
        ua = await RawUA("udp", ("127.0.0.1", ports["udp"])).open()
        contact = ("Contact", f"<sip:1111@127.0.0.1:{ua.local[1]}>")
        for uri in ("sip:evil.example.com", "sip:192.0.2.1", "sip:example.net"):
            answer = await ua.request("REGISTER", uri, headers=[contact])
            assert answer.status == 404, uri
            assert answer.headers.get("WWW-Authenticate") is None  # no challenge was given
        assert len(server.bindings) == 0
        for uri in (f"sip:{DOMAIN.upper()}", f"sip:127.0.0.1:{ports['udp']}"):
            assert (await ua.request("REGISTER", uri, headers=[contact])).status == 200, uri
        ua.close()

    run_sip(ctl, scenario)


@pytest.mark.parametrize("method", ["REGISTER", "MESSAGE"])
def test_require_of_an_unsupported_option_is_420_with_unsupported(ctl, method):
    """§10.3 step 2 / §8.2.2.3: an option the gateway does not support in Require is 420 Bad
    Extension listing it in Unsupported; nothing is registered or stored."""

    async def scenario(server: SipServer, ports: dict[str, int]) -> None:
        ua = await RawUA("tcp", ("127.0.0.1", ports["tcp"])).open()
        require = [("Require", "foo, 100rel"), ("Require", "foo")]
        if method == "REGISTER":
            answer = await ua.register(headers=require)
        else:
            answer = await ua.message("0111222444", "hello", headers=[
                ("Content-Type", "text/plain"), *require,
            ])  # fmt: skip
        assert answer.status == 420
        assert answer.reason == "Bad Extension"
        assert answer.headers.get("Unsupported") == "foo, 100rel"
        assert len(server.bindings) == 0
        # the same request without Require goes through
        if method == "REGISTER":
            assert (await ua.register()).status == 200
        else:
            assert (await ua.message("0111222444", "hello")).status == 202
        ua.close()

    run_sip(ctl, scenario)


def test_case_and_parameter_variants_of_a_contact_get_one_message(ctl):
    """§19.1.4: a contact registered again in another spelling (case of the scheme, host and
    parameters, their order) is one binding, so one MESSAGE reaches the app once."""

    async def scenario(server: SipServer, ports: dict[str, int]) -> None:
        ua = await RawUA("udp", ("127.0.0.1", ports["udp"])).open()
        port = ua.local[1]
        spellings = [
            f"<sip:1111@127.0.0.1:{port};transport=udp;ob>",
            f"<SIP:1111@127.0.0.1:{port};ob;Transport=UDP>",
            f"<sip:1111@127.0.0.1:{port};TRANSPORT=udp;OB>",
        ]
        for contact in spellings:
            answer = await ua.register(contact=contact)
            assert answer.status == 200
            assert len(answer.headers.get_all("Contact")) == 1
        account = server.directory.by_name("1111")
        assert server.live_contacts(account.id, _now()) == 1
        send = asyncio.create_task(
            server.send_message(account, from_user="AsiaCell", to_user="+964111222333", text="x")
        )
        request = await ua.incoming()
        ua.answer(request, 200)
        assert (await send).delivered
        # Both forks would have been sent at once, before any answer: by the time a later
        # answer from the gateway arrives on the same socket, a second one would be queued.
        assert (await ua.register(contact=spellings[0])).status == 200
        assert ua.requests.empty()
        ua.close()

    run_sip(ctl, scenario)


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)
