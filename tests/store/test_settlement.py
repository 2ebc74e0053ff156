# Settlement against the store (SQLite and PostgreSQL): runs, finalising, late CDRs, exports.
from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import DatabaseError

from gateway.store.engine import make_engine
from gateway.store.schema import CDR_IMMUTABLE_MESSAGE, carriers, cdrs, messages
from tests.interop.peers import add_tata

ids = count(1)


def at(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=UTC)


class Store:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    def carrier_id(self, name: str = "TATA") -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(carriers.c.id).where(carriers.c.name == name)).scalar_one()

    def cdrs(self, n: int, accepted: datetime, *, dest: str = "9647701234567", parts: int = 1,
             state: str = "delivered", carrier: str = "TATA", step: timedelta = timedelta(0),
             final_after: timedelta = timedelta(seconds=2)) -> None:  # fmt: skip
        cid = self.carrier_id(carrier)
        rows = []
        for i in range(n):
            mid = next(ids)
            when = accepted + step * i
            rows.append(dict(id=mid, message_id=mid, leg="in", carrier_id=cid, source="4477",
                             destination=dest, parts=parts, data_coding=0, route="sip:1111",
                             state=state, accepted_at=when, final_at=when + final_after))  # fmt: skip
        with self.engine.begin() as conn:
            conn.execute(insert(cdrs), rows)


@pytest.fixture
def store(ctl, store_url):
    add_tata(ctl)
    s = Store(store_url)
    yield s
    s.engine.dispose()


def run(ctl, month: str, *extra: str) -> dict:
    [outcome] = json.loads(ctl.ok("settlement", "run", "--month", month, "--json", *extra).stdout)
    return outcome


def show(ctl, month: str, carrier: str = "TATA") -> dict:
    return json.loads(ctl.ok("settlement", "show", "--month", month, "--carrier", carrier,
                             "--json").stdout)  # fmt: skip


def tariff(ctl, prefix: str, price: str, start: str, *extra: str) -> None:
    ctl.ok("tariff", "add", "--carrier", "TATA", "--prefix", prefix, "--price", price,
           "--currency", extra[0] if extra else "USD", "--from", start, *extra[1:])  # fmt: skip


def test_mid_month_price_change_applies_by_acceptance_time(ctl, store):
    tariff(ctl, "964", "0.01", "2026-10-01")
    tariff(ctl, "964", "0.02", "2026-10-15")  # ends the first one on the 14th
    store.cdrs(100, at("2026-10-14 23:59:59.999999"))
    store.cdrs(50, at("2026-10-15 00:00:00"))
    outcome = run(ctl, "2026-10", "--carrier", "TATA")
    assert outcome["totals"] == {"USD": "2.00"}
    doc = show(ctl, "2026-10")
    assert [(ln["unit_price"], ln["messages"], ln["amount"]) for ln in doc["lines"]] == [
        ("0.01", 100, "1.00"), ("0.02", 50, "1.00"),
    ]  # fmt: skip


def test_month_boundaries_follow_the_carriers_time_zone(ctl, store):
    ctl.ok("carrier", "set", "TATA", "--timezone", "Asia/Kolkata")
    tariff(ctl, "964", "0.01", "2026-09-01")
    store.cdrs(1, at("2026-10-31 18:29:59"))  # 23:59:59 IST on 31 Oct: October
    store.cdrs(2, at("2026-10-31 18:30:00"))  # 00:00 IST on 1 Nov: November
    store.cdrs(4, at("2026-11-30 18:29:59"))  # still November in India
    store.cdrs(8, at("2026-11-30 18:30:00"))  # December in India
    assert run(ctl, "2026-10")["messages"] == 1
    assert run(ctl, "2026-11")["messages"] == 6
    assert run(ctl, "2026-12")["messages"] == 8
    usage = ctl.json("usage", "--carrier", "TATA", "--from", "2026-11-30", "--to", "2026-12-01")
    assert [(r["day"], r["messages"]) for r in usage] == [("2026-11-30", 4), ("2026-12-01", 8)]
    bad = ctl.refused("carrier", "set", "TATA", "--timezone", "Mars/Olympus", contains="timezone")
    assert "IANA" in bad


def test_a_carrier_with_two_currencies_gets_a_total_per_currency(ctl, store):
    tariff(ctl, "964", "0.01", "2026-10-01", "USD")
    tariff(ctl, "44", "0.0125", "2026-10-01", "EUR", "--per", "segment")
    store.cdrs(10, at("2026-10-05 10:00"))
    store.cdrs(3, at("2026-10-05 10:00"), dest="447700900123", parts=3)
    store.cdrs(2, at("2026-10-05 10:00"), dest="33612345678")  # no tariff
    outcome = run(ctl, "2026-10")
    assert outcome["totals"] == {"EUR": "0.11", "USD": "0.10"}  # 9 segments x 0.0125 = 0.1125
    assert outcome["unrated"] == 2
    doc = show(ctl, "2026-10")
    assert [ln["kind"] for ln in doc["lines"]] == ["usage", "usage", "unrated"]
    assert doc["totals"] == [{"amount": "0.11", "currency": "EUR"},
                             {"amount": "0.10", "currency": "USD"}]  # fmt: skip


def test_delivered_only_billing_and_volume_fees(ctl, store):
    ctl.ok("carrier", "set", "TATA", "--billable", "delivered")
    tariff(ctl, "964", "0.01", "2026-10-01")
    ctl.ok("fee", "add", "--carrier", "TATA", "--name", "platform", "--kind", "monthly",
           "--amount", "25", "--currency", "USD", "--from", "2026-10")  # fmt: skip
    ctl.ok("fee", "add", "--carrier", "TATA", "--name", "volume band", "--kind", "volume-fee",
           "--tier", "0=0", "--tier", "100=40", "--currency", "USD", "--from", "2026-10",
           "--to", "2026-10")  # fmt: skip
    store.cdrs(100, at("2026-10-05 10:00"))
    store.cdrs(7, at("2026-10-05 10:00"), state="failed")
    outcome = run(ctl, "2026-10")
    assert outcome["messages"] == 100
    assert outcome["totals"] == {"USD": "66.00"}  # 1.00 + 25 + 40 (band from 100 reached)
    store.cdrs(99, at("2026-11-05 10:00"))
    assert run(ctl, "2026-11")["totals"] == {"USD": "25.99"}  # band fee ended in October
    ctl.refused("fee", "add", "--carrier", "TATA", "--name", "x", "--kind", "graduated",
                "--tier", "5=0.1", "--currency", "USD", contains="first tier starts from 0")  # fmt: skip


def test_late_cdrs_after_finalising_go_to_the_next_months_adjustment(ctl, store):
    tariff(ctl, "964", "0.01", "2026-09-01")
    store.cdrs(10, at("2026-10-30 10:00"))
    first = run(ctl, "2026-10")
    final = json.loads(ctl.ok("settlement", "finalise", "--month", "2026-10", "--carrier",
                              "TATA", "--json").stdout)[0]  # fmt: skip
    assert (final["state"], final["totals"]) == ("final", {"USD": "0.10"})
    assert final["cdr_checksum"] == first["cdr_checksum"]
    frozen = ctl.ok("settlement", "export", "--month", "2026-10", "--carrier", "TATA",
                    "--format", "json", "--out", "-").stdout  # fmt: skip

    # a message accepted on 31 Oct ends on 2 Nov: its CDR reaches the frozen month late
    store.cdrs(3, at("2026-10-31 23:00"), final_after=timedelta(days=2))
    store.cdrs(20, at("2026-11-10 10:00"))
    ctl.refused("settlement", "run", "--month", "2026-10", "--carrier", "TATA",
                contains="is final")  # fmt: skip
    assert ctl.ok("settlement", "export", "--month", "2026-10", "--carrier", "TATA",
                  "--format", "json", "--out", "-").stdout == frozen  # fmt: skip
    nov = run(ctl, "2026-11")
    assert nov["totals"] == {"USD": "0.23"}
    doc = show(ctl, "2026-11")
    assert [(ln["kind"], ln["source_period"], ln["messages"]) for ln in doc["lines"]] == [
        ("usage", "2026-11", 20), ("adjustment", "2026-10", 3),
    ]  # fmt: skip
    assert doc["lines"][1]["description"].startswith("adjustment for 2026-10: 964 at 0.01")
    # rebuilding November does not bill them twice, and finalising keeps them
    assert run(ctl, "2026-11")["totals"] == {"USD": "0.23"}
    ctl.ok("settlement", "finalise", "--month", "2026-11", "--carrier", "TATA")
    # one more late October CDR, after November is final too: December takes it, once
    store.cdrs(1, at("2026-10-31 23:30"), final_after=timedelta(days=32))
    dec = run(ctl, "2026-12")
    assert dec["totals"] == {"USD": "0.01"}
    assert [(ln["kind"], ln["source_period"], ln["messages"])
            for ln in show(ctl, "2026-12")["lines"]] == [("adjustment", "2026-10", 1)]  # fmt: skip


def test_months_are_finalised_in_order_and_only_once_over(ctl, store):
    tariff(ctl, "964", "0.01", "2026-08-01")
    store.cdrs(1, at("2026-09-10 10:00"))
    run(ctl, "2026-09")
    run(ctl, "2026-10")
    ctl.refused("settlement", "finalise", "--month", "2026-10", "--carrier", "TATA",
                contains="finalise TATA's 2026-09 first")  # fmt: skip
    ctl.ok("settlement", "finalise", "--month", "2026-09", "--carrier", "TATA")
    ctl.refused("settlement", "finalise", "--month", "2026-11", "--carrier", "TATA",
                contains="finalise TATA's 2026-10 first")  # fmt: skip
    now = datetime.now(UTC)
    this_month = now.strftime("%Y-%m")
    ctl.refused("settlement", "finalise", "--month", this_month, "--carrier", "TATA",
                contains="first")  # fmt: skip
    ctl.ok("settlement", "finalise", "--month", "2026-10", "--carrier", "TATA")
    if this_month == "2026-11":
        ctl.refused("settlement", "finalise", "--month", "2026-11", "--carrier", "TATA",
                    contains="not over")  # fmt: skip
    future = f"{now.year + 1}-{now.month:02d}"
    run(ctl, future)
    ctl.refused("settlement", "finalise", "--month", future, "--carrier", "TATA",
                contains="has no settlement")  # fmt: skip
    # run for every carrier: a final month is skipped with its reason, not an error
    out = ctl.ok("settlement", "run", "--month", "2026-09").stdout
    assert "TATA 2026-09: skipped" in out and "is final" in out


def test_finalising_the_current_month_is_refused(ctl, store):
    month = datetime.now(UTC).strftime("%Y-%m")
    ctl.refused("settlement", "finalise", "--month", month, "--carrier", "TATA",
                contains="not over")  # fmt: skip


def test_rerunning_gives_byte_identical_csv_and_json(ctl, store, tmp_path):
    tariff(ctl, "964", "0.01", "2026-10-01")
    tariff(ctl, "96477", "0.015", "2026-10-01")
    store.cdrs(500, at("2026-10-01 00:00"), dest="9641234567", step=timedelta(minutes=7))
    store.cdrs(200, at("2026-10-03 00:00"), dest="9647712345678", parts=2,
               step=timedelta(minutes=11))  # fmt: skip
    exports = []
    for attempt in range(2):
        run(ctl, "2026-10")
        files = {}
        for fmt in ("csv", "json"):
            path = tmp_path / f"{attempt}.{fmt}"
            ctl.ok("settlement", "export", "--month", "2026-10", "--carrier", "TATA",
                   "--format", fmt, "--out", str(path))  # fmt: skip
            files[fmt] = path.read_bytes()
        exports.append(files)
    assert exports[0] == exports[1]
    rows = list(csv.DictReader(io.StringIO(exports[0]["csv"].decode())))
    assert [(r["kind"], r["prefix"], r["messages"], r["amount"]) for r in rows] == [
        ("usage", "964", "500", "5.00"), ("usage", "96477", "200", "3.00"),
        ("total", "", "", "8.00"),
    ]  # fmt: skip
    # a CDR more changes the checksum
    before = json.loads(exports[0]["json"])["cdr_checksum"]
    store.cdrs(1, at("2026-10-20 00:00"))
    assert run(ctl, "2026-10")["cdr_checksum"] != before
    # exporting every carrier writes one file per carrier into an existing folder
    (tmp_path / "all").mkdir()
    out = ctl.ok("settlement", "export", "--month", "2026-10", "--format", "pdf",
                 "--out", str(tmp_path / "all")).stdout  # fmt: skip
    assert (tmp_path / "all" / "settlement-2026-10-TATA.pdf").read_bytes().startswith(b"%PDF")
    assert "settlement-2026-10-TATA.pdf" in out


def test_pending_messages_are_reported_not_billed(ctl, store, store_url):
    tariff(ctl, "964", "0.01", "2026-10-01")
    cid = store.carrier_id()
    with store.engine.begin() as conn:
        conn.execute(insert(messages).values(
            id=900_000, origin="carrier", carrier_id=cid, source="4477", source_ton=1,
            destination="9647701234567", data_coding=0, esm_class=0, parts=1,
            registered_delivery=0, priority=0, lane="bulk", state="retry-wait", attempts=1,
            accepted_at=at("2026-10-31 23:59"), validity_until=at("2026-11-03 00:00"),
        ))  # fmt: skip
    outcome = run(ctl, "2026-10")
    assert (outcome["pending"], outcome["messages"]) == (1, 0)


def test_cdrs_cannot_be_updated(ctl, store):
    store.cdrs(1, at("2026-10-01 10:00"))
    with pytest.raises(DatabaseError, match=CDR_IMMUTABLE_MESSAGE), store.engine.begin() as conn:
        conn.execute(update(cdrs).values(state="failed"))
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT state FROM cdrs")).scalar() == "delivered"


def test_bad_settlement_input_is_refused_with_one_clear_line(ctl, store, tmp_path):
    ctl.refused("settlement", "run", "--month", "2026-13", contains="month: '2026-13'")
    ctl.refused("settlement", "run", "--month", "2026-10", "--carrier", "NOPE",
                contains="no carrier 'NOPE'")  # fmt: skip
    ctl.refused("settlement", "export", "--month", "2026-10", "--carrier", "TATA",
                "--format", "csv", "--out", str(tmp_path / "x.csv"),
                contains="no settlement of 2026-10 for TATA")  # fmt: skip
    ctl.refused("usage", "--carrier", "TATA", "--from", "2026-10-05", "--to", "2026-10-01",
                contains="to: 2026-10-01 is before from 2026-10-05")  # fmt: skip
    bad = ctl("tariff", "add", "--carrier", "TATA", "--prefix", "964", "--price", "0.01",
              "--currency", "USD", "--per", "minute")  # fmt: skip
    assert bad.exit_code == 2 and "Invalid value for '--per': 'minute'" in bad.output


def test_itemised_cdrs_show_the_id_the_carrier_was_given_and_its_rate(ctl, store, tmp_path):
    tariff(ctl, "964", "0.01", "2026-10-01")
    store.cdrs(2, at("2026-10-02 10:00"))
    store.cdrs(1, at("2026-10-02 11:00"), dest="33612345678", state="failed")
    with store.engine.begin() as conn:
        conn.execute(update(carriers).values(receipt_id_format="hex"))
        mids = list(conn.execute(select(cdrs.c.message_id).order_by(cdrs.c.accepted_at,
                                                                    cdrs.c.message_id)).scalars())  # fmt: skip
    out = tmp_path / "cdrs.json"
    ctl.ok("cdrs", "export", "--carrier", "TATA", "--from", "2026-10-01", "--to", "2026-10-31",
           "--format", "json", "--out", str(out))  # fmt: skip
    items = json.loads(out.read_text())
    assert [i["message_id"] for i in items] == [format(m, "x") for m in mids]
    assert [(i["unit_price"], i["state"]) for i in items] == [
        ("0.01", "delivered"), ("0.01", "delivered"), (None, "failed"),
    ]  # fmt: skip
    assert all(Decimal(i["unit_price"] or 0) >= 0 for i in items)


def test_fees_and_carrier_billing_settings_in_a_provisioning_file(ctl, store, tmp_path):
    path = tmp_path / "billing.yaml"
    path.write_text(
        "fees:\n"
        "  - {carrier: TATA, name: platform, kind: monthly, currency: USD, from: 2026-10,\n"
        "     tiers: [[0, '100']]}\n"
        "  - {carrier: TATA, name: volume, kind: graduated, currency: USD, from: 2026-10,\n"
        "     unit: segment, tiers: [{from: 0, price: '0'}, {from: 1000, price: '0.001'}]}\n"
    )
    out = ctl.ok("apply", "-f", str(path)).stdout
    assert "applied: 2 to create" in out
    assert "no changes" in ctl.ok("apply", "-f", str(path)).stdout
    store.cdrs(1500, at("2026-10-02 10:00"))
    assert run(ctl, "2026-10")["totals"] == {"USD": "100.50"}


def test_tariffs_and_fees_of_a_final_month_cannot_change(ctl, store, tmp_path):
    tariff(ctl, "964", "0.01", "2026-09-01")
    ctl.ok("fee", "add", "--carrier", "TATA", "--name", "platform", "--kind", "monthly",
           "--amount", "10", "--currency", "USD", "--from", "2026-09")  # fmt: skip
    store.cdrs(5, at("2026-10-10 10:00"))
    run(ctl, "2026-10")
    ctl.ok("settlement", "finalise", "--month", "2026-10", "--carrier", "TATA")
    # a new price from a day of October, or removing the tariff, would miss its invoice
    ctl.refused("tariff", "add", "--carrier", "TATA", "--prefix", "964", "--price", "0.02",
                "--currency", "USD", "--from", "2026-10-20",
                contains="settlement of 2026-10 is final")  # fmt: skip
    ctl.refused("tariff", "add", "--carrier", "TATA", "--prefix", "9647", "--price", "0.02",
                "--currency", "USD", "--from", "2026-10-31", contains="start it on 2026-11-01")  # fmt: skip
    ctl.refused("tariff", "remove", "1", contains="is final")
    ctl.refused("fee", "remove", "1", contains="is final")
    # from November on, prices may change, and ending the fee after October is fine
    tariff(ctl, "964", "0.02", "2026-11-01")
    fees = tmp_path / "fees.yaml"
    fees.write_text("fees:\n  - {carrier: TATA, name: platform, kind: monthly, currency: USD,\n"
                    "     from: 2026-09, to: 2026-10, tiers: [[0, '10']]}\n")  # fmt: skip
    assert "applied: 0 to create, 1 to update" in ctl.ok("apply", "-f", str(fees)).stdout
    fees.write_text(fees.read_text().replace("to: 2026-10", "to: 2026-09"))
    ctl.refused("apply", "-f", str(fees), contains="settlement of 2026-10 is final")
    store.cdrs(1, at("2026-10-31 22:00"), final_after=timedelta(days=2))  # late for October
    store.cdrs(2, at("2026-11-10 10:00"))
    nov = run(ctl, "2026-11")
    # the late October CDR is rated at October's price, November's at the new one; no fee
    assert nov["totals"] == {"USD": "0.05"}


def test_a_time_zone_change_neither_bills_an_hour_twice_nor_skips_one(ctl, store):
    tariff(ctl, "964", "0.01", "2026-09-01")
    store.cdrs(1, at("2026-10-31 20:00"))  # October in UTC; 1 Nov 01:30 in India
    store.cdrs(2, at("2026-11-30 19:00"))  # November in UTC; 1 Dec 00:30 in India
    run(ctl, "2026-10")
    ctl.ok("settlement", "finalise", "--month", "2026-10", "--carrier", "TATA")
    ctl.ok("carrier", "set", "TATA", "--timezone", "Asia/Kolkata")
    nov = run(ctl, "2026-11")  # from October's end (1 Nov 00:00 UTC) to 1 Dec 00:00 IST
    assert nov["messages"] == 0
    doc = show(ctl, "2026-11")
    assert (doc["period_start"], doc["period_end"]) == (
        "2026-11-01T00:00:00+00:00", "2026-11-30T18:30:00+00:00",
    )  # fmt: skip
    ctl.ok("settlement", "finalise", "--month", "2026-11", "--carrier", "TATA")
    assert run(ctl, "2026-12")["messages"] == 2


def test_list_and_show_for_people(ctl, store):
    tariff(ctl, "964", "0.01", "2026-10-01")
    store.cdrs(3, at("2026-10-02 10:00"))
    out = ctl.ok("settlement", "run", "--month", "2026-10").stdout
    assert "TATA 2026-10 (draft): 3 billable messages, 3 parts; total 0.03 USD" in out
    assert "964 at 0.01 USD per message: 3 msgs, 3 units x 0.01 = 0.03 USD" in out
    [row] = ctl.json("settlement", "list")
    assert (row["carrier"], row["period"], row["state"], row["cdr_count"]) == (
        "TATA", "2026-10", "draft", 3,
    )  # fmt: skip
    shown = ctl.ok("settlement", "show", "--month", "2026-10", "--carrier", "TATA").stdout
    assert "0.03 USD" in shown and "964 at 0.01 USD per message" in shown
