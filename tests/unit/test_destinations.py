# Naming a tariff prefix: country, number type and network, only what every sampled number shares.
from __future__ import annotations

import pytest

from billing.destinations import name


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("96477", "Iraq - mobile (Asiacell)"),
        ("96478", "Iraq - mobile (Zain)"),
        ("96475", "Iraq - mobile (Korek)"),
        ("33612", "France - mobile (SFR)"),
        ("3906", "Italy - fixed line (Rome)"),
        # the country code alone: the country, nothing about type or network
        ("964", "Iraq"),
        ("49", "Germany"),
        # codes several countries share: named only when the prefix tells which
        ("1204", "Canada"),
        ("1876", "Jamaica"),
        ("77", "Kazakhstan"),
        ("441481", "Guernsey"),
    ],
)
def test_a_prefix_is_named_by_what_all_its_numbers_share(prefix, expected):
    assert name(prefix) == expected


@pytest.mark.parametrize(
    "prefix",
    [
        "1",  # United States, Canada and 23 more
        "44",  # United Kingdom, Guernsey, Jersey, Isle of Man
        "447",  # UK mobiles, but also Jersey's and Guernsey's
        "7",  # Russia and Kazakhstan
        "9",  # no country code yet
        "96",  # no country code yet
        "800",  # international freephone: no country
        "",
        None,
        "96477x",
        "9" * 16,
    ],
)
def test_a_prefix_that_does_not_determine_a_country_has_no_name(prefix):
    assert name(prefix) is None


def test_a_prefix_spanning_networks_or_types_names_only_the_country():
    assert name("9647") == "Iraq"  # Asiacell, Zain, Korek and unassigned ranges
    assert name("1212") == "United States"  # 212-0xx and 212-1xx are not numbers
