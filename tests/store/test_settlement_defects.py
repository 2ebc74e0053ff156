# Issue 17's settlement defects (SQLite and PostgreSQL): fees in final months, fee volumes,
# unrated lines by destination prefix, counts in words and CDR ids told apart from message ids.
from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pypdf
from sqlalchemy import insert

from gateway.store.schema import cdrs, messages
from tests.store.test_settlement import at, run, show, store, tariff  # noqa: F401 - fixture

FEE = ("fee", "add", "--carrier", "TATA", "--currency", "USD")


def finalised_october(ctl, store) -> None:  # noqa: F811 - the fixture, passed on
    """TATA with a tariff and a fee from September, October settled and final."""
    tariff(ctl, "964", "0.01", "2026-09-01")
    ctl.ok(*FEE, "--name", "platform", "--kind", "monthly", "--amount", "10", "--from", "2026-09")
    store.cdrs(5, at("2026-10-10 10:00"))
    run(ctl, "2026-10")
    ctl.ok("settlement", "finalise", "--month", "2026-10", "--carrier", "TATA")


def test_a_fee_pricing_a_final_month_is_refused_as_a_tariff_is(ctl, store, tmp_path):  # noqa: F811
    finalised_october(ctl, store)
    # the same rule and the same one-line error, naming the field, for fees and tariffs
    line = ctl.refused(*FEE, "--name", "late", "--kind", "monthly", "--amount", "5",
                       "--from", "2026-10", "--to", "2026-10", contains="from: ")  # fmt: skip
    assert line == (
        "error: from: TATA's settlement of 2026-10 is final: a fee change that prices its days "
        "would not reach its invoice (start it in 2026-11 or later)"
    )
    ctl.refused(*FEE, "--name", "open", "--kind", "monthly", "--amount", "5", "--from", "2026-08",
                contains="from: TATA's settlement of 2026-10 is final")  # fmt: skip
    line = ctl.refused("tariff", "add", "--carrier", "TATA", "--prefix", "44", "--price", "0.02",
                       "--currency", "USD", "--from", "2026-10-20", contains="from: ")  # fmt: skip
    assert line == (
        "error: from: TATA's settlement of 2026-10 is final: a tariff change that prices its "
        "days would not reach its invoice (start it on 2026-11-01 or later)"
    )
    # the same in a provisioning file, located there
    path = tmp_path / "fees.yaml"
    path.write_text(
        "fees:\n"
        "  - {carrier: TATA, name: platform, kind: monthly, currency: USD, from: 2026-09,\n"
        "     tiers: [[0, '10']]}\n"
        "  - {carrier: TATA, name: late, kind: monthly, currency: USD, from: 2026-10,\n"
        "     tiers: [[0, '5']]}\n"
    )
    ctl.refused("apply", "-f", str(path),
                contains="fees[1].from: TATA's settlement of 2026-10 is final")  # fmt: skip
    # changing or removing the fee that priced October: refused, naming what changed
    ctl.refused("fee", "set", "1", "--amount", "20",
                contains="tiers: TATA's settlement of 2026-10 is final")  # fmt: skip
    ctl.refused("fee", "set", "1", "--currency", "EUR", contains="currency: ")
    line = ctl.refused("fee", "set", "1", "--to", "2026-09",
                       contains="to: TATA's settlement of 2026-10 is final")  # fmt: skip
    assert line.endswith("(end it in 2026-10 or later)")
    ctl.refused("fee", "remove", "1", contains="fee 1 priced its days, so it stays on record")
    # what is allowed: ending it after October, a new fee from November
    ctl.ok("fee", "set", "1", "--to", "2026-10")
    ctl.ok(*FEE, "--name", "platform", "--kind", "monthly", "--amount", "20", "--from", "2026-11")
    assert [(f["name"], f["from"], f["to"]) for f in ctl.json("fee", "list")] == [
        ("platform", "2026-09-01", "2026-10-01"), ("platform", "2026-11-01", None),
    ]  # fmt: skip
    store.cdrs(1, at("2026-10-31 22:00"), final_after=timedelta(days=2))  # late for October
    assert run(ctl, "2026-11")["totals"] == {"USD": "20.01"}  # November's fee, once


def test_fee_lines_show_the_volume_they_were_computed_on(ctl, store, tmp_path):  # noqa: F811
    tariff(ctl, "964", "0.01", "2026-10-01")
    ctl.ok(*FEE, "--name", "platform", "--kind", "monthly", "--amount", "25", "--from", "2026-10")
    ctl.ok(*FEE, "--name", "band", "--kind", "volume-fee", "--tier", "0=0", "--tier", "100=40",
           "--from", "2026-10")  # fmt: skip
    ctl.ok(*FEE, "--name", "segments", "--kind", "graduated", "--per", "segment",
           "--tier", "0=0", "--tier", "150=0.001", "--from", "2026-10")  # fmt: skip
    store.cdrs(100, at("2026-10-05 10:00"), parts=2)
    out = ctl.ok("settlement", "run", "--month", "2026-10").stdout
    doc = show(ctl, "2026-10")
    fees = [(ln["description"], ln["unit"], ln["messages"], ln["parts"], ln["units"], ln["amount"])
            for ln in doc["lines"] if ln["kind"] == "fee"]  # fmt: skip
    assert fees == [
        ("band (volume 100 messages, band from 100)", "message", 100, None, None, "40.00"),
        ("platform", None, None, None, None, "25.00"),
        ("segments (segments 1-150)", "segment", None, 200, 150, "0.00"),
        ("segments (segments 151+)", "segment", None, 200, 50, "0.05"),
    ]
    # the CLI says what the fee was computed on; a fixed fee shows no counts; never "0 msgs"
    assert "band (volume 100 messages, band from 100): on 100 msgs = 40.00 USD" in out
    assert "platform: 25.00 USD" in out
    assert "segments (segments 151+): on 200 segments, 50 units x 0.001 = 0.05 USD" in out
    shown = ctl.ok("settlement", "show", "--month", "2026-10", "--carrier", "TATA").stdout
    for text in (out, shown):
        assert not re.search(r"(?<![\d,])0 (msgs|units)", text), text
    # CSV: empty cells where JSON has null, the columns unchanged
    path = tmp_path / "s.csv"
    ctl.ok("settlement", "export", "--month", "2026-10", "--carrier", "TATA", "--format", "csv",
           "--out", str(path))  # fmt: skip
    rows = [r for r in csv.DictReader(io.StringIO(path.read_text())) if r["kind"] == "fee"]
    assert [(r["messages"], r["parts"], r["units"]) for r in rows] == [
        ("100", "", ""), ("", "", ""), ("", "200", "150"), ("", "200", "50"),
    ]  # fmt: skip
    pdf = tmp_path / "s.pdf"
    ctl.ok("settlement", "export", "--month", "2026-10", "--carrier", "TATA", "--format", "pdf",
           "--out", str(pdf))  # fmt: skip
    assert pdf.read_bytes().startswith(b"%PDF")


def test_unrated_messages_are_split_by_destination_prefix(ctl, store):  # noqa: F811
    tariff(ctl, "964", "0.01", "2026-09-01")
    tariff(ctl, "96477", "0.02", "2026-09-01")  # the longest prefix: 5 digits
    store.cdrs(1, at("2026-10-02 10:00"), dest="9647712345678")
    store.cdrs(2, at("2026-10-02 10:00"), dest="33612345678")
    store.cdrs(3, at("2026-10-02 10:00"), dest="33698765432", parts=2)
    store.cdrs(4, at("2026-10-02 10:00"), dest="447700900123")
    outcome = run(ctl, "2026-10")
    assert outcome["unrated"] == 9
    doc = show(ctl, "2026-10")
    unrated = [(ln["prefix"], ln["messages"], ln["parts"], ln["description"])
               for ln in doc["lines"] if ln["kind"] == "unrated"]  # fmt: skip
    assert unrated == [
        ("33612", 2, 2, "no tariff covers these destinations starting 33612"),
        ("33698", 3, 6, "no tariff covers these destinations starting 33698"),
        ("44770", 4, 4, "no tariff covers these destinations starting 44770"),
    ]
    # a CDR of final October reaching it late, to an unpriced destination, keeps its prefix
    ctl.ok("settlement", "finalise", "--month", "2026-10", "--carrier", "TATA")
    store.cdrs(1, at("2026-10-31 23:00"), dest="33612000000", final_after=timedelta(days=2))
    run(ctl, "2026-11")
    [late] = show(ctl, "2026-11")["lines"]
    assert (late["kind"], late["prefix"], late["messages"]) == ("adjustment", "33612", 1)
    assert late["description"] == (
        "adjustment for 2026-10: no tariff covers these destinations starting 33612"
    )
    # many distinct unpriced destinations: cut to shorter prefixes, at most 50 lines
    store.cdrs(1, at("2026-12-02 10:00"), dest="9647712345678")
    for i in range(60):
        store.cdrs(1, at("2026-12-02 10:00"), dest=f"33{i:03d}1234567")
    run(ctl, "2026-12")
    lines = show(ctl, "2026-12")["lines"]
    assert [(ln["prefix"], ln["messages"]) for ln in lines if ln["kind"] == "unrated"] == [
        ("3300", 10), ("3301", 10), ("3302", 10), ("3303", 10), ("3304", 10), ("3305", 10),
    ]  # fmt: skip


def test_without_any_tariff_unrated_lines_still_name_the_country(ctl, store):  # noqa: F811
    store.cdrs(2, at("2026-10-02 10:00"), dest="33612345678")
    store.cdrs(1, at("2026-10-02 10:00"), dest="12125550100")
    store.cdrs(1, at("2026-10-02 10:00"), dest="9647712345678")
    run(ctl, "2026-10")
    lines = show(ctl, "2026-10")["lines"]
    assert [(ln["kind"], ln["prefix"], ln["messages"]) for ln in lines] == [
        ("unrated", "121", 1), ("unrated", "336", 2), ("unrated", "964", 1),
    ]  # fmt: skip


def test_counts_are_singular_for_one_and_cdr_ids_are_labelled(ctl, store, tmp_path):  # noqa: F811
    tariff(ctl, "964", "0.01", "2026-10-01")
    cid = store.carrier_id()
    # message 1 has CDR 3 (the ids share one allocator): outputs say which id is which
    with store.engine.begin() as conn:
        conn.execute(insert(messages).values(
            id=1, origin="carrier", carrier_id=cid, source="4477", source_ton=1,
            destination="9647701234567", data_coding=0, esm_class=0, parts=1,
            registered_delivery=0, priority=0, lane="bulk", state="delivered", attempts=1,
            accepted_at=at("2026-10-02 10:00"), final_at=at("2026-10-02 10:00:02"),
            validity_until=at("2026-10-05 00:00"),
        ))  # fmt: skip
        conn.execute(insert(cdrs).values(
            id=3, message_id=1, leg="in", carrier_id=cid, source="4477",
            destination="9647701234567", parts=1, data_coding=0, route="sip:1111",
            state="delivered", accepted_at=at("2026-10-02 10:00"),
            final_at=at("2026-10-02 10:00:02"),
        ))  # fmt: skip
    shown = ctl.ok("messages", "show", "1").stdout
    assert shown.startswith("message 1 ")
    assert "cdr 3 (a CDR id, not a message id; leg in): delivered, 1 part, route sip:1111" in shown
    assert "after 1 attempt" in shown and "attempt(s)" not in shown

    out = ctl.ok("settlement", "run", "--month", "2026-10").stdout
    assert "TATA 2026-10 (draft): 1 billable message, 1 part; total 0.01 USD" in out
    assert "964 at 0.01 USD per message: 1 msg, 1 unit x 0.01 = 0.01 USD" in out
    assert "  1 CDR, checksum " in out
    path = tmp_path / "cdrs.csv"
    exported = ctl.ok("cdrs", "export", "--carrier", "TATA", "--from", "2026-10-01",
                      "--to", "2026-10-31", "--out", str(path)).stdout  # fmt: skip
    assert f"wrote 1 CDR to {path}" in exported
    usage = ctl.ok("usage", "--carrier", "TATA", "--from", "2026-10-01", "--to", "2026-10-03")
    assert "total: 1 message\n" in usage.stdout
    pdf = tmp_path / "s.pdf"
    ctl.ok("settlement", "export", "--month", "2026-10", "--carrier", "TATA", "--format", "pdf",
           "--out", str(pdf))  # fmt: skip
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(pdf).pages)
    assert "1 billable message" in text and "1 CDR" in text
    assert "1 billable messages" not in text and "1 CDRs" not in text
    assert json.loads(ctl.ok("messages", "show", "1", "--json").stdout)["cdrs"][0]["id"] == 3
