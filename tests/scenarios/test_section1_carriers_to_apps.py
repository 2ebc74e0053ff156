# Scenarios, section 1: SMS from carriers to app users (campaign, verification, offline app).
from __future__ import annotations

from gateway.store.schema import cdrs, messages
from tests.scenarios.carrier import Carrier
from tests.scenarios.conftest import JOHN_PW
from tests.stored import plain_rows

ARABIC_CODE = (
    "رمز التحقق الخاص بك في فايبر هو 482913. لا تشارك هذا الرمز مع أي شخص، "
    "ولن يطلبه منك فريق فايبر أبداً. إذا لم تطلب هذا الرمز فتجاهل هذه الرسالة. "
    "صالح لمدة عشر دقائق فقط."
)


def rows(gw, table=messages) -> list[dict]:
    return plain_rows(gw.config, table)  # texts decrypted (retention.encrypt_text)


def john(sip_ua, gw, **kw):
    return sip_ua(
        transport="udp",
        registrar=("127.0.0.1", gw.sip_ports["udp"]),
        domain=gw.domain,
        username="1111",
        password=JOHN_PW,
        **kw,
    )


def test_1_1_campaign_sms_reaches_the_app_and_the_carrier_gets_delivrd(make_env, sip_ua):
    gw = make_env().start()
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    with Carrier(gw.smpp_port) as tata:
        resp = tata.submit("Big sale at AsiaCell today", source_addr="AsiaCell")
        assert resp.status == 0
        got = app.next_message()
        assert got.body == "Big sale at AsiaCell today"
        assert "AsiaCell" in got.from_uri
        receipt = tata.next_delivered()
    assert receipt.esm_class == 0x04
    assert receipt.receipted_message_id == resp.message_id
    assert b"stat:DELIVRD" in receipt.short_message
    assert receipt.destination_addr == b"AsiaCell"
    gw.stop()
    [row] = rows(gw)
    assert (row["state"], row["route"], row["attempts"]) == ("delivered", "sip:1111", 1)
    [cdr] = rows(gw, cdrs)
    assert (cdr["message_id"], cdr["state"], cdr["route"]) == (row["id"], "delivered", "sip:1111")


def test_1_2_arabic_verification_code_overtakes_a_5000_message_campaign(make_env, sip_ua):
    """The campaign is accepted while John's app is offline, then delivered when it registers;
    a 3-part Arabic verification code sent meanwhile arrives whole while most of the campaign
    is still waiting, and the carrier gets a receipt for each part it sent."""
    gw = make_env().start()
    campaign = 5000
    with Carrier(gw.smpp_port) as tata:
        texts = [f"Campaign {i:04d}: visit our shop" for i in range(campaign)]
        resps = tata.submit_many(texts, source_addr="Shop", registered_delivery=0)
        assert all(r.status == 0 for r in resps)
        app = john(sip_ua, gw)
        assert app.wait_registered() == 200
        first = app.next_message(timeout=30)  # the campaign is being delivered
        assert first.body == "Campaign 0000: visit our shop"
        parts = tata.submit_long(ARABIC_CODE, source_addr="Viber", registered_delivery=1)
        assert len(parts) == 3 and all(p.status == 0 for p in parts)
        bodies = [first.body]
        while len(bodies) < campaign + 1:
            bodies.append(app.next_message(timeout=30).body)
        receipts = [tata.next_delivered() for _ in range(3)]  # one per part the carrier sent
    code_at = bodies.index(ARABIC_CODE)
    campaign_bodies = [b for b in bodies if b != ARABIC_CODE]
    # it overtook the campaign: thousands of its messages were still to come
    assert campaign - code_at > 1000, code_at
    assert campaign_bodies == texts  # every campaign message, in order
    assert sorted(r.receipted_message_id for r in receipts) == sorted(p.message_id for p in parts)
    assert all(b"stat:DELIVRD" in r.short_message for r in receipts)


def test_1_offline_app_gets_its_messages_in_order_once_it_registers(make_env, sip_ua):
    gw = make_env().start()
    with Carrier(gw.smpp_port) as tata:
        resps = [tata.submit(f"while you were away {i}") for i in range(5)]
        assert all(r.status == 0 for r in resps)
        kept = rows(gw)
        assert [r["state"] for r in kept] == ["retry-wait"] * 5
        assert kept[0]["reason"] == "waiting for account 1111 to register"
        app = john(sip_ua, gw)
        assert app.wait_registered() == 200
        got = [app.next_message().body for _ in range(5)]
        receipts = [tata.next_delivered() for _ in range(5)]
    assert got == [f"while you were away {i}" for i in range(5)]
    assert [r.receipted_message_id for r in receipts] == [r.message_id for r in resps]
    assert all(b"stat:DELIVRD" in r.short_message for r in receipts)


def test_1_offline_message_expires_with_an_expired_receipt(make_env, sip_ua):
    gw = make_env().start()
    with Carrier(gw.smpp_port) as tata:
        # validity 3 s (relative time, SMPP 3.4 §7.1.1.2)
        resp = tata.submit("only valid briefly", validity_period="000000000003000R")
        assert resp.status == 0
        receipt = tata.next_delivered(timeout=30)
        assert receipt.receipted_message_id == resp.message_id
        assert b"stat:EXPIRED" in receipt.short_message
        app = john(sip_ua, gw)
        assert app.wait_registered() == 200
        app.expect_no_message(timeout=2)
    [row] = rows(gw)
    assert row["state"] == "expired" and row["final_at"] is not None
