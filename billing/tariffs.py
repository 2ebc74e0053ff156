# Rating: which tariff prices a message (longest E.164 prefix in effect when it was accepted).
"""Pure rating of CDRs against a carrier's tariffs (no I/O; the store side is billing/runs.py).

A tariff is in effect from 00:00 of its first day through the end of its last day in the
carrier's billing time zone. Among the tariffs in effect at a message's acceptance time, the
longest prefix of the destination wins; two tariffs of one prefix never overlap (provisioning
refuses it), so the answer is unique. A tariff prices each message, or each segment (part).

For settlement, :meth:`RateTable.boundaries` gives the instants inside a period where the set
of tariffs in effect changes; within two neighbouring boundaries the rate of every
destination is constant, and it depends only on the first :attr:`RateTable.key_length`
digits of the destination. That lets the database group millions of CDRs by (destination
key, bucket) and rating run once per group.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from billing.periods import day_end, day_start

UNITS = ("message", "segment")


@dataclass(frozen=True, slots=True)
class Rate:
    """One tariff, with its effective interval as UTC instants [starts, ends)."""

    tariff_id: int
    prefix: str
    price: Decimal
    currency: str
    unit: str  # message | segment
    starts: datetime
    ends: datetime | None  # None: open-ended

    def covers(self, at: datetime) -> bool:
        return self.starts <= at and (self.ends is None or at < self.ends)

    def units(self, messages: int, parts: int) -> int:
        """What this tariff counts: messages, or segments."""
        return parts if self.unit == "segment" else messages


def rate_of(
    tariff_id: int,
    prefix: str,
    price: Decimal,
    currency: str,
    unit: str,
    first_day: date,
    last_day: date | None,
    tz: ZoneInfo,
) -> Rate:
    """A stored tariff (days in the carrier's zone) as a Rate (UTC instants)."""
    if unit not in UNITS:
        raise ValueError(f"tariff unit {unit!r} is not one of {UNITS}")
    return Rate(
        tariff_id=tariff_id,
        prefix=prefix,
        price=price,
        currency=currency,
        unit=unit,
        starts=day_start(first_day, tz),
        ends=None if last_day is None else day_end(last_day, tz),
    )


class RateTable:
    """A carrier's tariffs, indexed by prefix, for rating at any instant."""

    def __init__(self, rates: Iterable[Rate]) -> None:
        self._by_prefix: dict[str, list[Rate]] = {}
        for rate in rates:
            self._by_prefix.setdefault(rate.prefix, []).append(rate)
        for group in self._by_prefix.values():
            group.sort(key=lambda r: r.starts)
        self._starts = {p: [r.starts for r in g] for p, g in self._by_prefix.items()}
        self.key_length = max((len(p) for p in self._by_prefix), default=0)

    def __len__(self) -> int:
        return sum(len(g) for g in self._by_prefix.values())

    def _in_effect(self, prefix: str, at: datetime) -> Rate | None:
        group = self._by_prefix.get(prefix)
        if not group:
            return None
        i = bisect_right(self._starts[prefix], at) - 1
        if i >= 0 and group[i].covers(at):
            return group[i]
        return None

    def at(self, destination: str, when: datetime) -> Rate | None:
        """The tariff that prices a message to ``destination`` accepted at ``when``."""
        for length in range(min(len(destination), self.key_length), 0, -1):
            found = self._in_effect(destination[:length], when)
            if found is not None:
                return found
        return None

    def boundaries(self, start: datetime, end: datetime) -> list[datetime]:
        """Instants strictly inside (start, end) where some tariff starts or ends, ascending."""
        instants: set[datetime] = set()
        for group in self._by_prefix.values():
            for rate in group:
                for instant in (rate.starts, rate.ends):
                    if instant is not None and start < instant < end:
                        instants.add(instant)
        return sorted(instants)
