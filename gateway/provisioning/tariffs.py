# Provisioned carrier tariffs: E.164 prefix, exact price, currency, effective dates.
"""A tariff prices the SMS a carrier terminates to destinations starting with a prefix, per
message or per segment (``unit``). Its ``direction`` says who pays: ``in`` (the default) prices
what the carrier sends us (it pays us), ``out`` prices what we deliver to it through a policy
that targets it (leg ``out`` CDRs: what we pay the carrier, our cost). The two sets are
separate: each has its own prefixes and dates, and rating never mixes them.

It is effective from 00:00 of ``from`` through the whole day ``to`` (open-ended when ``to``
is empty), both in the carrier's billing time zone (UTC unless the carrier sets one). Two
tariffs of one carrier and prefix never overlap in time, so the rating of a message is never
ambiguous; billing/tariffs.py picks the longest prefix at the time the message was accepted."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from sqlalchemy import insert, or_, select, update

from billing.money import parse_currency, parse_price
from billing.tariffs import UNITS
from gateway.errors import Conflict, InvalidInput
from gateway.provisioning import audit
from gateway.provisioning import fields as F
from gateway.provisioning.base import ByCarrier, Context, Record
from gateway.store.schema import tariffs

DIRECTIONS = ("in", "out")
"""in: the carrier pays us for what it sends; out: we pay it for what we deliver to it."""


def _price(value: Any, field: str) -> Any:
    return parse_price(value, field)


def _currency(value: Any, field: str) -> str:
    return parse_currency(value, field)


def _today(ctx: Context) -> date:
    return ctx.today


class Tariffs(ByCarrier):
    name = "tariff"
    section = "tariffs"
    table = tariffs
    order = ("prefix", "effective_from")
    fields = (
        F.Field("carrier", F.name(64)),
        F.Field("prefix", F.digits_prefix),
        F.Field("from", F.day, default_from=_today),
        F.Field("price", _price),
        F.Field("currency", _currency),
        F.Field("to", F.optional(F.day), None),
        F.Field("unit", F.choice(UNITS), "message"),
        F.Field("direction", F.choice(DIRECTIONS), "in"),
    )

    def key(self, record: Record) -> str:
        out = " out" if record.get("direction", "in") == "out" else ""
        return f"{record['carrier']}{out} {record['prefix']} from {record['from'].isoformat()}"

    def check(self, record: Record, ctx: Context) -> Record:
        if record["to"] is not None and record["to"] < record["from"]:
            raise InvalidInput("to", f"{record['to']} is before from {record['from']}")
        return record

    def span(self, record: Record) -> tuple[date, date | None]:
        return record["from"], record["to"]

    def record_of(self, row: Mapping[str, Any]) -> Record:
        return {
            "id": row["id"],
            "carrier": row["carrier"],
            "prefix": row["prefix"],
            "from": row["effective_from"],
            "price": row["price"],
            "currency": row["currency"],
            "to": row["effective_to"],
            "unit": row["unit"],
            "direction": row["direction"],
        }

    def _overlapping(self, ctx: Context, carrier_pk: int, record: Record) -> list[Any]:
        start, end = record["from"], record["to"]
        query = select(tariffs).where(
            tariffs.c.carrier_id == carrier_pk,
            tariffs.c.prefix == record["prefix"],
            tariffs.c.direction == record.get("direction", "in"),
            tariffs.c.effective_from != start,
            or_(tariffs.c.effective_to.is_(None), tariffs.c.effective_to >= start),
        )
        if end is not None:
            query = query.where(tariffs.c.effective_from <= end)
        return list(ctx.conn.execute(query).mappings())

    def _refuse_overlap(self, ctx: Context, carrier_pk: int, record: Record) -> None:
        for other in self._overlapping(ctx, carrier_pk, record):
            until = other["effective_to"].isoformat() if other["effective_to"] else "open-ended"
            raise Conflict(
                f"tariff for {record['carrier']} prefix {record['prefix']} from {record['from']} "
                f"overlaps tariff #{other['id']} ({other['price']} {other['currency']}, "
                f"{other['effective_from']} to {until})"
            )

    def close_open_ended(self, ctx: Context, record: Record) -> None:
        """For ``tariff add``: a new rate ends the open-ended one it follows, the day before."""
        carrier_pk = self.carrier_pk(ctx, record)
        self.refuse_in_final(ctx, {**record, "to": None})  # the older one ends before it
        for other in self._overlapping(ctx, carrier_pk, record):
            if other["effective_to"] is not None or other["effective_from"] >= record["from"]:
                continue
            last_day = record["from"] - timedelta(days=1)
            ctx.conn.execute(
                update(tariffs).where(tariffs.c.id == other["id"]).values(effective_to=last_day)
            )
            before = {
                "id": other["id"],
                "carrier": record["carrier"],
                "prefix": other["prefix"],
                "from": other["effective_from"],
                "price": other["price"],
                "currency": other["currency"],
                "to": None,
                "unit": other["unit"],
                "direction": other["direction"],
            }
            after = {**before, "to": last_day}
            audit.record(ctx, "update", self.name, self.key(before), before, after)
            ctx.notices.append(
                f"tariff #{other['id']} ({self.key(before)}, {other['price']} {other['currency']})"
                f" now ends on {last_day}"
            )

    def write_new(self, ctx: Context, record: Record) -> None:
        carrier_pk = self.carrier_pk(ctx, record)
        self._refuse_overlap(ctx, carrier_pk, record)
        ctx.conn.execute(
            insert(tariffs).values(
                carrier_id=carrier_pk,
                prefix=record["prefix"],
                price=record["price"],
                currency=record["currency"],
                effective_from=record["from"],
                effective_to=record["to"],
                unit=record["unit"],
                direction=record["direction"],
                created_at=ctx.now,
            )
        )

    def write_changed(self, ctx: Context, key: str, record: Record) -> None:
        carrier_pk = self.carrier_pk(ctx, record)
        self._refuse_overlap(ctx, carrier_pk, record)
        ctx.conn.execute(
            update(tariffs)
            .where(tariffs.c.id == self.pk(ctx, key))
            .values(
                price=record["price"],
                currency=record["currency"],
                effective_to=record["to"],
                unit=record["unit"],
            )
        )
