# Field parsers for provisioning input: one function per kind of value, each naming its field.
"""Turn values from the command line or a YAML provisioning file into canonical values.

Every parser takes ``(value, field)`` and returns the canonical value or raises
``InvalidInput(field, reason)``; values may arrive typed (YAML) or as text (command line).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from gateway.errors import InvalidInput

Parser = Callable[[Any, str], Any]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Field:
    """One settable field of a provisioned object."""

    name: str
    parse: Parser
    default: Any = REQUIRED
    write_only: bool = False  # secrets: accepted, never shown
    default_from: Callable[[Any], Any] | None = None  # default computed from the Context


def name(max_len: int = 128) -> Parser:
    """A display name: 1..max_len characters, no control characters, outer spaces removed."""

    def parse(value: Any, field: str) -> str:
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise InvalidInput(field, f"expected text, got {value!r}")
        text = str(value).strip()
        if not text:
            raise InvalidInput(field, "must not be empty")
        if len(text) > max_len:
            raise InvalidInput(field, f"at most {max_len} characters, got {len(text)}")
        if _CONTROL.search(text):
            raise InvalidInput(field, "must not contain control characters")
        return text

    return parse


def token(pattern: str, what: str, max_len: int) -> Parser:
    """An identifier matching ``pattern`` (full match), e.g. an account id."""
    compiled = re.compile(pattern)

    def parse(value: Any, field: str) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidInput(field, f"expected {what}, got {value!r}")
        text = str(value).strip()
        if not text or len(text) > max_len or not compiled.fullmatch(text):
            raise InvalidInput(field, f"{text!r} is not {what}")
        return text

    return parse


def integer(low: int, high: int) -> Parser:
    """A whole number in [low, high]; digit strings from the command line are accepted."""

    def parse(value: Any, field: str) -> int:
        if isinstance(value, bool):
            raise InvalidInput(field, f"expected a whole number, got {value!r}")
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        if not isinstance(value, int):
            raise InvalidInput(field, f"expected a whole number, got {value!r}")
        if not low <= value <= high:
            raise InvalidInput(field, f"must be {low}-{high}, got {value}")
        return value

    return parse


def boolean(value: Any, field: str) -> bool:
    """true/false (YAML booleans, or yes/no/true/false/1/0 as text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "1", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "no", "0", "off"}:
        return False
    raise InvalidInput(field, f"expected true or false, got {value!r}")


def choice(options: Sequence[str]) -> Parser:
    """One of a fixed set of words (case-insensitive input, canonical lower case)."""

    def parse(value: Any, field: str) -> str:
        text = str(value).strip().lower() if isinstance(value, str) else None
        if text not in options:
            raise InvalidInput(field, f"must be one of {', '.join(options)}, got {value!r}")
        return text

    return parse


def optional(inner: Parser) -> Parser:
    """``inner``, or None when the value is None / empty text."""

    def parse(value: Any, field: str) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return inner(value, field)

    return parse


def list_of(inner: Parser, *, min_items: int = 0, max_items: int = 1000) -> Parser:
    """A list (a single value counts as a list of one); duplicates are refused."""

    def parse(value: Any, field: str) -> list[Any]:
        items = list(value) if isinstance(value, list | tuple) else [value]
        if value is None:
            items = []
        if not min_items <= len(items) <= max_items:
            raise InvalidInput(field, f"expected {min_items}-{max_items} entries, got {len(items)}")
        parsed = [inner(item, f"{field}[{i}]") for i, item in enumerate(items)]
        seen: set[Any] = set()
        for i, item in enumerate(parsed):
            if item in seen:
                raise InvalidInput(f"{field}[{i}]", f"{item!r} is listed twice")
            seen.add(item)
        return parsed

    return parse


def network(value: Any, field: str) -> str:
    """An IPv4/IPv6 network in CIDR form; a bare address means that one host."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"expected a CIDR network such as 192.0.2.0/24, got {value!r}")
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError as exc:
        raise InvalidInput(
            field, f"{value!r} is not a CIDR network such as 192.0.2.0/24 ({exc})"
        ) from None


def host(value: Any, field: str) -> str:
    """An IP address or a DNS host name (RFC 1123)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, f"expected an IP address or host name, got {value!r}")
    text = value.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    labels = text.rstrip(".").split(".")
    if len(text) > 253 or not all(_HOSTNAME_LABEL.match(label) for label in labels):
        raise InvalidInput(field, f"{text!r} is not an IP address or host name")
    if labels[-1].isdigit():
        raise InvalidInput(field, f"{text!r} is not a valid IP address")
    return text.lower()


def day(value: Any, field: str) -> date:
    """A calendar date, YYYY-MM-DD."""
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError as exc:
            raise InvalidInput(field, f"{value!r} is not a date: {exc}") from None
    raise InvalidInput(field, f"expected a date YYYY-MM-DD, got {value!r}")


def digits_prefix(value: Any, field: str) -> str:
    """An E.164 prefix: 1-15 digits, a leading '+' is dropped."""
    text = (
        str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    )
    text = text.removeprefix("+")
    if not re.fullmatch(r"\d{1,15}", text):
        raise InvalidInput(field, f"{value!r} is not an E.164 prefix (1-15 digits)")
    return text
