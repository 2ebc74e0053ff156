# Scenarios, section 4: billing the carrier (tariff, monthly settlement, finance exports).
from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pypdf

from tests.scenarios.carrier import Carrier
from tests.scenarios.test_section1_carriers_to_apps import john


def test_4_1_tata_pays_10_usd_for_1000_sms_and_csv_json_pdf_agree(make_env, sip_ua, tmp_path):
    """TATA sends 1000 SMS over a real bind; John's app receives them; at 0.01 USD per SMS
    the month's settlement shows 1000 messages and 10.00 USD, in CSV, JSON and PDF alike."""
    gw = make_env()
    month = datetime.now(UTC).strftime("%Y-%m")
    gw.ctl.ok(
        "tariff", "add", "--carrier", "TATA", "--prefix", "964", "--price", "0.01",
        "--currency", "USD", "--from", f"{month}-01",
    )  # fmt: skip
    gw.start()
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    count = 1000
    with Carrier(gw.smpp_port) as tata:
        texts = [f"Offer {i:04d} from TATA" for i in range(count)]
        resps = tata.submit_many(texts, source_addr="TATA", registered_delivery=1)
        assert all(r.status == 0 for r in resps)
        bodies = [app.next_message(timeout=30).body for _ in range(count)]
        # a receipt is committed with its message's CDR: all 1000 receipts, all 1000 CDRs
        receipts = [tata.next_delivered() for _ in range(count)]
    assert sorted(bodies) == sorted(texts)
    assert {r.receipted_message_id for r in receipts} == {r.message_id for r in resps}

    run = gw.ctl.ok("settlement", "run", "--month", month, "--carrier", "TATA").output
    assert f"TATA {month} (draft): 1,000 billable messages" in run
    assert "total 10.00 USD" in run

    paths = {fmt: tmp_path / f"tata.{fmt}" for fmt in ("csv", "json", "pdf")}
    for fmt, path in paths.items():
        gw.ctl.ok(
            "settlement", "export", "--month", month, "--carrier", "TATA",
            "--format", fmt, "--out", str(path),
        )  # fmt: skip

    doc = json.loads(paths["json"].read_text())
    assert (doc["carrier"], doc["period"], doc["messages"]) == ("TATA", month, 1000)
    assert doc["totals"] == [{"currency": "USD", "amount": "10.00"}]
    [line] = doc["lines"]
    assert (line["prefix"], line["messages"], line["unit_price"], line["amount"]) == (
        "964", 1000, "0.01", "10.00",
    )  # fmt: skip
    assert doc["cdr_count"] == 1000

    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    usage = [r for r in rows if r["kind"] == "usage"]
    total = [r for r in rows if r["kind"] == "total"]
    assert [(r["messages"], r["amount"], r["currency"]) for r in usage] == [
        ("1000", "10.00", "USD")
    ]
    assert [(r["currency"], r["amount"]) for r in total] == [("USD", "10.00")]
    assert {r["cdr_checksum"] for r in rows} == {doc["cdr_checksum"]}

    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(paths["pdf"]).pages)
    assert "Carrier: TATA" in text
    assert f"Period: {month}" in text
    assert "1,000 billable messages" in text
    assert "Total USD: 10.00" in text
    assert doc["cdr_checksum"] in text.replace("\n", "")

    # the per-day usage and the itemised CDRs say the same
    day = datetime.now(UTC).date().isoformat()
    usage_rows = gw.ctl.json("usage", "--carrier", "TATA", "--from", f"{month}-01", "--to", day)
    assert sum(r["messages"] for r in usage_rows) == 1000
    out = tmp_path / "cdrs.csv"
    gw.ctl.ok("cdrs", "export", "--carrier", "TATA", "--from", f"{month}-01", "--to", day,
              "--out", str(out))  # fmt: skip
    items = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {i["message_id"] for i in items} == {r.message_id.decode() for r in resps}
    assert {(i["state"], i["unit_price"], i["currency"]) for i in items} == {
        ("delivered", "0.01", "USD")
    }
