# Names a tariff prefix for people ("Iraq - mobile (Asiacell)") from phonenumbers' data.
"""A prefix is not a number: it stands for every number that starts with it.

``name(prefix)`` says only what holds for all the numbers it samples under the prefix:

* the country, from the country code (a code shared by several countries, such as +1 or
  +44, is named only when every valid sampled number is of the same country);
* the number type (mobile, fixed line, toll-free ...) and the network the range was allocated
  to (phonenumbers' carrier data; number portability may move a single number) or, for
  fixed lines, the area (its geocoder), when every sampled branch of the prefix has valid
  numbers and they all agree.

The samples: the prefix extended by every two-digit continuation, each filled with three
digit patterns to every possible length of the country's numbers. Anything the samples do
not agree on is left out; a prefix without a known country code has no name (``None``).
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType

LANG = "en"
_FILLERS = ("0", "5", "9")
_TYPES = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "fixed line",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed line or mobile",
    PhoneNumberType.TOLL_FREE: "toll-free",
    PhoneNumberType.PREMIUM_RATE: "premium rate",
    PhoneNumberType.SHARED_COST: "shared cost",
    PhoneNumberType.VOIP: "VoIP",
    PhoneNumberType.PERSONAL_NUMBER: "personal number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "UAN",
    PhoneNumberType.VOICEMAIL: "voicemail",
}
MAX_PREFIX = 15  # E.164: at most 15 digits


def _country_code(prefix: str) -> int | None:
    for size in (1, 2, 3):
        if len(prefix) >= size and int(prefix[:size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return int(prefix[:size])
    return None


def _lengths(regions: list[str]) -> list[int]:
    found: set[int] = set()
    for region in regions:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if meta is not None and meta.general_desc is not None:
            found.update(meta.general_desc.possible_length or ())
    return sorted(found)


def _same(values: list[str | None]) -> str | None:
    """The one value every sample gave, or None when they differ or give nothing."""
    distinct = set(values)
    if len(distinct) == 1:
        return distinct.pop() or None
    return None


@lru_cache(maxsize=4096)
def name(prefix: str | None) -> str | None:
    """``Iraq - mobile (Asiacell)`` for 96477, ``Iraq`` for 964, None when nothing is sure."""
    if not prefix or not prefix.isdigit() or len(prefix) > MAX_PREFIX:
        return None
    # loaded on first use: the geocoder's tables take about a second to import
    from phonenumbers import carrier, geocoder

    cc = _country_code(prefix)
    if cc is None:
        return None
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[cc]
    if list(regions) == ["001"]:
        return None  # non-geographic codes (+800, +882 ...): no country to name
    national = prefix[len(str(cc)) :]
    lengths = [n for n in _lengths(list(regions)) if n > len(national)]
    if not lengths:
        return None
    samples: list[phonenumbers.PhoneNumber] = []
    types: list[str | None] = []
    every_branch_valid = True
    for branch in range(100):
        start = national + f"{branch:02d}"
        valid = 0
        for filler in _FILLERS:
            for length in lengths:
                digits = (start + filler * length)[:length]
                number = phonenumbers.PhoneNumber(
                    country_code=cc,
                    national_number=int(digits),
                    italian_leading_zero=digits.startswith("0") or None,
                    number_of_leading_zeros=(len(digits) - len(digits.lstrip("0"))) or None,
                )
                kind = phonenumbers.number_type(number)  # UNKNOWN: not a valid number
                if kind != PhoneNumberType.UNKNOWN:
                    valid += 1
                    samples.append(number)
                    types.append(_TYPES.get(kind))
        every_branch_valid = every_branch_valid and valid > 0
    if len(regions) == 1:  # the code alone names the country
        country = geocoder.country_name_for_number(phonenumbers.PhoneNumber(country_code=cc), LANG)
    elif _same([phonenumbers.region_code_for_number(n) for n in samples]):
        country = geocoder.country_name_for_number(samples[0], LANG)
    else:
        country = None  # a code several countries share, and the samples do not tell which
    if not country:
        return None
    if not samples or not every_branch_valid:
        return country
    kind = _same(types)
    if kind is None:
        return country
    network = _same([carrier.name_for_valid_number(n, LANG) for n in samples])
    if network is None:
        area = _same([geocoder.description_for_valid_number(n, LANG) for n in samples])
        network = area if area != country else None
    return f"{country} - {kind}" + (f" ({network})" if network else "")
