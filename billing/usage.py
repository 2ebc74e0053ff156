# Usage reports: a carrier's messages per day, and its itemised CDRs for disputes.
"""``gatewayctl usage`` counts a carrier's CDRs per day of its billing time zone, by final
state; ``gatewayctl cdrs export`` lists them one by one, with the message id as the carrier
received it (decimal or hex, its receipt_id setting; for a concatenated message the first
part's id, the other parts' ids in ``other_part_ids``) and the tariff that rated each, so a
carrier can compare line by line with its own records. Both stream: a month of millions of
CDRs is never held in memory."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any, TextIO

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from billing import cdr
from billing.periods import day_end, day_start
from billing.runs import CarrierBilling, in_period, rate_table
from billing.settlement import is_billable
from gateway.errors import InvalidInput
from gateway.smpp.receipt import format_message_id
from gateway.store.schema import carriers, cdrs

MAX_DAYS = 366
CDR_COLUMNS = (
    "message_id",
    "other_part_ids",
    "accepted_at",
    "final_at",
    "source",
    "destination",
    "parts",
    "data_coding",
    "route",
    "state",
    "reason",
    "billable",
    "tariff_prefix",
    "unit",
    "unit_price",
    "currency",
)


def check_range(first: date, last: date) -> None:
    if last < first:
        raise InvalidInput("to", f"{last} is before from {first}")
    if (last - first).days >= MAX_DAYS:
        raise InvalidInput("to", f"at most {MAX_DAYS} days at a time")


def per_day(
    conn: Connection, carrier: CarrierBilling, first: date, last: date, leg: str = cdr.LEG_IN
) -> list[dict]:
    """One row per day from ``first`` to ``last`` (the carrier's zone): counts by state.
    ``leg`` ``out``: the messages we delivered to the carrier (outbound, our cost), whose
    ``billable`` counts every one (the carrier took each)."""
    check_range(first, last)
    tz = carrier.tz
    rows: list[dict[str, Any]] = []
    day = first
    while day <= last:
        counts = dict.fromkeys(cdr.STATE_CODES, 0)
        parts = 0
        query = (
            select(cdrs.c.state, func.count(), func.sum(cdrs.c.parts))
            .where(in_period(carrier.id, day_start(day, tz), day_end(day, tz), leg))
            .group_by(cdrs.c.state)
        )
        for state, n, p in conn.execute(query):
            counts[state] = counts.get(state, 0) + int(n)
            parts += int(p)
        total = sum(counts.values())
        rule = carrier.billable if leg == cdr.LEG_IN else "accepted"
        billable = sum(n for s, n in counts.items() if is_billable(s, rule))
        rows.append(
            {"day": day.isoformat(), "messages": total, "parts": parts, "billable": billable,
             **counts}
        )  # fmt: skip
        day += timedelta(days=1)
    return rows


def count_itemised(conn: Connection, carrier: CarrierBilling, first: date, last: date) -> int:
    """How many CDRs :func:`itemised` yields for the same arguments."""
    check_range(first, last)
    tz = carrier.tz
    where = in_period(carrier.id, day_start(first, tz), day_end(last, tz))
    return int(conn.execute(select(func.count()).select_from(cdrs).where(where)).scalar_one())


def itemised(conn: Connection, carrier: CarrierBilling, first: date, last: date) -> Iterator[dict]:
    """The carrier's CDRs accepted from ``first`` through ``last`` (its zone), oldest first."""
    check_range(first, last)
    tz = carrier.tz
    style = conn.execute(
        select(carriers.c.receipt_id_format).where(carriers.c.id == carrier.id)
    ).scalar_one()
    table = rate_table(conn, carrier)
    query = (
        select(cdrs)
        .where(in_period(carrier.id, day_start(first, tz), day_end(last, tz)))
        .order_by(cdrs.c.accepted_at, cdrs.c.message_id)
        .execution_options(yield_per=5000)
    )
    for row in conn.execute(query).mappings():
        billable = is_billable(row["state"], carrier.billable)
        rate = table.at(row["destination"], row["accepted_at"]) if billable else None
        ids = [int(i) for i in (row["part_ids"] or "").split()] or [row["message_id"]]
        yield {
            "message_id": format_message_id(ids[0], style),
            "other_part_ids": " ".join(format_message_id(i, style) for i in ids[1:]) or None,
            "accepted_at": row["accepted_at"].isoformat(),
            "final_at": row["final_at"].isoformat() if row["final_at"] else None,
            "source": row["source"],
            "destination": row["destination"],
            "parts": row["parts"],
            "data_coding": row["data_coding"],
            "route": row["route"],
            "state": row["state"],
            "reason": row["reason"],
            "billable": billable,
            "tariff_prefix": rate.prefix if rate else None,
            "unit": rate.unit if rate else None,
            "unit_price": format(rate.price, "f") if rate else None,
            "currency": rate.currency if rate else None,
        }


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def write_csv(rows: Iterator[dict], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CDR_COLUMNS)
    n = 0
    for row in rows:
        writer.writerow([_cell(row[c]) for c in CDR_COLUMNS])
        n += 1
    return n


def write_json(rows: Iterator[dict], out: TextIO) -> int:
    """A JSON array, one CDR object per line, written as it streams."""
    out.write("[")
    n = 0
    for row in rows:
        out.write(",\n" if n else "\n")
        out.write(json.dumps(row, sort_keys=True, ensure_ascii=False))
        n += 1
    out.write("\n]\n")
    return n
