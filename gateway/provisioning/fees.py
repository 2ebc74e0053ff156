# Provisioned volume fees: a carrier's monthly fixed or volume-dependent charges.
"""A fee is charged on a carrier's monthly settlement from month ``from`` through month
``to`` (open-ended when empty). Its ``kind`` and ``tiers`` are explained in billing/fees.py;
``unit`` says whether the volume counts messages or segments."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from sqlalchemy import delete, insert, select, update

from billing.fees import KINDS, parse_tiers, tiers_json
from billing.money import parse_currency
from billing.tariffs import UNITS
from gateway.errors import InvalidInput
from gateway.provisioning import fields as F
from gateway.provisioning.base import Context, Kind, Record, id_of
from gateway.store.schema import carriers, fees


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


class Fees(Kind):
    name = "fee"
    section = "fees"
    table = fees
    store_key = "id"
    ref_help = "ID"
    ref_by_id = True
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

    def records(self, ctx: Context) -> dict[str, Record]:
        rows = ctx.conn.execute(
            select(fees, carriers.c.name.label("carrier"))
            .join(carriers, fees.c.carrier_id == carriers.c.id)
            .order_by(carriers.c.name, fees.c.name, fees.c.effective_from)
        ).mappings()
        out: dict[str, Record] = {}
        for row in rows:
            record = {
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
            out[self.key(record)] = record
        return out

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

    def insert(self, ctx: Context, record: Record) -> None:
        carrier_pk = id_of(ctx, carriers, "name", record["carrier"], "carrier", "carrier")
        ctx.conn.execute(
            insert(fees).values(carrier_id=carrier_pk, created_at=ctx.now, **self._values(record))
        )

    def update(self, ctx: Context, key: str, record: Record) -> None:
        pk = self.records(ctx)[key]["id"]
        ctx.conn.execute(update(fees).where(fees.c.id == pk).values(**self._values(record)))

    def delete(self, ctx: Context, key: str) -> None:
        pk = self.records(ctx)[key]["id"]
        ctx.conn.execute(delete(fees).where(fees.c.id == pk))
