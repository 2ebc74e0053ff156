# Billing periods: a month (or a day) in a carrier's IANA time zone, as a UTC interval.
"""A carrier's months and tariff days run in its billing time zone (UTC unless set), so a
carrier in Asia/Kolkata is invoiced from 1st 00:00 IST to 1st 00:00 IST. Every bound is
returned as an aware UTC datetime, the form the store keeps (docs/architecture.md rule 9)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import InvalidInput

_MONTH = re.compile(r"(\d{4})-(\d{2})")


def zone(name: str, field: str = "timezone") -> ZoneInfo:
    """The IANA zone called ``name`` (``UTC``, ``Asia/Kolkata``); InvalidInput otherwise."""
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        raise InvalidInput(field, f"{name!r} is not an IANA time zone name such as Europe/Paris")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            field, f"{name!r} is not a known IANA time zone (e.g. UTC, Asia/Kolkata)"
        ) from None


@dataclass(frozen=True, order=True, slots=True)
class Month:
    year: int
    month: int

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """[start, end) of the month in ``tz``, in UTC."""
        return day_start(self.first_day, tz), day_start(self.next().first_day, tz)

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)


def parse_month(text: str, field: str = "month") -> Month:
    """``YYYY-MM`` -> Month; InvalidInput naming ``field`` otherwise."""
    found = _MONTH.fullmatch(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise InvalidInput(field, f"{text!r} is not a month YYYY-MM")
    year, month = int(found[1]), int(found[2])
    if not 1 <= month <= 12 or not 1970 <= year <= 9998:  # 9999-12 ends beyond datetime's range
        raise InvalidInput(field, f"{text!r} is not a month YYYY-MM (1970 to 9998)")
    return Month(year, month)


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """00:00 of ``day`` in ``tz``, in UTC (the first instant of the day, even across DST)."""
    return datetime.combine(day, time(0), tz).astimezone(UTC)


def day_end(day: date, tz: ZoneInfo) -> datetime:
    """The end (exclusive) of ``day`` in ``tz``: 00:00 of the next day, in UTC."""
    return day_start(day + timedelta(days=1), tz)


def local_day(at: datetime, tz: ZoneInfo) -> date:
    """The calendar day ``at`` falls on in ``tz``."""
    return at.astimezone(tz).date()
