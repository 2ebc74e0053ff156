# Outbound cost (issue 16): CDRs of leg out rated by the carrier's out tariffs, shown apart.
"""A carrier that both sends us traffic (leg in: it pays us) and takes our apps' messages
(leg out: we pay it) gets a settlement whose invoice lines and totals are the inbound ones
alone, exactly as before, and an "outbound (cost)" section rated by its ``--direction out``
tariffs; usage reports the two apart. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from sqlalchemy import insert

from gateway.store.schema import cdrs
from tests.store.test_settlement import Store, at, ids, run, show, store  # noqa: F401


def out_cdrs(st: Store, n: int, accepted, *, parts: int = 1, dest: str = "9647701234567"):
    cid = st.carrier_id("TATA")
    rows = []
    for _ in range(n):
        mid = next(ids)
        rows.append(dict(id=mid, message_id=mid, leg="out", carrier_id=cid, account_id=None,
                         source="964111222333", destination=dest, parts=parts, data_coding=0,
                         route="carrier:TATA", state="delivered", accepted_at=accepted,
                         final_at=accepted + timedelta(seconds=1)))  # fmt: skip
    with st.engine.begin() as conn:
        conn.execute(insert(cdrs), rows)


def tariffs(ctl) -> None:
    base = ("tariff", "add", "--carrier", "TATA", "--prefix", "964", "--currency", "USD",
            "--from", "2026-10-01")  # fmt: skip
    ctl.ok(*base, "--price", "0.01")  # it pays us 0.01 a message
    ctl.ok(*base, "--price", "0.004", "--direction", "out", "--per", "segment")  # we pay it


def test_out_legs_are_rated_by_cost_tariffs_and_shown_apart(ctl, store) -> None:  # noqa: F811
    tariffs(ctl)
    store.cdrs(10, at("2026-10-05 10:00"))  # inbound: 10 x 0.01
    out_cdrs(store, 3, at("2026-10-06 10:00"), parts=2)  # 6 segments x 0.004: 0.02
    out_cdrs(store, 1, at("2026-10-07 10:00"), dest="447700900123")  # no cost tariff for 44
    outcome = run(ctl, "2026-10", "--carrier", "TATA")
    assert outcome["totals"] == {"USD": "0.10"}  # the inbound figures, unchanged
    assert outcome["messages"] == 10
    doc = show(ctl, "2026-10")
    assert doc["totals"] == [{"amount": "0.10", "currency": "USD"}]
    assert [(ln["kind"], ln["messages"], ln["amount"]) for ln in doc["lines"]] == [
        ("usage", 10, "0.10")
    ]
    cost = doc["outbound_cost"]
    assert cost["messages"] == 4 and cost["unrated"] == 1
    assert [(ln["kind"], ln["messages"], ln["units"], ln["unit_price"], ln["amount"])
            for ln in cost["lines"]] == [
        ("usage", 3, 6, "0.004", "0.02"), ("unrated", 1, 0, None, None),
    ]  # fmt: skip
    assert cost["totals"] == [{"amount": "0.02", "currency": "USD"}]
    text = ctl.ok("settlement", "show", "--month", "2026-10", "--carrier", "TATA").output
    assert "outbound (cost): 4 msgs delivered to it, total 0.02 USD" in text
    exported = ctl.ok("settlement", "export", "--month", "2026-10", "--carrier", "TATA",
                      "--format", "csv", "--out", "-").stdout  # fmt: skip
    kinds = [(r["kind"], r["amount"]) for r in csv.DictReader(io.StringIO(exported))]
    assert kinds == [("usage", "0.10"), ("total", "0.10"), ("cost-usage", "0.02"),
                     ("cost-unrated", ""), ("cost-total", "0.02")]  # fmt: skip
    days = ("--from", "2026-10-05", "--to", "2026-10-07", "--json")
    usage = json.loads(ctl.ok("usage", "--carrier", "TATA", *days).stdout)
    assert [r["messages"] for r in usage["inbound"]] == [10, 0, 0]
    assert [(r["messages"], r["parts"]) for r in usage["outbound"]] == [(0, 0), (3, 6), (1, 1)]


def test_without_out_legs_the_settlement_and_usage_are_as_before(ctl, store) -> None:  # noqa: F811
    tariffs(ctl)
    store.cdrs(2, at("2026-10-05 10:00"))
    run(ctl, "2026-10", "--carrier", "TATA")
    assert "outbound_cost" not in show(ctl, "2026-10")
    usage = ctl.json("usage", "--carrier", "TATA", "--from", "2026-10-05", "--to", "2026-10-05")
    assert [r["messages"] for r in usage] == [2]
