# Long messages from a carrier (issue 16): their receipts, the ids the carrier got, their segments.
from __future__ import annotations

import csv
import io
import json
import queue
from datetime import UTC, datetime

import smpplib.smpp

from gateway.smpp.text import split
from gateway.store.schema import cdrs, fragments
from tests.interop.peers import add_tata
from tests.scenarios.carrier import TIMEOUT, Carrier
from tests.scenarios.test_section1_carriers_to_apps import john, rows

NOTICE = (
    "Your parcel 4711 left our depot and arrives tomorrow between 9:00 and 12:00. Reply STOP"
    " to end these notices. Track it any time on our site with the code on your receipt. "
) * 3  # 519 GSM characters: 4 parts of 153
TEXT_200 = NOTICE[:200]  # one SMS of 160 is not enough: 2 segments of 153


def kannel_parts(carrier: Carrier, text: str, ref: int, first_asks: int) -> list:
    """The parts of ``text`` as Kannel sends them: UDH concatenation, ``first_asks`` as the
    registered_delivery of the first part and 0x00 on the others; each part's resp."""
    pdus = split(text, 0, ref=ref)
    return [
        carrier.submit(
            part, esm_class=0x40, data_coding=0, registered_delivery=first_asks if n == 0 else 0
        )
        for n, part in enumerate(pdus)
    ]


def receipts_for(carrier: Carrier, count: int) -> dict[str, bytes]:
    got = [carrier.next_delivered() for _ in range(count)]
    return {r.receipted_message_id.decode(): r.short_message for r in got}


def query(carrier: Carrier, message_id: str):
    """query_sm of ``message_id`` on the carrier's bind; its resp."""
    answers: queue.Queue = queue.Queue()
    carrier.client.set_query_resp_handler(answers.put)
    carrier.client.send_pdu(
        smpplib.smpp.make_pdu(
            "query_sm",
            client=carrier.client,
            message_id=message_id,
            source_addr_ton=5,
            source_addr="AsiaCell",
        )
    )
    return answers.get(timeout=TIMEOUT)


def test_kannel_long_message_receipt_asked_by_the_first_part_only_and_its_part_ids(
    make_env, sip_ua
):
    """Issue 16: 0x11 on the first part, 0x00 on the others: the carrier gets a DELIVRD
    receipt for every part it sent; any part's id (hex, as this carrier gets ids) finds the
    message in query_sm, messages show, messages list --id, and cdrs export lists them all."""
    gw = make_env(carrier=False)
    add_tata(gw.ctl, "--max-binds", "4", "--receipt-id", "hex")
    gw.start()
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    with Carrier(gw.smpp_port) as tata:
        resps = kannel_parts(tata, NOTICE, ref=0x42, first_asks=0x11)
        assert len(resps) == 4 and all(r.status == 0 for r in resps)
        ids = [r.message_id.decode() for r in resps]
        assert app.next_message().body == NOTICE  # whole
        got = receipts_for(tata, 4)
        assert sorted(got) == sorted(ids), got  # one per part the carrier sent, by its id
        assert all(b"stat:DELIVRD" in text for text in got.values())
        answer = query(tata, ids[2])  # the id of part 3
        assert answer.status == 0 and answer.message_state == 2  # DELIVERED
        assert answer.message_id.decode() == ids[2]
    gw.stop()
    [row] = rows(gw)
    assert row["registered_delivery"] == 0x11 and row["parts"] == 4
    parts = rows(gw, fragments)
    assert [format(p["id"], "x") for p in parts] == ids
    assert {p["message_id"] for p in parts} == {row["id"]}
    # messages show / list --id answer with the whole message for any part's id
    for part_id in ids:
        shown = json.loads(gw.ctl.ok("messages", "show", part_id, "--hex", "--json").output)
        assert shown["message"]["id"] == row["id"]
        assert shown["part_ids_for_carrier"] == ids
        listed = json.loads(
            gw.ctl.ok("messages", "list", "--id", part_id, "--hex", "--json").output
        )
        assert [m["id"] for m in listed] == [row["id"]]
    text = gw.ctl.ok("messages", "show", str(parts[1]["id"])).output  # decimal works too
    assert f"message {row['id']} " in text and f"its ids for the parts: {', '.join(ids)}" in text
    # the CDR and the itemised export carry the ids the carrier received
    [cdr] = rows(gw, cdrs)
    assert cdr["part_ids"] == " ".join(str(p["id"]) for p in parts)
    day = datetime.now(UTC).date().isoformat()
    out = gw.ctl.ok(
        "cdrs", "export", "--carrier", "TATA", "--from", day, "--to", day, "--out", "-"
    ).output
    [line] = list(csv.DictReader(io.StringIO(out[out.index("message_id") :])))
    assert line["message_id"] == ids[0] and line["other_part_ids"] == " ".join(ids[1:])
    assert line["parts"] == "4"


def test_receipt_asked_by_the_first_part_only_across_a_restart(make_env, sip_ua):
    """Parts 1-2 (registered_delivery 1 on the first only) are stored, the gateway restarts
    (they go back into their group from the store), part 3 (0x00) completes the message:
    the carrier still gets its three receipts."""
    gw = make_env().start()
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    text = NOTICE[:400]  # 3 parts
    pdus = split(text, 0, ref=0x43)
    assert len(pdus) == 3
    with Carrier(gw.smpp_port) as tata:
        first = [
            tata.submit(p, esm_class=0x40, registered_delivery=1 if n == 0 else 0)
            for n, p in enumerate(pdus[:2])
        ]
        assert all(r.status == 0 for r in first)
    gw.stop()
    gw.start()
    gw.wait_for_log("recovered 2 stored parts")
    assert app.wait_registered() == 200
    with Carrier(gw.smpp_port) as tata:
        last = tata.submit(pdus[2], esm_class=0x40, registered_delivery=0)
        assert last.status == 0
        assert app.next_message().body == text
        got = receipts_for(tata, 3)
        ids = [r.message_id.decode() for r in (*first, last)]
        assert sorted(got) == sorted(ids) and all(b"stat:DELIVRD" in t for t in got.values())
        answer = query(tata, ids[1])  # a part's id, in decimal as this carrier gets ids
        assert answer.status == 0 and answer.message_state == 2  # DELIVERED
    gw.stop()
    [row] = rows(gw)
    assert row["registered_delivery"] == 1


def test_a_200_character_text_counts_2_segments_however_it_is_sent(make_env, sip_ua):
    """One short_message of 200 GSM characters (no UDH, SMPP 3.4 §5.2.21 allows 254 octets),
    the same in message_payload, and as 2 UDH parts: 2 segments each in the message and its
    CDR, and the app gets the whole text each time."""
    gw = make_env().start()
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    with Carrier(gw.smpp_port) as tata:
        assert tata.submit(TEXT_200.encode("ascii"), registered_delivery=0).status == 0
        assert app.next_message().body == TEXT_200
        payload = tata.submit(b"", registered_delivery=0, message_payload=TEXT_200.encode("ascii"))
        assert payload.status == 0
        assert app.next_message().body == TEXT_200
        resps = kannel_parts(tata, TEXT_200, ref=0x44, first_asks=0)
        assert len(resps) == 2 and all(r.status == 0 for r in resps)
        assert app.next_message().body == TEXT_200
    gw.stop()
    found = rows(gw)
    assert [(m["body_text"], m["parts"]) for m in found] == [(TEXT_200, 2)] * 3
    assert [c["parts"] for c in rows(gw, cdrs)] == [2, 2, 2]
