# Tests of routing/numbers.py: E.164 normalisation under a numbering plan.
"""Every accepted form, every refusal with its reason, and the cache."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import InvalidInput
from routing import numbers
from routing.numbers import NumberingPlan, Plan, format_international, normalise

IRAQ = Plan(country_code="964", national_prefix="0", international_prefix="00")


def test_plan_satisfies_protocol() -> None:
    plan: NumberingPlan = IRAQ
    assert (plan.country_code, plan.national_prefix, plan.international_prefix) == (
        "964",
        "0",
        "00",
    )


@pytest.mark.parametrize(
    "written",
    [
        "111222333",
        "0111222333",
        "+964111222333",
        "00964111222333",
        "964111222333",
        "+964 111 222 333",
        "(0)111-222.333",
        "+964-111-222-333",
    ],
)
def test_iraqi_number_in_every_form(written: str) -> None:
    assert normalise(written, IRAQ) == "964111222333"


def test_foreign_number_with_plus_and_spaces() -> None:
    # Mauritania (+222) has 8-digit national numbers.
    assert normalise("+222 3344 5566", IRAQ) == "22233445566"
    assert normalise("0022233445566", IRAQ) == "22233445566"
    assert phonenumbers.is_possible_number(phonenumbers.parse("+22233445566"))


def test_unknown_form_bare_foreign_number_is_international() -> None:
    # Not possible as an Iraqi national number (too long), possible as +222.
    assert normalise("22233445566", IRAQ) == "22233445566"


def test_unknown_form_prefers_national_when_both_possible() -> None:
    # "2025550123" is possible as +20 25550123 (Egypt) and as a 10-digit Iraqi national number.
    assert phonenumbers.is_possible_number(phonenumbers.parse("+2025550123"))
    assert phonenumbers.is_possible_number(phonenumbers.parse("+9642025550123"))
    assert normalise("2025550123", IRAQ) == "9642025550123"
    assert normalise("+2025550123", IRAQ) == "2025550123"


def test_explicit_forms() -> None:
    assert normalise("964111222333", IRAQ, form="international") == "964111222333"
    assert normalise("+964111222333", IRAQ, form="international") == "964111222333"
    assert normalise("00964111222333", IRAQ, form="international") == "964111222333"
    assert normalise("22233445566", IRAQ, form="international") == "22233445566"
    assert normalise("111222333", IRAQ, form="national") == "964111222333"
    assert normalise("0111222333", IRAQ, form="national") == "964111222333"
    # '+' is explicit whatever the form says.
    assert normalise("+22233445566", IRAQ, form="national") == "22233445566"


def test_national_form_does_not_guess_international() -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise("22233445566", IRAQ, form="national")
    assert caught.value.reason == (
        "'22233445566' is not a possible number for country code 964 (is too long)"
    )


def test_plan_without_prefixes() -> None:
    plan = Plan(country_code="222", national_prefix="", international_prefix="")
    assert normalise("33445566", plan) == "22233445566"
    assert normalise("+964111222333", plan) == "964111222333"
    with pytest.raises(InvalidInput) as caught:
        normalise("abc", plan)
    assert caught.value.reason == "'abc' is not a phone number: only digits, optionally after +"


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("", "'' is not a phone number: it has no digits"),
        ("  - ", "'  - ' is not a phone number: it has no digits"),
        ("+", "'+' is not a phone number: it has no digits"),
        ("12ab", "'12ab' is not a phone number: only digits, optionally after + or 00"),
        (
            "０１１１２２２３３３",
            "'０１１１２２２３３３' is not a phone number: only digits, optionally after + or 00",
        ),
        ("12+3", "'12+3' is not a phone number: '+' may only come first"),
        ("++964111222333", "'++964111222333' is not a phone number: '+' may only come first"),
        ("1234567890123456", "'1234567890123456' has 16 digits: E.164 numbers have at most 15"),
        ("+9641112223334445", "'+9641112223334445' has 16 digits: E.164 numbers have at most 15"),
        ("+999123456", "'+999123456' does not start with a known country calling code"),
        ("00999123456", "'00999123456' does not start with a known country calling code"),
        ("+9641", "'+9641' is too short for country code 964"),
        ("+96411122233344", "'+96411122233344' is too long for country code 964"),
        ("01", "'01' is not a possible number for country code 964 (is too short)"),
        (
            "1234567",
            "'1234567' is not a possible number for country code 964 nor in international form",
        ),
        ("0", "'0' is not a phone number: it has no digits"),
    ],
)
def test_refusals(written: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise(written, IRAQ)
    assert caught.value.field == "number"
    assert caught.value.reason == reason


def test_local_only_length_is_refused() -> None:
    # Iraq: 7 digits is a local number without area code (IS_POSSIBLE_LOCAL_ONLY).
    with pytest.raises(InvalidInput) as caught:
        normalise("+9641234567", IRAQ)
    assert caught.value.reason == (
        "'+9641234567' is a local number without its area code for country code 964"
    )


def test_too_long_input_refused_before_work() -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise("1" * 41, IRAQ)
    assert caught.value.reason == f"{'1' * 40!r}... is too long for a phone number (41 characters)"


def test_caller_names_the_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise("12ab", IRAQ, field="did")
    assert str(caught.value) == (
        "did: '12ab' is not a phone number: only digits, optionally after + or 00"
    )


def test_not_text_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise(964111222333, IRAQ)  # type: ignore[arg-type]
    assert caught.value.reason == "964111222333 is not a phone number: give it as text"


def test_unknown_configured_country_code() -> None:
    plan = Plan(country_code="999")
    with pytest.raises(InvalidInput) as caught:
        normalise("0111222333", plan)
    assert caught.value.reason == (
        "'0111222333' cannot be read as national: the configured country code '999' "
        "is not a known country calling code"
    )


def test_bad_form_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise("111222333", IRAQ, form="subscriber")  # type: ignore[arg-type]
    assert caught.value.field == "form"


def test_results_are_cached_per_plan() -> None:
    numbers._normalise.cache_clear()
    normalise("111222333", IRAQ)
    normalise("111222333", Plan("964", "0", "00"))  # equal plan, same key
    info = numbers._normalise.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    # Another plan is another key and another answer.
    assert normalise("33445566", Plan("222", "", "00")) == "22233445566"


def test_format_international() -> None:
    assert format_international("964111222333") == "+964111222333"
    with pytest.raises(InvalidInput) as caught:
        format_international("+964111222333")
    assert caught.value.reason == "'+964111222333' is not E.164 digits (1 to 15 digits, no '+')"


@given(st.sampled_from(["964", "222", "1", "44"]), st.text("0123456789", min_size=1, max_size=16))
def test_result_is_possible_e164_or_refused(cc: str, digits: str) -> None:
    plan = Plan(country_code=cc)
    for form in ("unknown", "international", "national"):
        try:
            e164 = normalise(digits, plan, form=form)  # type: ignore[arg-type]
        except InvalidInput as error:
            assert error.field == "number"
            assert repr(digits) in error.reason
            continue
        assert e164.isdigit() and len(e164) <= 15
        assert phonenumbers.is_possible_number(phonenumbers.parse("+" + e164))
        # The stored form is a fixed point of international normalisation.
        assert normalise("+" + e164, plan) == e164
        assert normalise(e164, plan, form="international") == e164
