# Delivery receipt text (SMPP 3.4 Appendix B), message_state values (§5.2.28), message ids.
"""Format and parse the ``id:... sub:... stat:...`` text of delivery receipts.

Parsing is tolerant of what SMSCs send: keys in any case, ``submit_date`` or ``submit date``,
dates of 10 (YYMMDDhhmm), 12 (with seconds) or 14 (YYYYMMDDhhmmss) digits, missing sub, dlvrd,
err, dates or text, extra fields, long-form states (DELIVERED) and err in hex. Everything after
the first ``text:`` is the text. Dates are read and written as UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from gateway.smpp.constants import Status
from gateway.smpp.text import TextError

MESSAGE_STATE = {
    "ENROUTE": 1,
    "DELIVRD": 2,
    "EXPIRED": 3,
    "DELETED": 4,
    "UNDELIV": 5,
    "ACCEPTD": 6,
    "UNKNOWN": 7,
    "REJECTD": 8,
}
"""stat text -> message_state TLV value (§5.2.28)."""

MAX_RECEIPT = 1024
"""Longest receipt text read (short_message holds 254 octets; message_payload may hold more)."""
MAX_MESSAGE_ID = 64
"""message_id is a C-Octet String of at most 65 octets with its NUL (§5.2.23)."""

_STAT_ALIASES = {
    "DELIVERED": "DELIVRD",
    "UNDELIVERABLE": "UNDELIV",
    "UNDELIVERED": "UNDELIV",
    "ACCEPTED": "ACCEPTD",
    "REJECTED": "REJECTD",
    "DELETE": "DELETED",
    "EXPIRD": "EXPIRED",
}
_KEY = re.compile(r"\b(id|sub|dlvrd|submit[ _]?date|done[ _]?date|stat|err|text)\s*:", re.I)
_DIGITS = re.compile(r"[0-9]{1,10}")
_HEX = re.compile(r"[0-9a-fA-F]{1,8}")
_ID_PATTERNS = {"dec": re.compile(r"[0-9]{1,20}"), "hex": re.compile(r"[0-9a-fA-F]{1,16}")}


class ReceiptError(TextError):
    """A receipt or message id that cannot be read.

    Status: ESME_RX_P_APPN for a receipt (resending the same text cannot help), ESME_RINVMSGID
    for a message id.
    """

    def __init__(self, reason: str, status: int = Status.ESME_RX_P_APPN) -> None:
        super().__init__(status, reason)


@dataclass(frozen=True, slots=True)
class Receipt:
    """One delivery receipt; naive datetimes are taken as UTC."""

    message_id: str
    sub: int
    dlvrd: int
    submit_date: datetime
    done_date: datetime
    stat: str
    err: int
    text: str
    """The first 20 characters of the original message (only those are written)."""

    def __post_init__(self) -> None:
        if not 0 < len(self.message_id) <= MAX_MESSAGE_ID or any(
            ch.isspace() for ch in self.message_id
        ):
            raise ValueError(f"message id {self.message_id!r}: 1-64 non-blank characters")
        if not (0 <= self.sub <= 999 and 0 <= self.dlvrd <= 999):
            raise ValueError(f"sub {self.sub} and dlvrd {self.dlvrd} must be within 0..999")
        if not 0 <= self.err < 10**10:
            raise ValueError(f"err {self.err} must be within 0..9999999999")
        if self.stat not in MESSAGE_STATE:
            raise ValueError(f"stat {self.stat!r} is not one of {', '.join(MESSAGE_STATE)}")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def format_receipt(r: Receipt) -> str:
    """The Appendix B text: ``id:<id> sub:001 dlvrd:001 submit date:YYMMDDhhmm ... text:...``."""
    return (
        f"id:{r.message_id} sub:{r.sub:03d} dlvrd:{r.dlvrd:03d}"
        f" submit date:{_utc(r.submit_date):%y%m%d%H%M} done date:{_utc(r.done_date):%y%m%d%H%M}"
        f" stat:{r.stat} err:{r.err:03d} text:{r.text[:20]}"
    )


def _fields(text: str) -> dict[str, str]:
    """Key (lower-case, ``_`` for blank) -> first whitespace-free token; text -> the rest."""
    found: dict[str, str] = {}
    matches = list(_KEY.finditer(text))
    for i, match in enumerate(matches):
        key = re.sub(r"[ _]?date", "_date", match[1].lower())
        if key == "text":
            found.setdefault("text", text[match.end() :].rstrip("\x00"))
            break
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        tokens = text[match.end() : end].split(None, 1)
        found.setdefault(key, tokens[0] if tokens else "")
    return found


def _date(value: str | None, now: datetime, key: str) -> datetime:
    if value is None:
        return _utc(now)
    if not value.isascii() or not value.isdigit() or len(value) not in (10, 12, 14):
        raise ReceiptError(f"{key} {value!r} is not YYMMDDhhmm[ss] or YYYYMMDDhhmmss")
    if len(value) == 14:
        year, rest = int(value[:4]), value[4:]
    else:  # two-digit year: the century that puts it within 50 years of now
        base = now.year - now.year % 100
        year, rest = base + int(value[:2]), value[2:]
        if year > now.year + 50:
            year -= 100
        elif year <= now.year - 50:
            year += 100
    month, day, hour, minute, second = (int(rest[n : n + 2] or 0) for n in range(0, 10, 2))
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise ReceiptError(f"{key} {value!r} is not a date") from None


def _number(value: str | None, key: str, *, hex_ok: bool = False) -> int:
    if value is None:
        return 0
    if _DIGITS.fullmatch(value):
        return int(value)
    if hex_ok and _HEX.fullmatch(value):
        return int(value, 16)
    raise ReceiptError(f"{key} {value!r} is not a number")


def parse_receipt(text: str, now: datetime) -> Receipt:
    """The receipt in ``text``; ``now`` fills missing dates and picks the century of YY."""
    if len(text) > MAX_RECEIPT:
        raise ReceiptError(f"receipt of {len(text)} characters, at most {MAX_RECEIPT}")
    found = _fields(text)
    message_id = found.get("id")
    if not message_id:
        raise ReceiptError("receipt has no id")
    raw_stat = found.get("stat", "").upper()
    stat = _STAT_ALIASES.get(raw_stat, raw_stat)
    if stat not in MESSAGE_STATE:
        raise ReceiptError(f"stat {raw_stat!r} is not a message state")
    try:
        return Receipt(
            message_id=message_id,
            sub=_number(found.get("sub"), "sub"),
            dlvrd=_number(found.get("dlvrd"), "dlvrd"),
            submit_date=_date(found.get("submit_date"), now, "submit date"),
            done_date=_date(found.get("done_date"), now, "done date"),
            stat=stat,
            err=_number(found.get("err"), "err", hex_ok=True),
            text=found.get("text", ""),
        )
    except ValueError as exc:
        raise ReceiptError(str(exc)) from None


def format_message_id(n: int, style: Literal["dec", "hex"]) -> str:
    """A 64-bit message id as the text peers see: decimal, or lower-case hex without prefix."""
    if not 0 <= n < 1 << 64:
        raise ValueError(f"message id {n} is not an unsigned 64-bit number")
    return str(n) if style == "dec" else format(n, "x")


def parse_message_id(text: str, style: Literal["dec", "hex"]) -> int:
    """The number in a message id written by ``format_message_id`` (hex in either case)."""
    n = int(text, 10 if style == "dec" else 16) if _ID_PATTERNS[style].fullmatch(text) else -1
    if not 0 <= n < 1 << 64:
        raise ReceiptError(f"message id {text[:80]!r} is not {style}", Status.ESME_RINVMSGID)
    return n
