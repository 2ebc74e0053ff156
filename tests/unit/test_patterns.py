# Tests of routing/patterns.py: pattern syntax, matching, specificity order, the trie lookup.
"""The trie lookup must agree with a brute-force filter and sort."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import InvalidInput
from routing.patterns import (
    ACCEPTED_FORM,
    PatternTable,
    matches,
    normalise_pattern,
    specificity,
)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("222%", "222%"),
        ("+222%", "222%"),
        ("%", "%"),
        ("+%", "%"),
        ("964111222333", "964111222333"),
        ("96477_______", "96477_______"),
        ("_%", "_%"),
        ("1" * 15, "1" * 15),
        ("1" * 15 + "%", "1" * 15 + "%"),
    ],
)
def test_accepted(text: str, stored: str) -> None:
    assert normalise_pattern(text) == stored


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", f"'' is empty: accepted form is {ACCEPTED_FORM}"),
        ("+", f"'+' has no digit positions: accepted form is {ACCEPTED_FORM}"),
        ("22a%", f"'22a%' contains 'a'; accepted form is {ACCEPTED_FORM}"),
        ("222 %", f"'222 %' contains ' '; accepted form is {ACCEPTED_FORM}"),
        ("2+22", f"'2+22' contains '+'; accepted form is {ACCEPTED_FORM}"),
        ("2*", f"'2*' contains '*'; accepted form is {ACCEPTED_FORM}"),
        ("2%2", f"'2%2': '%' may only come last; accepted form is {ACCEPTED_FORM}"),
        ("%2", f"'%2': '%' may only come last; accepted form is {ACCEPTED_FORM}"),
        ("22%%", f"'22%%': '%%' is not allowed; accepted form is {ACCEPTED_FORM}"),
        ("%%", f"'%%': '%%' is not allowed; accepted form is {ACCEPTED_FORM}"),
        (
            "1" * 16,
            f"'{'1' * 16}' has 16 digit positions: at most 15 (the longest E.164 number)",
        ),
        (
            "_" * 16 + "%",
            f"'{'_' * 16}%' has 16 digit positions: at most 15 (the longest E.164 number)",
        ),
    ],
)
def test_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise_pattern(text)
    assert caught.value.field == "pattern"
    assert caught.value.reason == reason


def test_caller_names_the_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise_pattern("abc", field="routes[3].pattern")
    assert caught.value.field == "routes[3].pattern"


def test_accepted_form_is_explained() -> None:
    assert "_" in ACCEPTED_FORM and "%" in ACCEPTED_FORM and "222%" in ACCEPTED_FORM


@pytest.mark.parametrize(
    ("pattern", "number", "expected"),
    [
        ("%", "964111222333", True),
        ("%", "", True),
        ("222%", "22233445566", True),
        ("222%", "222", True),
        ("222%", "22", False),
        ("222%", "96422", False),
        ("964111222333", "964111222333", True),
        ("964111222333", "9641112223334", False),
        ("964111222333", "96411122233", False),
        ("9647_", "96475", True),
        ("9647_", "964751", False),
        ("9647_%", "964751", True),
        ("9647_%", "9647", False),
        ("_", "5", True),
        ("_", "", False),
    ],
)
def test_matches(pattern: str, number: str, expected: bool) -> None:
    assert matches(pattern, number) is expected


def test_specificity_order() -> None:
    patterns = ["%", "9%", "96%", "9_%", "964", "96_", "9_4", "__4", "964%", "9641%"]
    ordered = sorted(patterns, key=specificity)
    assert ordered == ["964", "96_", "9_4", "__4", "9641%", "964%", "96%", "9_%", "9%", "%"]


def test_lookup_order_specificity_then_priority_then_insertion() -> None:
    table = PatternTable(
        [
            ("%", 0, "default"),
            ("222%", 5, "mauritania-b"),
            ("222%", 1, "mauritania-a"),
            ("22233445566", 9, "exact"),
            ("2223344556_", 0, "range"),
            ("+222%", 5, "mauritania-c"),
        ]
    )
    assert len(table) == 6
    assert table.lookup("22233445566") == [
        "exact",
        "range",
        "mauritania-a",
        "mauritania-b",
        "mauritania-c",
        "default",
    ]
    assert table.lookup("964111222333") == ["default"]
    assert PatternTable([("222%", 0, "x")]).lookup("964111222333") == []


def test_bad_pattern_in_table_is_located() -> None:
    with pytest.raises(InvalidInput) as caught:
        PatternTable([("222%", 0, "a"), ("22a", 0, "b")])
    assert caught.value.field == "entries[1].pattern"
    assert caught.value.reason.startswith("'22a' contains 'a'")


# Small alphabets so that random patterns and numbers actually match one another.
_patterns = st.builds(
    lambda body, wildcard: body + ("%" if wildcard else ""),
    st.text("12_", max_size=5),
    st.booleans(),
).filter(bool)
_entries = st.lists(st.tuples(_patterns, st.integers(0, 3), st.integers()), max_size=30)


@given(_entries, st.lists(st.text("123", max_size=6), min_size=1, max_size=10))
def test_lookup_equals_brute_force(entries: list[tuple[str, int, int]], numbers: list[str]) -> None:
    tagged = [(pattern, priority, (index, value)) for index, (pattern, priority, value) in
              enumerate(entries)]  # fmt: skip
    table = PatternTable(tagged)
    for number in numbers:
        expected = sorted(
            ((specificity(p), prio, tag) for p, prio, tag in tagged if matches(p, number)),
            key=lambda item: (item[0], item[1], item[2][0]),
        )
        assert table.lookup(number) == [tag for _, _, tag in expected]
