# Money as Decimal: price parsing, ISO 4217 currency codes and minor units, the one rounding rule.
"""Prices are :class:`~decimal.Decimal`, never float (docs/architecture.md rule 9).

* :func:`parse_price` reads a price as written by an operator (text, int or Decimal);
* :func:`parse_currency` / :func:`minor_units` know the active ISO 4217 currencies;
* :func:`quantize` is the single place where amounts are rounded: ``ROUNDING_RULE``.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from gateway.errors import InvalidInput

ROUNDING_RULE = "half-up to the currency's minor unit"

MAX_PRICE_DECIMALS = 6
MAX_PRICE_INTEGER_DIGITS = 15
"""Keeps every price (15 + 6 = 21 digits) exact within Decimal's default 28-digit precision."""

_PLAIN_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_CURRENCY_CODE = re.compile(r"[A-Za-z]{3}")

# ISO 4217 List One, active codes with their minor unit (number of decimal places).  Funds and
# units without a minor unit (XAU, XAG, XPD, XPT, XDR, XSU, XUA, XBA-XBD, XTS, XXX) are left out:
# nothing is priced in them.  ANG, CUC, SLL and ZWL are still listed while their replacements
# (XCG, -, SLE, ZWG) take over.
MINOR_UNITS: dict[str, int] = {
    "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "ANG": 2, "AOA": 2, "ARS": 2, "AUD": 2,
    "AWG": 2, "AZN": 2, "BAM": 2, "BBD": 2, "BDT": 2, "BGN": 2, "BHD": 3, "BIF": 0,
    "BMD": 2, "BND": 2, "BOB": 2, "BOV": 2, "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2,
    "BYN": 2, "BZD": 2, "CAD": 2, "CDF": 2, "CHE": 2, "CHF": 2, "CHW": 2, "CLF": 4,
    "CLP": 0, "CNY": 2, "COP": 2, "COU": 2, "CRC": 2, "CUC": 2, "CUP": 2, "CVE": 2,
    "CZK": 2, "DJF": 0, "DKK": 2, "DOP": 2, "DZD": 2, "EGP": 2, "ERN": 2, "ETB": 2,
    "EUR": 2, "FJD": 2, "FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2,
    "GNF": 0, "GTQ": 2, "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2, "IDR": 2,
    "ILS": 2, "INR": 2, "IQD": 3, "IRR": 2, "ISK": 0, "JMD": 2, "JOD": 3, "JPY": 0,
    "KES": 2, "KGS": 2, "KHR": 2, "KMF": 0, "KPW": 2, "KRW": 0, "KWD": 3, "KYD": 2,
    "KZT": 2, "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2, "LYD": 3, "MAD": 2,
    "MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2,
    "MVR": 2, "MWK": 2, "MXN": 2, "MXV": 2, "MYR": 2, "MZN": 2, "NAD": 2, "NGN": 2,
    "NIO": 2, "NOK": 2, "NPR": 2, "NZD": 2, "OMR": 3, "PAB": 2, "PEN": 2, "PGK": 2,
    "PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2, "RON": 2, "RSD": 2, "RUB": 2,
    "RWF": 0, "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2, "SHP": 2,
    "SLE": 2, "SLL": 2, "SOS": 2, "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2,
    "SZL": 2, "THB": 2, "TJS": 2, "TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2,
    "TWD": 2, "TZS": 2, "UAH": 2, "UGX": 0, "USD": 2, "USN": 2, "UYI": 0, "UYU": 2,
    "UYW": 4, "UZS": 2, "VED": 2, "VES": 2, "VND": 0, "VUV": 0, "WST": 2, "XAF": 0,
    "XCD": 2, "XCG": 2, "XOF": 0, "XPF": 0, "YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,
    "ZWL": 2,
}  # fmt: skip

# ISO 4217 codes that have no minor unit ("N.A."): named in the refusal rather than "unknown".
NO_MINOR_UNIT = frozenset(
    {"XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"}
)


def parse_price(text: str | int | Decimal, field: str = "price") -> Decimal:
    """The price as written (``"0.01"`` -> ``Decimal("0.01")``): a plain number >= 0, <= 6 places.

    Floats are refused: a binary float cannot hold most decimal prices exactly.
    """
    if isinstance(text, bool) or not isinstance(text, str | int | Decimal):
        if isinstance(text, float):
            raise InvalidInput(
                field,
                f"{text!r} was given as a binary floating-point number, which cannot hold "
                f"prices exactly: write it as text (in YAML, quote it: '{text!r}')",
            )
        raise InvalidInput(field, f"{text!r} is not a number")
    if isinstance(text, int):
        return _checked(Decimal(text), str(text), field)
    if isinstance(text, Decimal):
        if not text.is_finite():
            raise InvalidInput(field, f"'{text}' is not a finite number")
        value = _checked(text.copy_abs() if text == 0 else text, str(text), field)
        # An exponent form given as a Decimal (Decimal("1E+3")) is written out: 1000.
        return value.quantize(Decimal(1)) if _exponent(value) > 0 else value
    written = text.strip()
    if not written:
        raise InvalidInput(field, f"{text!r} is empty: give a plain decimal number such as 0.0125")
    if _PLAIN_NUMBER.fullmatch(written):
        return _checked(Decimal(written), written, field)
    # Not plain: name what is wrong with it.
    try:
        value = Decimal(written)
    except InvalidOperation:
        raise InvalidInput(field, f"{text!r} is not a number") from None
    if not value.is_finite():
        raise InvalidInput(field, f"{text!r} is not a finite number")
    if written.startswith("-"):
        raise InvalidInput(field, f"{text!r} is negative: a price is 0 or more")
    if "e" in written.lower():
        raise InvalidInput(
            field, f"{text!r} is written with an exponent: write the plain digits, e.g. 1000"
        )
    raise InvalidInput(
        field, f"{text!r} is not a plain decimal number: digits with an optional '.', e.g. 0.0125"
    )


def _checked(value: Decimal, written: str, field: str) -> Decimal:
    if value < 0:
        raise InvalidInput(field, f"'{written}' is negative: a price is 0 or more")
    exponent = _exponent(value)
    if -exponent > MAX_PRICE_DECIMALS:
        raise InvalidInput(
            field,
            f"'{written}' has {-exponent} decimal places: a price has at most {MAX_PRICE_DECIMALS}",
        )
    if value.adjusted() >= MAX_PRICE_INTEGER_DIGITS:
        raise InvalidInput(
            field,
            f"'{written}' is too large: a price has at most {MAX_PRICE_INTEGER_DIGITS} digits "
            "before the decimal point",
        )
    return value


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):  # 'n', 'N' or 'F': callers pass finite values only
        raise ValueError(f"{value} is not finite")
    return exponent


def parse_currency(text: str, field: str = "currency") -> str:
    """The ISO 4217 alphabetic code for ``text`` (any case), upper-case; it must be known."""
    if not isinstance(text, str) or not _CURRENCY_CODE.fullmatch(text.strip()):
        raise InvalidInput(
            field, f"{text!r} is not an ISO 4217 currency code: three letters, e.g. USD or IQD"
        )
    code = text.strip().upper()
    if code in NO_MINOR_UNIT:
        raise InvalidInput(
            field,
            f"{text!r} is an ISO 4217 unit without a minor unit (metal, fund or test code): "
            "prices need a currency such as USD",
        )
    if code not in MINOR_UNITS:
        raise InvalidInput(field, f"{text!r} is not a known ISO 4217 currency code")
    return code


def minor_units(currency: str) -> int:
    """Decimal places of the currency's minor unit (USD 2, IQD 3, JPY 0)."""
    return MINOR_UNITS[parse_currency(currency)]


def quantize(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded by ``ROUNDING_RULE``: half-up to the currency's minor unit.

    Half-up is Decimal's ROUND_HALF_UP: a tie goes away from zero (0.125 -> 0.13,
    -0.125 -> -0.13).
    """
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)
