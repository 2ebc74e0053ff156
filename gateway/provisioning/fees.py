# Provisioned volume fees: a carrier's monthly fixed or volume-dependent charges.
"""A fee is charged on a carrier's monthly settlement from month ``from`` through month
``to`` (open-ended when empty). Its ``kind`` and ``tiers`` are explained in billing/fees.py;
``unit`` says whether the volume counts messages or segments."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from sqlalchemy import insert, update

from billing.fees import KINDS, parse_tiers, tiers_json
from billing.money import parse_currency
from billing.tariffs import UNITS
from gateway.errors import InvalidInput
from gateway.provisioning import fields as F
from gateway.provisioning.base import ByCarrier, Context, Record
from gateway.store.schema import fees


def month_start(value: Any, field: str) -> date:
    """A month YYYY-MM (or any date in it) as its first day."""
    if isinstance(value, date):
        return value.replace(day=1)
    text = value.strip() if isinstance(value, str) else ""
    found = re.fullmatch(r"(\d{4})-(\d{2})(?:-\d{2})?", text)
    if found is None or not 1 <= int(found[2]) <= 12:
        raise InvalidInput(field, f"expected a month YYYY-MM, got {value!r}")
    return date(int(found[1]), int(found[2]), 1)


def _this_month(ctx: Context) -> date:
    return ctx.today.replace(day=1)


def _currency(value: Any, field: str) -> str:
    return parse_currency(value, field)


def _tiers(value: Any, field: str) -> Any:
    return value  # checked with the kind in ``check``


class Fees(ByCarrier):
    name = "fee"
    section = "fees"
    table = fees
    order = ("name", "effective_from")
    fields = (
        F.Field("carrier", F.name(64)),
        F.Field("name", F.name(64)),
        F.Field("from", month_start, default_from=_this_month),
        F.Field("kind", F.choice(KINDS)),
        F.Field("currency", _currency),
        F.Field("tiers", _tiers),
        F.Field("unit", F.choice(UNITS), "message"),
        F.Field("to", F.optional(month_start), None),
    )

    def key(self, record: Record) -> str:
        return f"{record['carrier']} {record['name']} from {record['from']:%Y-%m}"

    def check(self, record: Record, ctx: Context) -> Record:
        tiers = parse_tiers(record["kind"], record["tiers"], "tiers")
        record = {**record, "tiers": tiers_json(tiers)}
        if record["to"] is not None and record["to"] < record["from"]:
            raise InvalidInput("to", f"{record['to']:%Y-%m} is before from {record['from']:%Y-%m}")
        return record

    def span(self, record: Record) -> tuple[date, date | None]:
        last = record["to"]
        if last is None:
            return record["from"], None
        return record["from"], (last.replace(day=28) + timedelta(days=4)).replace(day=1) - (
            timedelta(days=1)
        )

    def record_of(self, row: Mapping[str, Any]) -> Record:
        return {
            "id": row["id"],
            "carrier": row["carrier"],
            "name": row["name"],
            "from": row["effective_from"],
            "kind": row["kind"],
            "currency": row["currency"],
            "tiers": [list(t) for t in row["tiers"]],
            "unit": row["unit"],
            "to": row["effective_to"],
        }

    def _values(self, record: Record) -> dict[str, Any]:
        return {
            "name": record["name"],
            "kind": record["kind"],
            "unit": record["unit"],
            "currency": record["currency"],
            "tiers": record["tiers"],
            "effective_from": record["from"],
            "effective_to": record["to"],
        }

    start_word = "in"

    def day_text(self, day: date) -> str:
        return f"{day:%Y-%m}"

    def write_new(self, ctx: Context, record: Record) -> None:
        values = self._values(record)
        ctx.conn.execute(
            insert(fees).values(
                carrier_id=self.carrier_pk(ctx, record), created_at=ctx.now, **values
            )
        )

    def write_changed(self, ctx: Context, key: str, record: Record) -> None:
        ctx.conn.execute(
            update(fees).where(fees.c.id == self.pk(ctx, key)).values(**self._values(record))
        )
