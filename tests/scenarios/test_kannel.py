# Kannel 1.4.5 as the carrier: long and short texts reach an app with DLRs; MO reaches Kannel.
"""Kannel (bearerbox + smsbox, tests/interop/kannel.py) binds to a gateway process as carrier
TATA in transceiver mode. A text posted to smsbox's sendsms is submitted by bearerbox (long
ones split by Kannel itself into UDH-concatenated parts, ``registered_delivery`` 0x11 on the
first part only), delivered by the gateway to John's pjsua2 app, and the gateway's receipt
comes back to Kannel, which reports it at its ``dlr-url`` (dlr type 1, delivered). The other
way, a policy sends 9647... to carrier TATA: the app's SIP MESSAGE to a mobile number goes as
deliver_sm on Kannel's bind and smsbox hands it to its sms-service get-url."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.interop.gateway_process import GatewayProcess
from tests.interop.kannel import DLR_DELIVERED, DLR_SMSC_ACK, Kannel, mo_text
from tests.interop.peers import TATA_PW
from tests.scenarios.conftest import JOHN_PW

JOHN_DID = "+964111222333"
LONG_GSM = (
    "Dear customer, your monthly statement is ready. Your balance is 12,500 IQD and your "
    "next bill is due on the 15th. To avoid interruption of service please top up before "
    "that date at any of our shops or through the app. Reply STOP to opt out of these "
    "reminders. Thank you for choosing our network - the customer care team."
)
LONG_ARABIC = (
    "عزيزي العميل، كشف حسابك الشهري جاهز الآن. رصيدك الحالي هو اثنا عشر ألفاً وخمسمائة "
    "دينار، وموعد الفاتورة القادمة هو الخامس عشر من الشهر. لتجنب انقطاع الخدمة يرجى "
    "تعبئة الرصيد قبل ذلك التاريخ."
)
LONG_MO = (
    "Hi, I got your message about the statement. I will top up tomorrow morning at the shop "
    "near the office, and if anything is still unclear I will call the customer care line. "
    "Thanks for the reminder and have a nice evening!"
)


@pytest.fixture
def kannel(tmp_path: Path) -> Iterator[Callable[[GatewayProcess], Kannel]]:
    """Factory: Kannel bound as TATA to a running gateway; stopped after the test, with both
    sides' logs printed (pytest shows them when the test failed)."""
    made: list[tuple[Kannel, GatewayProcess]] = []

    def make(gw: GatewayProcess) -> Kannel:
        folder = tmp_path / "kannel"
        folder.mkdir()
        box = Kannel(folder, gw.smpp_port, "TATA", TATA_PW)
        made.append((box, gw))
        return box.start()

    yield make
    for box, gw in made:
        box.stop()
        print(box.summary())
        print("--- gateway ---\n" + gw.log()[-6000:])


def john(sip_ua, gw):
    app = sip_ua(
        transport="udp",
        registrar=("127.0.0.1", gw.sip_ports["udp"]),
        domain=gw.domain,
        username="1111",
        password=JOHN_PW,
    )
    assert app.wait_registered() == 200
    return app


def through_kannel(make_env, sip_ua, kannel, text: str, coding: int):
    """Send ``text`` from Kannel to John's app; the app gets it whole, once, and Kannel's
    dlr-url gets a DELIVRD receipt (dlr type 1). Returns Kannel, the message's tag at the
    sink, and the app."""
    gw = make_env().start()
    app = john(sip_ua, gw)
    box = kannel(gw)
    tag = box.send(JOHN_DID, text, coding=coding, sender="AsiaCell")
    got = app.next_message(timeout=30)
    assert got.body == text
    assert "AsiaCell" in got.from_uri
    delivered = box.wait_dlr(tag, DLR_DELIVERED, timeout=30)
    assert "stat:DELIVRD" in delivered.params["reply"], delivered
    app.expect_no_message(timeout=1)  # once: no part, and no second copy, came on its own
    return box, tag, app


def sent_as(box: Kannel) -> list[tuple[str, str, str]]:
    """(esm_class, registered_delivery, data_coding) of each submit_sm Kannel sent: for a long
    text, UDHI (0x43 with Kannel's store-and-forward mode) on every part and a receipt
    requested (0x11: final outcome and SME ack) on the first part only."""
    return [
        (p["esm_class"], p["registered_delivery"], p["data_coding"]) for p in box.pdus("submit_sm")
    ]


def test_kannel_long_gsm_text_reaches_the_app_whole_and_kannel_gets_its_dlr(
    make_env, sip_ua, kannel
):
    assert 153 * 2 < len(LONG_GSM) <= 153 * 3  # Kannel splits it: 3 parts of 153 at most
    box, tag, _ = through_kannel(make_env, sip_ua, kannel, LONG_GSM, coding=0)
    assert sent_as(box) == [("67", "17", "0"), ("67", "0", "0"), ("67", "0", "0")]
    assert [d.params["type"] for d in box.dlrs(tag)].count(str(DLR_DELIVERED)) == 1


def test_kannel_long_arabic_text_reaches_the_app_whole_and_kannel_gets_its_dlr(
    make_env, sip_ua, kannel
):
    assert 67 * 2 < len(LONG_ARABIC) <= 67 * 3  # UCS-2: 3 parts of 67 characters at most
    box, tag, _ = through_kannel(make_env, sip_ua, kannel, LONG_ARABIC, coding=2)
    assert sent_as(box) == [("67", "17", "8"), ("67", "0", "8"), ("67", "0", "8")]
    assert [d.params["type"] for d in box.dlrs(tag)].count(str(DLR_DELIVERED)) == 1


def test_kannel_short_text_with_dlr(make_env, sip_ua, kannel):
    box, tag, john_app = through_kannel(make_env, sip_ua, kannel, "Your code is 482913", 0)
    assert sent_as(box) == [("3", "17", "0")]  # one submit_sm, no UDH
    # the submit_sm_resp (8, accepted by the SMSC) and the receipt (1, delivered), once each
    ack = box.wait_dlr(tag, DLR_SMSC_ACK)
    delivered = box.wait_dlr(tag, DLR_DELIVERED)
    assert sorted(int(d.params["type"]) for d in box.dlrs(tag)) == [DLR_DELIVERED, DLR_SMSC_ACK]
    # the receipt names the id the gateway gave in its submit_sm_resp
    assert ack.params["foreign_id"] == delivered.params["foreign_id"] != ""
    # a number without "+" goes as TON 2: the gateway reads it as a national number
    box.send("0111222333", "national form", dlr_mask=0)
    assert john_app.next_message().body == "national form"


@pytest.mark.parametrize("concat", ["udh", "sar"])
def test_kannel_gets_an_apps_message_to_a_mobile_number_as_mo(make_env, sip_ua, kannel, concat):
    """Two-way SMS: a policy sends 9647... to carrier TATA; John's app writes to a mobile
    number, the gateway delivers it as deliver_sm on Kannel's transceiver bind, and smsbox
    hands it to its sms-service get-url with John's DID (E.164) as the sender."""
    gw = make_env()
    gw.ctl.ok("policy", "add", "--pattern", "9647%", "--carrier", "TATA")
    gw.ctl.ok("carrier", "set", "TATA", "--concat", concat)
    gw.start()
    app = john(sip_ua, gw)
    box = kannel(gw)
    for number, text in [
        ("+9647701234567", "Thanks, see you at 5"),
        ("+9647801234567", "شكراً، أراك في الخامسة"),  # UCS-2 on the wire
        ("+9647901234567", LONG_MO),  # 2 parts, joined again by bearerbox
    ]:
        assert app.send_message(f"sip:{number}@{gw.domain}", text) == 202
        mo = box.wait_mo(lambda r, n=number: r.params["to"].lstrip("+") == n[1:])
        assert mo.params["from"] == JOHN_DID, mo  # TON 1 NPI 1: Kannel shows it with a +
        assert mo_text(mo) == text, mo
        assert mo.params["smsc"] == "gateway"
    assert len(box.mos()) == 3  # once each
    long_parts = [p for p in box.pdus("deliver_sm") if p["destination_addr"] == "9647901234567"]
    if concat == "udh":
        assert [p["esm_class"] for p in long_parts] == ["64", "64"]  # UDHI
    else:  # SAR TLVs, no UDH
        assert [(p["esm_class"], p["sar_segment_seqnum"]) for p in long_parts] == [
            ("0", "1"),
            ("0", "2"),
        ]
