# Issue 15, data at rest: a copied store (SQLite file, WAL) shows no SMS content.
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import smpplib.consts
import smpplib.gsm
from cryptography.fernet import Fernet

from gateway.store.schema import fragments
from tests.scenarios.carrier import Carrier
from tests.scenarios.conftest import JOHN_PW
from tests.scenarios.test_section1_carriers_to_apps import john
from tests.stored import plain_rows

SHORT = "Quokka-Zebra 7391 is your code"
LONG = "Marmalade-Lighthouse-Orbit " * 12  # 324 characters: three GSM parts (UDH)
JANE_PW = "jane-Secret-2"
ARABIC = (  # 92 characters: two UCS-2 parts
    "رمز الدخول السري الخاص بك هو ٧٣٩١ لا تشاركه مع أي شخص، ولن يطلبه منك أحد من فريق الدعم أبداً"
)
# what would betray each text in the file: UTF-8 (texts), the parts' octets (GSM as sent,
# UCS-2 for Arabic), and the first 20 characters a delivery receipt quotes
TRACES = {
    SHORT: [SHORT[:17].encode(), SHORT[:17].encode("utf-16-be")],
    LONG: [b"Marmalade-Lighthouse", "Marmalade-Light".encode("utf-16-be")],
    ARABIC: ["رمز الدخول".encode(), "رمز الدخول".encode("utf-16-be")],
}


def store_files(gw) -> list[Path]:
    return [p for p in gw.folder.iterdir() if p.name.startswith("gateway.db")]


def found_in_store(gw) -> list[str]:
    """The texts any trace of which is in the store's files (database, WAL, shared memory)."""
    data = b"".join(p.read_bytes() for p in store_files(gw))
    return [text for text, traces in TRACES.items() if any(t in data for t in traces)]


def send_all(gw, sip_ua) -> None:
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    with Carrier(gw.smpp_port) as tata:
        assert tata.submit(SHORT).status == 0
        assert all(r.status == 0 for r in tata.submit_long(LONG))
        assert all(r.status == 0 for r in tata.submit_long(ARABIC))
        got = {app.next_message(timeout=30).body for _ in range(3)}
        assert got == {SHORT, LONG, ARABIC}
        receipts = [tata.next_delivered() for _ in range(1 + 3 + 2)]  # one per part sent
        assert all(b"stat:DELIVRD" in r.short_message for r in receipts)


@pytest.mark.parametrize("encrypt", [True, False], ids=["encrypted", "plain"])
def test_a_copied_store_shows_no_sms_text(make_env, sip_ua, encrypt):
    """Short, long (concatenated) and Arabic texts delivered carrier -> app: with encryption
    (the default) no trace of them is in the SQLite file or its WAL, while the node runs
    and after it stopped; `messages show --text` still shows them. Without it (the control)
    the same scan finds every one, so the scan can see what it looks for."""
    gw = make_env(**({} if encrypt else {"retention": {"encrypt_text": False}})).start()
    send_all(gw, sip_ua)
    running = found_in_store(gw)
    assert any(p.name.endswith("-wal") for p in store_files(gw))
    gw.stop()
    stopped = found_in_store(gw)
    if not encrypt:
        assert running == stopped == [SHORT, LONG, ARABIC]
        return
    assert running == stopped == []
    stored = plain_rows(gw.config)
    by_text = {r["body_text"]: r for r in stored}
    assert set(by_text) == {SHORT, LONG, ARABIC}
    assert all(r["state"] == "delivered" for r in stored)
    parts = plain_rows(gw.config, fragments)
    assert len(parts) == 3 + 2 and all(p["message_id"] is not None for p in parts)
    for text, row in by_text.items():
        shown = gw.ctl.ok("messages", "show", str(row["id"]), "--text").output
        assert repr(text) in shown
        assert text not in gw.ctl.ok("messages", "show", str(row["id"])).output
        assert f"({len(text)} characters; --text shows them)" in (
            gw.ctl.ok("messages", "show", str(row["id"])).output
        )


def test_texts_under_a_lost_key_fail_clearly_and_the_node_goes_on(make_env, sip_ua):
    """The key file replaced (lost, restored from the wrong backup) while a message waits for
    an offline app, two parts of three wait for the third and a receipt waits for the
    carrier's bind: after the restart the message and the parts' message fail naming the
    reason (the carrier gets UNDELIV for each), the receipt is dropped and its message's
    trace says why, new messages are delivered, `messages show` says why."""
    gw = make_env(accounts=[("1111", "111222333", JOHN_PW), ("2222", "111222444", JANE_PW)])
    gw.start()
    parts, coding, esm = smpplib.gsm.make_parts(LONG, encoding=smpplib.consts.SMPP_ENCODING_DEFAULT)
    with Carrier(gw.smpp_port) as tata:
        kept = tata.submit(SHORT)
        assert kept.status == 0
        part_resps = [tata.submit(part, data_coding=coding, esm_class=esm) for part in parts[:2]]
        assert all(r.status == 0 for r in part_resps)
        assert tata.submit("for Jane", destination_addr="964111222444").status == 0
    jane = sip_ua(
        transport="udp", registrar=("127.0.0.1", gw.sip_ports["udp"]), domain=gw.domain,
        username="2222", password=JANE_PW,
    )  # fmt: skip
    assert jane.wait_registered() == 200
    assert jane.next_message(timeout=30).body == "for Jane"  # its receipt waits: no bind
    gw.stop()
    by_text = {r["body_text"]: r for r in plain_rows(gw.config)}
    assert by_text[SHORT]["state"] == "retry-wait"
    key_file = gw.folder / "gateway.key"
    key_file.write_bytes(Fernet.generate_key() + b"\n")
    os.chmod(key_file, 0o600)
    gw.start()
    with Carrier(gw.smpp_port) as tata:
        app = john(sip_ua, gw)
        assert app.wait_registered() == 200
        receipts = {r.receipted_message_id: r.short_message for r in
                    (tata.next_delivered() for _ in range(3))}  # fmt: skip
        assert set(receipts) == {kept.message_id, *(r.message_id for r in part_resps)}
        assert all(b"stat:UNDELIV" in text for text in receipts.values())
        new = tata.submit("after the new key")
        assert new.status == 0
        assert app.next_message(timeout=30).body == "after the new key"
        after = tata.next_delivered()  # the dropped receipt for Jane's message never comes
        assert after.receipted_message_id == new.message_id
    gw.wait_for_log(r"stored text cannot be decrypted")
    gw.wait_for_log(r"outbox row \d+ for carrier \d+: was encrypted with another key file")
    gw.stop()
    shown = gw.ctl.ok("messages", "show", str(by_text[SHORT]["id"]), "--text").output
    assert "state        failed" in shown
    assert "was encrypted with another key file" in shown
    assert "(encrypted; cannot be decrypted:" in shown
    jane_shown = gw.ctl.ok("messages", "show", str(by_text["for Jane"]["id"])).output
    assert "PDU dropped: it cannot be decrypted" in jane_shown
    parts_reason = "parts 1, 2 of 3 cannot be decrypted (another key file, or damaged)"
    [whole] = [m for m in json.loads(gw.ctl.ok("messages", "list", "--json").output)
               if m["id"] not in {r["id"] for r in by_text.values()}
               and m["state"] == "failed"]  # fmt: skip
    assert f"reason       {parts_reason}" in gw.ctl.ok("messages", "show", str(whole["id"])).output


def test_sealed_parts_parked_messages_and_receipts_are_read_back_after_restarts(make_env, sip_ua):
    """What waits in the store, sealed, across restarts: two parts of three (recovered at
    start, joined by the third), a message parked for an offline app (read back when it
    registers) and the receipt waiting for the carrier's next bind (the outbox)."""
    gw = make_env().start()
    parts, coding, esm = smpplib.gsm.make_parts(LONG, encoding=smpplib.consts.SMPP_ENCODING_DEFAULT)
    assert len(parts) == 3
    with Carrier(gw.smpp_port) as tata:
        for part in parts[:2]:
            assert tata.submit(part, data_coding=coding, esm_class=esm).status == 0
        parked = tata.submit(SHORT)
        assert parked.status == 0
    assert found_in_store(gw) == []
    gw.stop()
    gw.start()  # the two parts go back into their group
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    assert app.next_message(timeout=30).body == SHORT  # parked, read back and opened
    gw.stop()  # its receipt waits in the outbox: the carrier is not bound
    assert found_in_store(gw) == []
    gw.start()
    assert app.wait_registered() == 200
    with Carrier(gw.smpp_port) as tata:
        receipt = tata.next_delivered()
        assert receipt.receipted_message_id == parked.message_id
        assert b"stat:DELIVRD" in receipt.short_message
        assert b"text:Quokka-Zebra 7391" in receipt.short_message  # quoted, from the outbox
        assert tata.submit(parts[2], data_coding=coding, esm_class=esm).status == 0
        assert app.next_message(timeout=30).body == LONG
    gw.stop()
    assert found_in_store(gw) == []
    assert {r["body_text"]: r["state"] for r in plain_rows(gw.config)} == {
        SHORT: "delivered",
        LONG: "delivered",
    }
