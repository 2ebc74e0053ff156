# Phone number normalisation to stored E.164 digits (ITU-T E.164, lengths from libphonenumber).
"""Turn a number as an operator, a carrier or an app wrote it into E.164 digits without '+'.

The stored form everywhere is the E.164 digit string without '+': ``964111222333``.
Conversion happens once, at the edge (docs/architecture.md rule 9), with :func:`normalise`:

* ``+digits`` (or ``<international prefix>digits``) is international;
* ``form="international"`` says the digits are already E.164 (SMPP TON 1);
* ``form="national"`` strips the national prefix, if present, and prepends the country code;
* ``form="unknown"`` with bare digits: a leading national prefix means national; otherwise
  both readings (national and international) are weighed with
  :func:`phonenumbers.is_possible_number_with_reason` - a *length* check, deliberately not
  ``is_valid_number``, since operators' ranges may be newer than the metadata.  If exactly one
  reading is possible it is taken; if both are, the national one (the operator's own numbers).

Results are cached (:func:`functools.lru_cache`) because this runs for every message.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal, Protocol

import phonenumbers
from phonenumbers import PhoneNumber, ValidationResult

from gateway.errors import InvalidInput

NumberForm = Literal["unknown", "international", "national"]

MAX_E164_DIGITS = 15
"""ITU-T E.164 §6: at most 15 digits including the country code."""

MAX_INPUT_CHARS = 40
"""Longest text accepted before any work (rule 5: every input bounded)."""

_SEPARATORS = str.maketrans("", "", " -.()")
_COUNTRY_CODES = frozenset(str(code) for code in phonenumbers.supported_calling_codes())
_FORMS = ("unknown", "international", "national")


class NumberingPlan(Protocol):
    """The numbering facts of the operator's own country (the config's Numbering section)."""

    @property
    def country_code(self) -> str:
        """Country calling code, digits only: ``"964"``."""
        ...

    @property
    def national_prefix(self) -> str:
        """Trunk prefix dialled before national numbers (``"0"``); empty if there is none."""
        ...

    @property
    def international_prefix(self) -> str:
        """Prefix dialled before international numbers (``"00"``); empty if none is used."""
        ...


@dataclass(frozen=True, slots=True)
class Plan:
    """A plain :class:`NumberingPlan`, for tests and callers without a config."""

    country_code: str
    national_prefix: str = "0"
    international_prefix: str = "00"


class _Refused(Exception):
    """Internal: why a number is refused; becomes InvalidInput with the caller's field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalise(
    number: str,
    plan: NumberingPlan,
    *,
    form: NumberForm = "unknown",
    field: str = "number",
) -> str:
    """E.164 digits without '+' for ``number`` read under ``plan``; InvalidInput if impossible.

    Spaces, '-', '.', '(' and ')' are ignored.  See the module docstring for the rules.
    """
    if not isinstance(number, str):
        raise InvalidInput(field, f"{number!r} is not a phone number: give it as text")
    if form not in _FORMS:
        raise InvalidInput("form", f"{form!r} is not a number form: use one of {', '.join(_FORMS)}")
    try:
        return _normalise(
            number, plan.country_code, plan.national_prefix, plan.international_prefix, form
        )
    except _Refused as refused:
        raise InvalidInput(field, refused.reason) from None


def format_international(e164: str, field: str = "number") -> str:
    """The stored digits as they are shown and dialled abroad: ``+964111222333``."""
    if not (e164.isascii() and e164.isdigit() and len(e164) <= MAX_E164_DIGITS):
        raise InvalidInput(field, f"{e164!r} is not E.164 digits (1 to 15 digits, no '+')")
    return "+" + e164


@functools.lru_cache(maxsize=65536)
def _normalise(
    number: str, country_code: str, national_prefix: str, international_prefix: str, form: str
) -> str:
    if len(number) > MAX_INPUT_CHARS:
        raise _Refused(
            f"{number[:MAX_INPUT_CHARS]!r}... is too long for a phone number "
            f"({len(number)} characters)"
        )
    text = number.translate(_SEPARATORS)
    international = text.startswith("+")
    body = text[1:] if international else text
    if "+" in body:
        raise _Refused(f"{number!r} is not a phone number: '+' may only come first")
    if not body:
        raise _Refused(f"{number!r} is not a phone number: it has no digits")
    if not (body.isascii() and body.isdigit()):
        after = f"+ or {international_prefix}" if international_prefix else "+"
        raise _Refused(f"{number!r} is not a phone number: only digits, optionally after {after}")

    if not international:
        if form == "international":
            # No country code starts with 0, so an international prefix that does is unambiguous.
            if international_prefix.startswith("0") and body.startswith(international_prefix):
                body = body[len(international_prefix) :]
            international = True
        elif form == "unknown" and international_prefix and body.startswith(international_prefix):
            body = body[len(international_prefix) :]
            international = True
    if international:
        return _international(body, number)

    if national_prefix and body.startswith(national_prefix):
        return _national(body[len(national_prefix) :], country_code, number)
    if form == "national":
        return _national(body, country_code, number)

    # form "unknown", bare digits without a prefix: weigh both readings.
    if len(body) > MAX_E164_DIGITS:
        raise _Refused(_too_many_digits(number, len(body)))
    as_national = country_code + body
    if _possibility(as_national) == ValidationResult.IS_POSSIBLE:
        return as_national
    if _possibility(body) == ValidationResult.IS_POSSIBLE:
        return body
    raise _Refused(
        f"{number!r} is not a possible number for country code {country_code} "
        "nor in international form"
    )


def _international(digits: str, original: str) -> str:
    if not digits:
        raise _Refused(f"{original!r} is not a phone number: it has no digits")
    if len(digits) > MAX_E164_DIGITS:
        raise _Refused(_too_many_digits(original, len(digits)))
    result = _possibility(digits)
    if result == ValidationResult.IS_POSSIBLE:
        return digits
    if result == ValidationResult.INVALID_COUNTRY_CODE:
        raise _Refused(f"{original!r} does not start with a known country calling code")
    cc = _country_code(digits)
    raise _Refused(f"{original!r} {_LENGTH_PROBLEM[result]} for country code {cc}")


def _national(digits: str, country_code: str, original: str) -> str:
    if not digits:
        raise _Refused(f"{original!r} is not a phone number: it has no digits")
    e164 = country_code + digits
    if len(e164) > MAX_E164_DIGITS:
        raise _Refused(_too_many_digits(original, len(e164)))
    result = _possibility(e164)
    if result == ValidationResult.IS_POSSIBLE:
        return e164
    if result == ValidationResult.INVALID_COUNTRY_CODE:
        raise _Refused(
            f"{original!r} cannot be read as national: the configured country code "
            f"{country_code!r} is not a known country calling code"
        )
    raise _Refused(
        f"{original!r} is not a possible number for country code {country_code} "
        f"({_LENGTH_PROBLEM[result]})"
    )


_LENGTH_PROBLEM = {
    ValidationResult.TOO_SHORT: "is too short",
    ValidationResult.TOO_LONG: "is too long",
    ValidationResult.INVALID_LENGTH: "does not have a possible length",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "is a local number without its area code",
}


def _too_many_digits(original: str, count: int) -> str:
    return f"{original!r} has {count} digits: E.164 numbers have at most {MAX_E164_DIGITS}"


def _country_code(digits: str) -> str | None:
    """The country calling code heading ``digits`` (codes are prefix-free), if known."""
    for length in (1, 2, 3):
        if digits[:length] in _COUNTRY_CODES:
            return digits[:length]
    return None


def _possibility(digits: str) -> int:
    """libphonenumber's length verdict (a ValidationResult) for E.164 ``digits``.

    Only ``IS_POSSIBLE`` counts as possible: ``IS_POSSIBLE_LOCAL_ONLY`` numbers lack their
    area code and cannot be reached in E.164 form. The verdict depends only on the country
    code and the length of the national significant number, so it is asked once per pair.
    """
    cc = _country_code(digits)
    if cc is None:
        return ValidationResult.INVALID_COUNTRY_CODE
    rest = len(digits) - len(cc)
    if not rest:
        return ValidationResult.TOO_SHORT
    return _length_verdict(cc, rest)


@functools.lru_cache(maxsize=4096)
def _length_verdict(cc: str, length: int) -> int:
    number = PhoneNumber(country_code=int(cc), national_number=int("1" * length))
    return phonenumbers.is_possible_number_with_reason(number)
