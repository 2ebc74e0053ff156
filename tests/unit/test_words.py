# Counts in words (singular for one) and the unrated lines' prefixes, without a store.
from __future__ import annotations

from datetime import date
from decimal import Decimal

from billing.fees import Fee, Tier, charges
from billing.settlement import MAX_UNRATED_LINES, unrated_prefixes
from gateway.retention import Purged
from gateway.words import count, plural


def test_one_is_singular_everything_else_plural():
    assert [count(n, "CDR") for n in (0, 1, 2, 1500)] == ["0 CDRs", "1 CDR", "2 CDRs", "1,500 CDRs"]
    assert count(1, "billable message") == "1 billable message"
    assert (plural(1, "is"), plural(2, "is"), plural(3, "entry")) == ("is", "are", "entries")


def test_purge_and_fee_wording():
    assert str(Purged(1, 1, 1)) == "1 message text erased, 1 message record and 1 CDR deleted"
    assert str(Purged(0, 2, 3)) == "0 message texts erased, 2 message records and 3 CDRs deleted"
    tiers = (Tier(0, Decimal(5)),)
    band = Fee(1, "band", "volume-fee", "message", "USD", tiers, date(2026, 10, 1), None)
    assert charges(band, 1)[0].description == "band (volume 1 message, band from 0)"


def test_unrated_prefixes_are_cut_shorter_only_when_too_many():
    few = {"33612": [2, 2], "33698": [3, 6], "44770": [4, 4]}
    assert unrated_prefixes(few) == [("33612", 2, 2), ("33698", 3, 6), ("44770", 4, 4)]
    many = {f"3{i:04d}": [1, 1] for i in range(MAX_UNRATED_LINES + 1)}  # 30000 .. 30050
    assert unrated_prefixes(many) == [("3000", 10, 10), ("3001", 10, 10), ("3002", 10, 10),
                                      ("3003", 10, 10), ("3004", 10, 10), ("3005", 1, 1)]  # fmt: skip
    # never below 3 digits (a country code), however many there are
    spread = {f"{i:03d}99": [1, 1] for i in range(200)}
    assert len(unrated_prefixes(spread)) == 200
    assert unrated_prefixes({"": [4, 5]}) == [("", 4, 5)]  # a settlement built without keys
