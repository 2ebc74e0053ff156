# Tests of billing/money.py: price parsing, ISO 4217 currencies, the one rounding rule.
"""Money is Decimal as written; every refusal says what is wrong with the value."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.money import (
    MINOR_UNITS,
    NO_MINOR_UNIT,
    ROUNDING_RULE,
    minor_units,
    parse_currency,
    parse_price,
    quantize,
)
from gateway.errors import InvalidInput


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [
        ("0.01", "0.01"),
        ("0", "0"),
        ("0.000000", "0.000000"),
        ("12", "12"),
        (" 0.0125 ", "0.0125"),
        ("0.123456", "0.123456"),
        ("999999999999999.999999", "999999999999999.999999"),
        (5, "5"),
        (0, "0"),
        (Decimal("0.01"), "0.01"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-0"), "0"),
    ],
)
def test_price_accepted_as_written(given_value: str | int | Decimal, expected: str) -> None:
    value = parse_price(given_value)
    assert isinstance(value, Decimal)
    assert str(value) == expected


@pytest.mark.parametrize(
    ("given_value", "reason"),
    [
        ("", "'' is empty: give a plain decimal number such as 0.0125"),
        ("   ", "'   ' is empty: give a plain decimal number such as 0.0125"),
        ("abc", "'abc' is not a number"),
        ("1,5", "'1,5' is not a number"),
        ("1 000", "'1 000' is not a number"),
        ("NaN", "'NaN' is not a finite number"),
        ("Infinity", "'Infinity' is not a finite number"),
        ("-inf", "'-inf' is not a finite number"),
        ("1e3", "'1e3' is written with an exponent: write the plain digits, e.g. 1000"),
        ("1E-2", "'1E-2' is written with an exponent: write the plain digits, e.g. 1000"),
        ("-1", "'-1' is negative: a price is 0 or more"),
        ("-0.01", "'-0.01' is negative: a price is 0 or more"),
        ("0.1234567", "'0.1234567' has 7 decimal places: a price has at most 6"),
        (
            "1000000000000000",
            "'1000000000000000' is too large: a price has at most 15 digits before the decimal "
            "point",
        ),
        ("+1", "'+1' is not a plain decimal number: digits with an optional '.', e.g. 0.0125"),
        (".5", "'.5' is not a plain decimal number: digits with an optional '.', e.g. 0.0125"),
        ("5.", "'5.' is not a plain decimal number: digits with an optional '.', e.g. 0.0125"),
        (
            "1_000",
            "'1_000' is not a plain decimal number: digits with an optional '.', e.g. 0.0125",
        ),
        (
            0.01,
            "0.01 was given as a binary floating-point number, which cannot hold prices exactly: "
            "write it as text (in YAML, quote it: '0.01')",
        ),
        (True, "True is not a number"),
        (None, "None is not a number"),
        (-3, "'-3' is negative: a price is 0 or more"),
        (Decimal("NaN"), "'NaN' is not a finite number"),
        (Decimal("-0.5"), "'-0.5' is negative: a price is 0 or more"),
        (Decimal("1E-7"), "'1E-7' has 7 decimal places: a price has at most 6"),
        (
            Decimal("1E+20"),
            "'1E+20' is too large: a price has at most 15 digits before the decimal point",
        ),
    ],
)
def test_price_refused(given_value: object, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_price(given_value)  # type: ignore[arg-type]
    assert caught.value.field == "price"
    assert caught.value.reason == reason


def test_price_field_named_by_caller() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_price("abc", field="tariffs[2].rate")
    assert str(caught.value) == "tariffs[2].rate: 'abc' is not a number"


@given(st.decimals(min_value=0, max_value=10**15 - 1, places=6, allow_nan=False))
def test_price_text_round_trip(value: Decimal) -> None:
    text = f"{value:f}"
    assert parse_price(text) == value
    assert str(parse_price(text)) == text


@pytest.mark.parametrize(
    ("text", "code"), [("usd", "USD"), ("EUR", "EUR"), ("Iqd", "IQD"), (" jpy ", "JPY")]
)
def test_currency_accepted(text: str, code: str) -> None:
    assert parse_currency(text) == code


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "'' is not an ISO 4217 currency code: three letters, e.g. USD or IQD"),
        ("US", "'US' is not an ISO 4217 currency code: three letters, e.g. USD or IQD"),
        ("USDX", "'USDX' is not an ISO 4217 currency code: three letters, e.g. USD or IQD"),
        ("U$D", "'U$D' is not an ISO 4217 currency code: three letters, e.g. USD or IQD"),
        ("840", "'840' is not an ISO 4217 currency code: three letters, e.g. USD or IQD"),
        ("XYZ", "'XYZ' is not a known ISO 4217 currency code"),
        ("HRK", "'HRK' is not a known ISO 4217 currency code"),  # withdrawn 2023
        (
            "xau",
            "'xau' is an ISO 4217 unit without a minor unit (metal, fund or test code): "
            "prices need a currency such as USD",
        ),
    ],
)
def test_currency_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_currency(text)
    assert caught.value.field == "currency"
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("code", "units"),
    [
        ("USD", 2), ("EUR", 2), ("GBP", 2), ("IQD", 3), ("JPY", 0), ("KWD", 3), ("BHD", 3),
        ("OMR", 3), ("TND", 3), ("JOD", 3), ("LYD", 3), ("CLF", 4), ("UYW", 4), ("KRW", 0),
        ("ISK", 0), ("UGX", 0), ("VND", 0), ("XOF", 0), ("XAF", 0), ("CLP", 0), ("PYG", 0),
        ("MRU", 2), ("IDR", 2), ("HUF", 2), ("SAR", 2), ("AED", 2), ("MGA", 2),
    ],
)  # fmt: skip
def test_minor_units(code: str, units: int) -> None:
    assert minor_units(code) == units
    assert minor_units(code.lower()) == units


def test_table_shape() -> None:
    assert len(MINOR_UNITS) >= 150
    assert all(len(code) == 3 and code.isalpha() and code.isupper() for code in MINOR_UNITS)
    assert set(MINOR_UNITS.values()) <= {0, 2, 3, 4}
    assert not NO_MINOR_UNIT & MINOR_UNITS.keys()


def test_minor_units_of_unknown_currency() -> None:
    with pytest.raises(InvalidInput) as caught:
        minor_units("ABC")
    assert caught.value.reason == "'ABC' is not a known ISO 4217 currency code"


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("0.125", "USD", "0.13"),
        ("0.124999", "USD", "0.12"),
        ("0.135", "USD", "0.14"),
        ("-0.125", "USD", "-0.13"),
        ("1.0005", "IQD", "1.001"),
        ("1.0004", "IQD", "1.000"),
        ("2.5", "JPY", "3"),
        ("3.5", "JPY", "4"),
        ("0.00005", "CLF", "0.0001"),
        ("7", "EUR", "7.00"),
    ],
)
def test_quantize_half_up(amount: str, currency: str, expected: str) -> None:
    result = quantize(Decimal(amount), currency)
    assert str(result) == expected


def test_rounding_rule_is_named() -> None:
    assert ROUNDING_RULE == "half-up to the currency's minor unit"


@given(
    st.decimals(min_value=-(10**12), max_value=10**12, places=6, allow_nan=False),
    st.sampled_from(sorted(MINOR_UNITS)),
)
def test_quantize_is_within_half_a_minor_unit(amount: Decimal, currency: str) -> None:
    result = quantize(amount, currency)
    step = Decimal(1).scaleb(-MINOR_UNITS[currency])
    assert result.as_tuple().exponent == -MINOR_UNITS[currency]
    assert abs(result - amount) <= step / 2
    assert quantize(result, currency) == result
