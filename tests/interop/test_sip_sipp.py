# SIPp against the gateway's SIP side: digest REGISTER of many users over UDP and TCP, MESSAGE
# delivered to many registered users, and a flood of malformed requests.
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from tests.interop.inprocess import run_sip, sip_provisioned
from tests.interop.rawsip import DOMAIN, RawUA
from tests.interop.sipp import run_sipp, start_registered_uas, write_users_csv

USERS = 100
ARABIC = "رسالة إلى الكثيرين"


def users(count: int) -> list[tuple[str, str, str]]:
    return [(f"7{i:04d}", f"pw-Secret-{i:04d}", DOMAIN) for i in range(count)]


@pytest.fixture
def ctl(tmp_path: Path, store_url: str):
    listen = [{"transport": t, "host": "127.0.0.1", "port": 0} for t in ("udp", "tcp")]
    # sipp 3.6 answers only the first challenge and only with MD5; SIPp is a load generator
    # sending from one address, trusted like an SBC (exempt from the per-source flood guard)
    sip = {
        "domain": DOMAIN,
        "listen": listen,
        "digest_algorithms": ["MD5"],
        "trusted_networks": ["127.0.0.1/32"],
    }
    ctl = sip_provisioned(tmp_path, store_url, sip=sip)
    accounts = [
        {"id": user, "customer": "John Doe", "product": "Call & Chat", "password": password,
         "dids": [f"1113{i:05d}"]}
        for i, (user, password, _) in enumerate(users(USERS))
    ]  # fmt: skip
    plan = tmp_path / "users.yaml"
    plan.write_text(yaml.safe_dump({"accounts": accounts}), encoding="utf-8")
    ctl.ok("apply", "-f", str(plan))
    return ctl


@pytest.mark.parametrize("transport", ["u1", "t1", "tn"])
def test_sipp_registers_many_users_with_digest(ctl, tmp_path, transport):
    csv = write_users_csv(tmp_path / "users.csv", users(USERS))
    kind = "udp" if transport == "u1" else "tcp"

    async def scenario(server, ports):
        result = await asyncio.to_thread(
            run_sipp,
            "register_auth.xml",
            ("127.0.0.1", ports[kind]),
            transport=transport,
            calls=USERS,
            rate=200,
            inf=csv,
            auth_uri=DOMAIN,
            timeout=60,
            cwd=tmp_path,
        )
        assert result.ok and result.successful == USERS, result.report()
        assert len(server.bindings) == USERS

    run_sip(ctl, scenario, timeout=120)
    listed = ctl.json("registrations", "list", "--json")
    assert len(listed) == USERS
    assert {r["transport"] for r in listed} == {kind}


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_message_to_many_registered_sipp_users_answered_200(ctl, tmp_path, transport):
    csv = write_users_csv(tmp_path / "users.csv", users(USERS))
    kind = "udp" if transport == "u1" else "tcp"

    async def scenario(server, ports):
        target = ("127.0.0.1", ports[kind])
        uas = await asyncio.to_thread(
            start_registered_uas, target, csv, users=USERS, domain=DOMAIN,
            transport=transport, rate=200, cwd=tmp_path,
        )  # fmt: skip
        with uas:
            await asyncio.to_thread(uas.wait_registered, USERS)
            sends = [
                server.send_message(
                    server.directory.by_name(user), from_user="AsiaCell", to_user=user, text=ARABIC
                )
                for user, _, _ in users(USERS)
            ]
            outcomes = await asyncio.gather(*sends)
            assert [o.kind for o in outcomes] == ["delivered"] * USERS
            got = await asyncio.to_thread(uas.wait_received, USERS)
            assert {m.body for m in got} == {ARABIC}
            assert len({m.request_uri for m in got}) == USERS

    run_sip(ctl, scenario, timeout=120)


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_malformed_flood_gets_400s_and_the_server_keeps_serving(ctl, tmp_path, transport):
    kind = "udp" if transport == "u1" else "tcp"

    async def scenario(server, ports):
        target = ("127.0.0.1", ports[kind])
        result = await asyncio.to_thread(
            run_sipp, "malformed_flood.xml", target, transport=transport, calls=200, rate=400,
            timeout=60, cwd=tmp_path,
        )  # fmt: skip
        assert result.ok and result.successful == 200, result.report()
        assert server.stats["malformed"] >= 200 * 3
        # and an app is served normally afterwards
        user, password, _ = users(1)[0]
        addr = ("127.0.0.1", ports["udp"])
        ua = await RawUA("udp", addr, user=user, password=password, algorithm="MD5").open()
        assert (await ua.register()).status == 200
        ua.close()

    run_sip(ctl, scenario, timeout=120)
