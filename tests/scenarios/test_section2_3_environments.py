# Scenarios, sections 2 and 3: messages between environments, one entry point for a carrier.
# Two real gateway processes: env1 on SQLite, env4 on PostgreSQL, linked by SMPP both ways.
from __future__ import annotations

import pytest

from tests.scenarios.carrier import Carrier
from tests.scenarios.conftest import JOHN_PW
from tests.scenarios.test_section1_carriers_to_apps import rows

JANE_PW = "jane-Secret-2"
LINK_PW = "link-pw1"
JANE_DID = "22245123456"  # account 2222 in env4; env1 forwards 222% there
JOHN_DID = "964111222333"  # account 1111 in env1
TO_ENV4 = "Messages to vendor via SMPP"


def app(sip_ua, gw, username, password):
    ua = sip_ua(
        transport="udp",
        registrar=("127.0.0.1", gw.sip_ports["udp"]),
        domain=gw.domain,
        username=username,
        password=password,
    )
    assert ua.wait_registered() == 200
    return ua


def env_pair(make_env, pg_url, env4_extra=None, link_throughput=None, **extra):
    """env1 (SQLite: account 1111, carrier TATA, 222% -> env4) and env4 (PostgreSQL: account
    2222, 964% -> env1), each accepting SMPP from the other; ``extra`` goes to both configs,
    ``env4_extra`` to env4's only; ``link_throughput`` limits what env4 takes from env1."""
    env4 = make_env(
        "env4", database=pg_url, accounts=[("2222", "+" + JANE_DID, JANE_PW)], carrier=False,
        **extra, **(env4_extra or {}),
    )  # fmt: skip
    limit = ("--throughput", str(link_throughput)) if link_throughput else ()
    env4.ctl.ok(
        "carrier", "add", "env1", "--system-id", "GW-ENV1", "--password", LINK_PW,
        "--allow-ip", "127.0.0.1", *limit,
    )  # fmt: skip
    env4.start()
    env1 = make_env("env1", **extra)
    env1.ctl.ok(
        "connection", "add", TO_ENV4, "--host", "127.0.0.1", "--port", str(env4.smpp_port),
        "--system-id", "GW-ENV1", "--password", LINK_PW,
    )  # fmt: skip
    env1.ctl.ok("policy", "add", "--pattern", "222%", "--connection", TO_ENV4)
    env1.ctl.ok(
        "carrier", "add", "env4", "--system-id", "GW-ENV4", "--password", LINK_PW,
        "--allow-ip", "127.0.0.1",
    )  # fmt: skip
    env1.start()
    env4.ctl.ok(
        "connection", "add", "Messages to env1", "--host", "127.0.0.1", "--port",
        str(env1.smpp_port), "--system-id", "GW-ENV4", "--password", LINK_PW,
    )  # fmt: skip
    env4.ctl.ok("policy", "add", "--pattern", "964%", "--connection", "Messages to env1")
    env1.wait_for_log(f"connection {TO_ENV4} bound trx")
    env4.wait_for_log("connection Messages to env1 bound trx")  # picked up without a restart
    env4.wait_for_log(r"routing: \d+ DIDs, 1 policies \(version")  # and its policy in use
    return env1, env4


@pytest.fixture
def envs(make_env, pg_url):
    return env_pair(make_env, pg_url)


def test_2_1_app_to_app_across_environments_and_the_reply(envs, sip_ua):
    env1, env4 = envs
    john = app(sip_ua, env1, "1111", JOHN_PW)  # Zoiper in env1
    jane = app(sip_ua, env4, "2222", JANE_PW)  # CloudSoftPhone in env4
    status = john.send_message(f"sip:+{JANE_DID}@{env1.domain}", "Hi Jane, it is John")
    assert status == 202
    got = jane.next_message(timeout=30)
    assert got.body == "Hi Jane, it is John"
    assert f"+{JOHN_DID}" in got.from_uri  # she sees it came from 1111's number
    assert jane.send_message(f"sip:+{JOHN_DID}@{env4.domain}", "Hello John!") == 202
    reply = john.next_message(timeout=30)
    assert reply.body == "Hello John!" and f"+{JANE_DID}" in reply.from_uri
    # each side settles its forwarded message when the other side's receipt comes back
    env1.wait_for_log(r"message \d+ delivered \(the receipt of connection")
    env4.wait_for_log(r"message \d+ delivered \(the receipt of connection")
    env1.stop()
    env4.stop()
    sent, back = rows(env1)
    assert (sent["origin"], sent["state"], sent["route"]) == (
        "account",
        "delivered",
        f"smpp:{TO_ENV4}",
    )
    assert back["origin"] == "carrier" and back["state"] == "delivered" and back["path"] == "env4"
    there = rows(env4)
    assert [(r["origin"], r["state"]) for r in there] == [
        ("carrier", "delivered"),
        ("account", "delivered"),
    ]
    assert there[0]["path"] == "env1"


def test_3_1_tata_to_a_local_account_of_its_entry_env(envs, sip_ua):
    env1, env4 = envs
    john = app(sip_ua, env1, "1111", JOHN_PW)
    with Carrier(env1.smpp_port) as tata:
        resp = tata.submit("Hello 1111", source_addr="TATA")
        assert resp.status == 0
        assert john.next_message().body == "Hello 1111"
        receipt = tata.next_delivered()
    assert (
        receipt.receipted_message_id == resp.message_id and b"stat:DELIVRD" in receipt.short_message
    )
    assert rows(env4) == []  # nothing went to env4


def test_3_2_tata_to_another_env_and_the_receipt_comes_back_through_env1(envs, sip_ua):
    env1, env4 = envs
    jane = app(sip_ua, env4, "2222", JANE_PW)
    with Carrier(env1.smpp_port) as tata:
        resp = tata.submit("Hello 2222", source_addr="TATA", destination_addr=JANE_DID)
        assert resp.status == 0
        got = jane.next_message(timeout=30)
        assert got.body == "Hello 2222" and "TATA" in got.from_uri
        receipt = tata.next_delivered()
    assert receipt.receipted_message_id == resp.message_id
    assert b"stat:DELIVRD" in receipt.short_message
    env1.stop()
    [mine] = rows(env1)
    assert (mine["state"], mine["route"]) == ("delivered", f"smpp:{TO_ENV4}")
    assert mine["peer_message_id"]  # env4's id for it, to follow the trace there


def test_3_misconfigured_policies_end_in_a_clear_failure_not_ping_pong(envs):
    env1, env4 = envs
    # env4 also sends 222% to env1: a number neither owns would bounce between them
    env4.ctl.ok("policy", "add", "--pattern", "222%", "--connection", "Messages to env1")
    with Carrier(env1.smpp_port) as tata:
        env4.wait_for_log("routing: .* 2 policies")
        resp = tata.submit("Nobody has this number", destination_addr="22299999999")
        assert resp.status == 0
        receipt = tata.next_delivered()
    assert receipt.receipted_message_id == resp.message_id
    assert b"stat:UNDELIV" in receipt.short_message
    env1.stop()
    env4.stop()
    [mine] = rows(env1)  # the message came back once, was refused, and was not stored again
    [theirs] = rows(env4)
    assert mine["state"] == "failed" and theirs["state"] == "failed"
    assert "GW_LOOP_DETECTED" in theirs["reason"] and "env1" in theirs["reason"]
    env1.wait_for_log("routing loop: the message already passed through env1")
