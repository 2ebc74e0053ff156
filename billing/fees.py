# Monthly volume fees: a fixed fee, a fee by volume band, graduated or band unit prices.
"""Pure computation of a month's volume charges from the month's billable volume.

Kinds (``tiers`` are ``(from_units, price)`` pairs, ascending, the first from 0):

* ``monthly``      - a fixed amount every month: the single tier's price.
* ``volume-fee``   - a fixed amount chosen by the month's volume: the price of the highest
  tier whose ``from`` the volume reached (the seeds' "total monthly fees may apply depending
  on total volume of messages passed").
* ``graduated``    - a unit price per tier: units 1..t1 at the first price, the next ones up
  to t2 at the second, ... (like income-tax bands).
* ``volume-price`` - every unit at the price of the band the month's volume reached.

The volume counts the month's billable messages, or their segments (``unit``). Amounts come
back unrounded; rounding happens once, on the invoice line (billing/settlement.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from itertools import pairwise
from typing import Any

from billing.money import parse_price
from gateway.errors import InvalidInput
from gateway.words import count as counted

KINDS = ("monthly", "volume-fee", "graduated", "volume-price")
MAX_TIERS = 32


@dataclass(frozen=True, slots=True)
class Tier:
    start: int  # the volume (units) from which this tier applies
    price: Decimal


@dataclass(frozen=True, slots=True)
class Fee:
    fee_id: int
    name: str
    kind: str
    unit: str  # message | segment
    currency: str
    tiers: tuple[Tier, ...]
    first_month: date  # first day of the first month it applies to
    last_month: date | None  # first day of the last month, None: open-ended

    @property
    def by_volume(self) -> bool:
        """Whether the charge depends on the month's volume (every kind but ``monthly``)."""
        return self.kind != "monthly"

    def applies(self, month_first_day: date) -> bool:
        return self.first_month <= month_first_day and (
            self.last_month is None or month_first_day <= self.last_month
        )


@dataclass(frozen=True, slots=True)
class Charge:
    """One invoice line of a fee: ``units`` at ``unit_price``, or a fixed ``amount``."""

    description: str
    units: int
    unit_price: Decimal | None  # None for a fixed amount
    amount: Decimal


def parse_tiers(kind: str, value: Any, field: str = "tiers") -> tuple[Tier, ...]:
    """Tiers as given (``[[0, "0.01"], [100000, "0.008"]]`` or ``[{"from": .., "price": ..}]``),
    checked: ascending, the first from 0, one tier for ``monthly``."""
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise InvalidInput(field, "expected a list of tiers: from (units) and price")
    if len(value) > MAX_TIERS:
        raise InvalidInput(field, f"{len(value)} tiers: at most {MAX_TIERS}")
    tiers: list[Tier] = []
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if isinstance(item, dict):
            unknown = set(item) - {"from", "price"}
            if unknown:
                raise InvalidInput(where, f"unknown keys {sorted(unknown)} (expected from, price)")
            start, price = item.get("from"), item.get("price")
        elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
            start, price = item
        else:
            raise InvalidInput(where, f"expected from and price, got {item!r}")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise InvalidInput(f"{where}.from", f"{start!r} is not a whole number of units >= 0")
        tiers.append(Tier(start, parse_price(price, f"{where}.price")))
    if tiers[0].start != 0:
        raise InvalidInput(f"{field}[0].from", "the first tier starts from 0")
    for before, after in pairwise(tiers):
        if after.start <= before.start:
            raise InvalidInput(field, f"tier from {after.start} does not follow {before.start}")
    if kind == "monthly" and len(tiers) != 1:
        raise InvalidInput(field, "a monthly fee has one amount (one tier from 0)")
    return tuple(tiers)


def tiers_json(tiers: Sequence[Tier]) -> list[list[Any]]:
    """Tiers as stored: ``[[from, "price"], ...]`` (prices as exact text)."""
    return [[t.start, format(t.price, "f")] for t in tiers]


def _band(tiers: Sequence[Tier], volume: int) -> Tier:
    reached = [t for t in tiers if t.start <= volume]
    return reached[-1]


def _range(tiers: Sequence[Tier], i: int) -> str:
    nxt = tiers[i + 1].start if i + 1 < len(tiers) else None
    low = tiers[i].start + 1 if tiers[i].start else 1
    return f"{low:,}+" if nxt is None else f"{low:,}-{nxt:,}"


def charges(fee: Fee, volume: int) -> list[Charge]:
    """The month's charges of ``fee`` for a billable ``volume`` (in the fee's unit)."""
    unit = f"{fee.unit}s"
    if fee.kind == "monthly":
        return [Charge(fee.name, 0, None, fee.tiers[0].price)]
    if fee.kind == "volume-fee":
        band = _band(fee.tiers, volume)
        label = f"{fee.name} (volume {counted(volume, fee.unit)}, band from {band.start:,})"
        return [Charge(label, 0, None, band.price)]
    if fee.kind == "volume-price":
        band = _band(fee.tiers, volume)
        label = f"{fee.name} (volume {counted(volume, fee.unit)}, band from {band.start:,})"
        return [Charge(label, volume, band.price, band.price * volume)]
    if fee.kind == "graduated":
        out: list[Charge] = []
        for i, tier in enumerate(fee.tiers):
            upper = fee.tiers[i + 1].start if i + 1 < len(fee.tiers) else None
            if volume <= tier.start:
                break
            count = (volume if upper is None else min(volume, upper)) - tier.start
            label = f"{fee.name} ({unit} {_range(fee.tiers, i)})"
            out.append(Charge(label, count, tier.price, tier.price * count))
        return out
    raise ValueError(f"fee kind {fee.kind!r} is not one of {KINDS}")
