# Two-way SMS (issue 16): an app's message to a mobile number reaches a carrier bound to us.
"""Real gateway processes (make_env), smpplib carriers bound as transceivers, the built-in
SIP test UA as the app. A policy ``--carrier`` sends 9647... as MO deliver_sm on the
carrier's bind: sender the app's DID (TON 1/NPI 1), long texts split with UDH (or SAR for
a carrier set so), Arabic in UCS-2; an unbound carrier is waited for (then delivered when it
binds), a validity that runs out fails the message visibly, and an unbound first carrier
fails over to the next policy's carrier. Each delivered message has a CDR of leg ``out``."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import smpplib.consts

from gateway.sip.testua import TestUA
from gateway.store.schema import cdrs
from tests.scenarios.carrier import Carrier
from tests.scenarios.conftest import JOHN_PW
from tests.scenarios.test_section1_carriers_to_apps import rows

ZAIN_PW = "zainpw12"
ASIA_PW = "asiapw12"
MOBILE = "9647701234567"
DID = "964111222333"
LONG = "Reply from the app: " + "see you at the station at nine, " * 6  # 212 GSM characters
ARABIC = "مرحبا، وصلت رسالتك وسأتصل بك بعد قليل"
TIMEOUT = 30.0


def add_carrier(gw: Any, name: str, password: str, *extra: str) -> None:
    gw.ctl.ok(
        "carrier", "add", name, "--system-id", name, "--password", password,
        "--allow-ip", "127.0.0.1", *extra,
    )  # fmt: skip


def app_send(gw: Any, *texts: str, to: str = MOBILE) -> list[int]:
    """The app (account 1111, DID +964111222333) sends each text as a SIP MESSAGE; the SIP
    statuses of the answers."""

    async def run() -> list[int]:
        ua = await TestUA(
            "udp", ("127.0.0.1", gw.sip_ports["udp"]), user="1111", password=JOHN_PW,
            domain=gw.domain,
        ).open()  # fmt: skip
        try:
            return [(await ua.message(f"+{to}", text)).status for text in texts]
        finally:
            ua.close()

    return asyncio.run(run())


def show(gw: Any, message_id: int) -> dict[str, Any]:
    return json.loads(gw.ctl.ok("messages", "show", str(message_id), "--json").stdout)


def listed(gw: Any) -> list[dict[str, Any]]:
    return json.loads(gw.ctl.ok("messages", "list", "--did", MOBILE, "--json").stdout)


def wait_for_state(gw: Any, message_id: int, state: str, contains: str = "") -> dict[str, Any]:
    """Read ``messages show`` until the message is in ``state`` (its reason holding
    ``contains``); the store is the event waited on, bounded by TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        shown = show(gw, message_id)
        message = shown["message"]
        if message["state"] == state and contains in (message["reason"] or ""):
            return shown
        assert time.monotonic() < deadline, f"still {message['state']}: {message['reason']}"
        time.sleep(0.2)


def deliver_sms(carrier: Carrier, count: int) -> list[Any]:
    return [carrier.next_delivered(timeout=TIMEOUT) for _ in range(count)]


def test_app_message_reaches_the_bound_carrier_as_mo_deliver_sm(make_env) -> None:
    gw = make_env()
    add_carrier(gw, "ZAIN", ZAIN_PW)
    gw.ctl.ok("policy", "add", "--pattern", "9647%", "--carrier", "ZAIN")
    gw.ctl.ok(
        "tariff", "add", "--carrier", "ZAIN", "--prefix", "964", "--price", "0.004",
        "--currency", "USD", "--direction", "out", "--per", "segment", "--from", "2020-01-01",
    )  # fmt: skip
    gw.start()
    with Carrier(gw.smpp_port, system_id="ZAIN", password=ZAIN_PW) as zain:
        assert app_send(gw, "See you at 9", LONG, ARABIC) == [202, 202, 202]
        short, *parts = deliver_sms(zain, 3)
        arabic = deliver_sms(zain, 1)[0]
    # a short GSM text: one deliver_sm, MO (esm_class 0), from the app's DID in E.164
    assert short.command == "deliver_sm"
    assert (short.source_addr_ton, short.source_addr_npi) == (1, 1)
    assert short.source_addr == DID.encode()
    assert (short.dest_addr_ton, short.dest_addr_npi) == (1, 1)
    assert short.destination_addr == MOBILE.encode()
    assert short.esm_class == 0
    assert short.data_coding == 0
    assert short.short_message == b"See you at 9"
    # a long one: split in GSM 7-bit parts with a UDH (IE 0x00), esm_class UDHI
    assert len(parts) == 2
    assert all(p.esm_class == smpplib.consts.SMPP_GSMFEAT_UDHI for p in parts)
    udhs = [p.short_message[:6] for p in parts]
    assert [u[:3] for u in udhs] == [b"\x05\x00\x03"] * 2
    assert udhs[0][3] == udhs[1][3] and [u[4:] for u in udhs] == [b"\x02\x01", b"\x02\x02"]
    assert b"".join(p.short_message[6:] for p in parts).decode("ascii") == LONG
    # Arabic: UCS-2
    assert arabic.data_coding == 8
    assert arabic.short_message.decode("utf-16-be") == ARABIC
    # each one delivered, seen in messages list/show; a CDR leg out for ZAIN per message
    gw.stop()
    found = {m["body_text"]: m for m in rows(gw) if m["destination"] == MOBILE}
    assert {m["state"] for m in found.values()} == {"delivered"}
    assert {m["route"] for m in found.values()} == {"carrier:ZAIN"}
    long_id = found[LONG]["id"]
    shown = show(gw, long_id)
    assert "carrier 'ZAIN' answered ESME_ROK to 2 deliver_sm" in json.dumps(shown["events"])
    legs = {(c["leg"], c["parts"]) for c in shown["cdrs"]}
    assert legs == {("in", 2), ("out", 2)}
    out = [c for c in rows(gw, cdrs) if c["leg"] == "out"]
    assert len(out) == 3 and {c["route"] for c in out} == {"carrier:ZAIN"}
    assert {c["account_id"] for c in out} == {found[LONG]["account_id"]}
    assert len(listed(gw)) == 3
    # the carrier's settlement shows what we pay it (4 segments x 0.004) apart, its own
    # invoice (it sent us nothing) empty
    month = found[LONG]["accepted_at"].strftime("%Y-%m")
    gw.ctl.ok("settlement", "run", "--month", month, "--carrier", "ZAIN")
    doc = json.loads(
        gw.ctl.ok("settlement", "show", "--month", month, "--carrier", "ZAIN", "--json").stdout
    )
    assert doc["totals"] == [] and doc["messages"] == 0
    cost = doc["outbound_cost"]
    assert (cost["messages"], cost["parts"]) == (3, 4)
    assert cost["totals"] == [{"amount": "0.02", "currency": "USD"}]


def test_unbound_carrier_waits_then_delivered_when_it_binds(make_env) -> None:
    gw = make_env()
    add_carrier(gw, "ZAIN", ZAIN_PW)
    gw.ctl.ok("policy", "add", "--pattern", "9647%", "--carrier", "ZAIN")
    gw.start()
    assert app_send(gw, "are you there?") == [202]  # stored, then waiting: not 404
    [message] = listed(gw)
    waiting = wait_for_state(gw, message["id"], "retry-wait", "waiting for carrier 'ZAIN'")
    assert waiting["message"]["route"] == "carrier:ZAIN"
    with Carrier(gw.smpp_port, system_id="ZAIN", password=ZAIN_PW) as zain:
        [mo] = deliver_sms(zain, 1)  # the bind releases it (no need to wait for a retry)
        assert mo.short_message == b"are you there?"
        wait_for_state(gw, message["id"], "delivered")


def test_validity_runs_out_and_the_app_sees_the_failure(make_env) -> None:
    gw = make_env(delivery={"retry": ["1s"], "validity": "3s"})
    add_carrier(gw, "ZAIN", ZAIN_PW)
    gw.ctl.ok("policy", "add", "--pattern", "9647%", "--carrier", "ZAIN")
    gw.start()
    assert app_send(gw, "nobody binds") == [202]
    [message] = listed(gw)
    shown = wait_for_state(gw, message["id"], "expired")
    assert "waiting for carrier 'ZAIN' to bind" in shown["message"]["reason"]
    text = gw.ctl.ok("messages", "show", str(message["id"])).output
    assert "expired" in text and "waiting for carrier 'ZAIN' to bind" in text
    assert {c["leg"] for c in shown["cdrs"]} == {"in"}  # no carrier took it: no cost


def test_failover_to_the_next_policys_carrier_with_sar(make_env) -> None:
    gw = make_env(delivery={"retry": ["1s", "2s"], "carrier_hold": "0s"})
    add_carrier(gw, "ZAIN", ZAIN_PW)
    add_carrier(gw, "ASIA", ASIA_PW, "--concat", "sar", "--data-coding", "latin1")
    gw.ctl.ok("policy", "add", "--pattern", "9647%", "--carrier", "ZAIN", "--priority", "1")
    gw.ctl.ok("policy", "add", "--pattern", "9647%", "--carrier", "ASIA", "--priority", "2")
    gw.start()
    with Carrier(gw.smpp_port, system_id="ASIA", password=ASIA_PW) as asia:
        assert app_send(gw, LONG) == [202]  # ZAIN never bound (hold 0s): ASIA takes it
        parts = deliver_sms(asia, 2)
    assert [p.esm_class for p in parts] == [0, 0]  # no UDH: SAR TLVs carry the parts
    assert [p.sar_segment_seqnum for p in parts] == [1, 2]
    assert {p.sar_total_segments for p in parts} == {2}
    assert parts[0].sar_msg_ref_num == parts[1].sar_msg_ref_num
    assert b"".join(p.short_message for p in parts).decode("latin-1") == LONG
    [message] = listed(gw)
    shown = wait_for_state(gw, message["id"], "delivered")
    assert shown["message"]["route"] == "carrier:ASIA"
    assert {(c["leg"], c["route"]) for c in shown["cdrs"]} == {
        ("in", "carrier:ASIA"),
        ("out", "carrier:ASIA"),
    }


def test_a_permanent_refusal_fails_over_to_the_next_carrier(make_env) -> None:
    gw = make_env()
    add_carrier(gw, "ZAIN", ZAIN_PW)
    add_carrier(gw, "ASIA", ASIA_PW)
    gw.ctl.ok("policy", "add", "--pattern", "9647%", "--carrier", "ZAIN", "--priority", "1")
    gw.ctl.ok("policy", "add", "--pattern", "9647%", "--carrier", "ASIA", "--priority", "2")
    gw.start()
    with (
        Carrier(gw.smpp_port, system_id="ZAIN", password=ZAIN_PW) as zain,
        Carrier(gw.smpp_port, system_id="ASIA", password=ASIA_PW) as asia,
    ):

        def refuse(pdu: Any) -> int:
            zain.delivered.put(pdu)
            return 0x45  # ESME_RSUBMITFAIL: permanent

        zain.client.set_message_received_handler(refuse)
        assert app_send(gw, "who takes it?") == [202]
        [first] = deliver_sms(zain, 1)  # ZAIN refuses it ...
        [second] = deliver_sms(asia, 1)  # ... so the next policy's carrier gets it
    assert first.short_message == second.short_message == b"who takes it?"
    [message] = listed(gw)
    shown = wait_for_state(gw, message["id"], "delivered")
    assert shown["message"]["route"] == "carrier:ASIA"
    asia_id = 3  # after TATA (make_env) and ZAIN
    assert {(c["leg"], c["carrier_id"]) for c in shown["cdrs"]} == {("in", None), ("out", asia_id)}
