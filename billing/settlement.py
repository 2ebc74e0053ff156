# A carrier's monthly statement: grouped CDR counts -> rated invoice lines, fees and totals.
"""Pure roll-up of a settlement (no I/O; billing/runs.py feeds it from the store).

Input is CDR counts grouped by (source month, destination key, tariff bucket, state) and a
function that names the tariff in effect for a group. Output is the invoice:

* ``usage`` lines, one per tariff (a mid-month price change gives two lines for one prefix),
  with messages, parts, the units the tariff counts, the unit price and the amount;
* ``unrated`` lines - billable messages no tariff covered, one line per destination prefix
  (the groups' key: the carrier's longest tariff prefix length, at least ``MIN_KEY_LENGTH``
  digits so it holds the country code; cut shorter while a month would have more than
  ``MAX_UNRATED_LINES``): counted, never priced silently, so finance sees what lacks a price;
* ``adjustment`` lines - CDRs of an already finalised month that arrived after it was frozen,
  rated as they would have been then;
* ``fee`` lines from the month's volume (billing/fees.py): a fee that depends on the volume
  shows it (``messages``, or ``parts`` for a fee per segment), a fixed one none; ``units`` is
  what a unit price multiplies, none without one (None, never a misleading 0);
* totals per currency.

Rounding happens once per line (``ROUNDING_RULE``); a total is the sum of its rounded lines.
Which states are billable is the carrier's setting: every accepted message, or delivered only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from billing.fees import Fee, charges
from billing.money import ROUNDING_RULE, quantize
from billing.tariffs import Rate

BILLABLE = ("accepted", "delivered")
MIN_KEY_LENGTH = 3
"""Destinations are grouped by at least their first 3 digits: an E.164 country code has 1-3,
so an unrated line names at least the country."""
MAX_UNRATED_LINES = 50
"""At most this many unrated lines per month: more distinct keys are cut shorter (never below
MIN_KEY_LENGTH digits) until they fit, so an invoice stays readable."""
ROUNDING_NOTE = f"each line is rounded {ROUNDING_RULE}; totals are the sums of rounded lines"


@dataclass(frozen=True, slots=True)
class Group:
    """CDRs of one month with one destination key, tariff bucket and final state."""

    source_period: str
    dest_key: str
    bucket: int
    state: str
    messages: int
    parts: int


@dataclass(frozen=True, slots=True)
class Line:
    seq: int
    kind: str  # usage | unrated | adjustment | fee
    source_period: str
    prefix: str | None
    description: str
    tariff_id: int | None
    currency: str | None
    unit: str | None
    unit_price: Decimal | None
    messages: int | None  # None: a fee that does not depend on the volume (or a per-segment one)
    parts: int | None  # None: a fee that does not depend on the volume (or a per-message one)
    units: int | None  # what unit_price multiplies; None for a fixed amount
    amount: Decimal | None


def shown_counts(line: dict[str, Any]) -> dict[str, Any]:
    """A stored line as shown: the store keeps 0 where a fee line has no count (its columns are
    NOT NULL); a fee shows its volume in its own unit's column, units only with a unit price."""
    if line["kind"] != "fee":
        return line
    return {
        **line,
        "messages": line["messages"] if line["unit"] == "message" else None,
        "parts": line["parts"] if line["unit"] == "segment" else None,
        "units": line["units"] if line["unit_price"] is not None else None,
    }


def unrated_prefixes(by_key: dict[str, list[int]]) -> list[tuple[str, int, int]]:
    """Unrated (messages, parts) by destination prefix, sorted: the groups' keys, cut shorter
    while there are more than MAX_UNRATED_LINES of them (never below MIN_KEY_LENGTH digits)."""
    length = max((len(key) for key in by_key), default=0)
    while length > MIN_KEY_LENGTH and len({k[:length] for k in by_key}) > MAX_UNRATED_LINES:
        length -= 1
    merged: dict[str, list[int]] = {}
    for key, (m, p) in by_key.items():
        counts = merged.setdefault(key[:length], [0, 0])
        counts[0] += m
        counts[1] += p
    return sorted((key, m, p) for key, (m, p) in merged.items())


@dataclass
class Statement:
    lines: list[Line]
    totals: dict[str, Decimal]  # currency -> total, sorted by currency
    messages: int  # billable messages of the month itself
    parts: int
    not_billable: int  # messages of the month the carrier does not pay for (billable=delivered)
    unrated: int  # billable messages of the month no tariff covered
    states: dict[str, int] = field(default_factory=dict)  # the month's messages by final state


def is_billable(state: str, billable: str) -> bool:
    return billable == "accepted" or state == "delivered"


def _span(rate: Rate, start: datetime, end: datetime, tz: ZoneInfo) -> str:
    """``, 2026-11-01 to 2026-11-14`` when the tariff covers only part of [start, end)."""
    begins = max(rate.starts, start)
    ends = end if rate.ends is None else min(rate.ends, end)
    if begins == start and ends == end:
        return ""
    first = begins.astimezone(tz).date()
    last = (ends - timedelta(microseconds=1)).astimezone(tz).date()
    return f", {first} to {last}"


def _usage_text(rate: Rate, span: str) -> str:
    return f"{rate.prefix} at {rate.price} {rate.currency} per {rate.unit}{span}"


def build(
    period: str,
    groups: Iterable[Group],
    rate: Callable[[Group], Rate | None],
    *,
    billable: str,
    fees: Sequence[Fee],
    bounds: Callable[[str], tuple[datetime, datetime]],
    tz: ZoneInfo,
) -> Statement:
    """The statement of ``period`` from its groups (and adjustment groups of earlier months).

    ``bounds(source_period)`` gives a month's [start, end) in UTC, for the tariff spans."""
    if billable not in BILLABLE:
        raise ValueError(f"billable {billable!r} is not one of {BILLABLE}")
    rated: dict[tuple[str, str, int], list[int]] = {}  # (kind, source, tariff) -> [m, p]
    rates: dict[int, Rate] = {}
    unrated: dict[str, dict[str, list[int]]] = {}  # source period -> dest key -> [m, p]
    states: dict[str, int] = {}
    messages = parts = not_billable = unrated_count = 0
    for g in groups:
        own = g.source_period == period
        if own:
            states[g.state] = states.get(g.state, 0) + g.messages
        if not is_billable(g.state, billable):
            if own:
                not_billable += g.messages
            continue
        if own:
            messages += g.messages
            parts += g.parts
        found = rate(g)
        if found is None:
            counts = unrated.setdefault(g.source_period, {}).setdefault(g.dest_key, [0, 0])
            if own:
                unrated_count += g.messages
        else:
            rates[found.tariff_id] = found
            kind = "usage" if own else "adjustment"
            counts = rated.setdefault((kind, g.source_period, found.tariff_id), [0, 0])
        counts[0] += g.messages
        counts[1] += g.parts

    lines: list[Line] = []

    def add(**values: object) -> None:
        lines.append(Line(seq=len(lines) + 1, **values))  # type: ignore[arg-type]

    def rated_lines(kind: str, sources: Iterable[str]) -> None:
        for source in sources:
            start, end = bounds(source)
            keys = sorted(
                (k for k in rated if k[0] == kind and k[1] == source),
                key=lambda k: (rates[k[2]].prefix, rates[k[2]].starts),
            )
            for key in keys:
                r = rates[key[2]]
                m, p = rated[key]
                units = r.units(m, p)
                text = _usage_text(r, _span(r, start, end, tz))
                if kind == "adjustment":
                    text = f"adjustment for {source}: {text}"
                add(
                    kind=kind,
                    source_period=source,
                    prefix=r.prefix,
                    description=text,
                    tariff_id=r.tariff_id,
                    currency=r.currency,
                    unit=r.unit,
                    unit_price=r.price,
                    messages=m,
                    parts=p,
                    units=units,
                    amount=quantize(r.price * units, r.currency),
                )
            for prefix, m, p in unrated_prefixes(unrated.get(source, {})):
                text = "no tariff covers these destinations"  # a settlement of keyless groups
                if prefix:
                    text = f"no tariff covers these destinations starting {prefix}"
                if kind == "adjustment":
                    text = f"adjustment for {source}: {text}"
                add(
                    kind="unrated" if kind == "usage" else "adjustment",
                    source_period=source,
                    prefix=prefix or None,
                    description=text,
                    tariff_id=None,
                    currency=None,
                    unit=None,
                    unit_price=None,
                    messages=m,
                    parts=p,
                    units=0,
                    amount=None,
                )

    rated_lines("usage", [period])
    earlier = sorted({k[1] for k in rated if k[0] == "adjustment"} | (set(unrated) - {period}))
    rated_lines("adjustment", earlier)

    for fee in fees:
        volume = parts if fee.unit == "segment" else messages
        for charge in charges(fee, volume):
            add(
                kind="fee",
                source_period=period,
                prefix=None,
                description=charge.description,
                tariff_id=None,
                currency=fee.currency,
                unit=fee.unit if fee.by_volume else None,
                unit_price=charge.unit_price,
                messages=volume if fee.by_volume and fee.unit == "message" else None,
                parts=volume if fee.by_volume and fee.unit == "segment" else None,
                units=charge.units if charge.unit_price is not None else None,
                amount=quantize(charge.amount, fee.currency),
            )

    totals: dict[str, Decimal] = {}
    for line in lines:
        if line.amount is not None and line.currency is not None:
            totals[line.currency] = totals.get(line.currency, Decimal(0)) + line.amount
    return Statement(
        lines=lines,
        totals=dict(sorted(totals.items())),
        messages=messages,
        parts=parts,
        not_billable=not_billable,
        unrated=unrated_count,
        states=dict(sorted(states.items())),
    )
