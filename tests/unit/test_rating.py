# Rating (billing/tariffs.py), volume fees (billing/fees.py), periods and the statement roll-up.
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.fees import Fee, Tier, charges, parse_tiers
from billing.periods import Month, parse_month
from billing.settlement import Group, build
from billing.tariffs import Rate, RateTable, rate_of
from gateway.errors import InvalidInput

UTC_ZONE = ZoneInfo("UTC")
NOV = Month(2026, 11)


def rate(tid: int, prefix: str, price: str, first: date, last: date | None = None,
         currency: str = "USD", unit: str = "message", tz: ZoneInfo = UTC_ZONE) -> Rate:  # fmt: skip
    return rate_of(tid, prefix, Decimal(price), currency, unit, first, last, tz)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- longest prefix and effective dates -------------------------------------------------------
def test_longest_prefix_in_effect_wins():
    table = RateTable([
        rate(1, "964", "0.01", date(2026, 1, 1)),
        rate(2, "9647", "0.02", date(2026, 1, 1)),
        rate(3, "96477", "0.03", date(2026, 11, 10), date(2026, 11, 20)),
    ])  # fmt: skip
    assert table.key_length == 5
    assert table.at("9647712345", at("2026-11-15 12:00")).tariff_id == 3
    assert table.at("9647712345", at("2026-11-09 23:59:59")).tariff_id == 2  # not yet
    assert table.at("9647712345", at("2026-11-21 00:00")).tariff_id == 2  # ended on the 20th
    assert table.at("9641234567", at("2026-11-15 12:00")).tariff_id == 1
    assert table.at("4412345678", at("2026-11-15 12:00")) is None
    assert table.at("964", at("2026-11-15 12:00")).tariff_id == 1


def test_a_tariff_day_runs_in_the_carriers_time_zone():
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30
    old = rate(1, "964", "0.01", date(2026, 11, 1), date(2026, 11, 14), tz=kolkata)
    new = rate(2, "964", "0.02", date(2026, 11, 15), tz=kolkata)
    table = RateTable([old, new])
    # 15 Nov 00:00 IST is 14 Nov 18:30 UTC
    assert table.at("9641", at("2026-11-14 18:29:59.999999")).tariff_id == 1
    assert table.at("9641", at("2026-11-14 18:30")).tariff_id == 2
    assert table.boundaries(*NOV.bounds(kolkata)) == [at("2026-11-14 18:30")]


prefixes = st.text(alphabet="9641", min_size=1, max_size=5)
days = st.integers(min_value=0, max_value=40)


@st.composite
def tables(draw):
    rates = []
    seen: dict[str, list[tuple[int, int | None]]] = {}
    for tid in range(1, draw(st.integers(1, 12)) + 1):
        prefix = draw(prefixes)
        first = draw(days)
        length = draw(st.one_of(st.none(), st.integers(0, 20)))
        last = None if length is None else first + length
        spans = seen.setdefault(prefix, [])
        if any(
            not ((last is not None and last < a) or (b is not None and b < first)) for a, b in spans
        ):
            continue  # provisioning refuses overlapping tariffs of one prefix
        spans.append((first, last))
        base = date(2026, 10, 25)
        rates.append(rate(tid, prefix, f"0.0{tid % 10}", base + timedelta(first),
                          None if last is None else base + timedelta(last)))  # fmt: skip
    return RateTable(rates), rates


@given(tables(), st.text(alphabet="96417", min_size=1, max_size=12),
       st.integers(0, 45 * 86400 - 1))  # fmt: skip
def test_rating_is_the_longest_covering_prefix(table_rates, destination, offset):
    table, rates = table_rates
    when = datetime(2026, 10, 25, tzinfo=UTC) + timedelta(seconds=offset)
    covering = [r for r in rates if destination.startswith(r.prefix) and r.covers(when)]
    expected = max(covering, key=lambda r: len(r.prefix)) if covering else None
    assert table.at(destination, when) == expected


@given(tables(), st.text(alphabet="96417", min_size=1, max_size=12),
       st.integers(0, 30 * 86400 - 1))  # fmt: skip
def test_within_a_bucket_rating_depends_only_on_the_key_and_the_bucket_start(
    table_rates, destination, offset
):
    """What lets the database group CDRs: the bucket's start and the key decide the rate."""
    table, _ = table_rates
    start, end = NOV.bounds(UTC_ZONE)
    when = start + timedelta(seconds=offset)
    starts = [start, *table.boundaries(start, end)]
    bucket_start = max(s for s in starts if s <= when)
    key = destination[: table.key_length]
    assert table.at(destination, when) == table.at(key, bucket_start)


# -- periods -------------------------------------------------------------------------------
def test_month_bounds_follow_the_zone_and_daylight_saving():
    assert NOV.bounds(ZoneInfo("Asia/Kolkata")) == (at("2026-10-31 18:30"), at("2026-11-30 18:30"))
    # London: October starts in summer time (UTC+1), November in winter time (UTC)
    assert Month(2026, 10).bounds(ZoneInfo("Europe/London")) == (
        at("2026-09-30 23:00"), at("2026-11-01 00:00"),
    )  # fmt: skip
    assert Month(2026, 12).next() == Month(2027, 1)
    assert Month(2027, 1).previous() == Month(2026, 12)
    assert str(parse_month(" 2026-02 ")) == "2026-02"


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "26-11", "2026-11-01", "", "1969-12"])
def test_a_bad_month_is_refused_naming_the_field(bad):
    with pytest.raises(InvalidInput, match="month: "):
        parse_month(bad)


# -- volume fees ---------------------------------------------------------------------------
def fee(kind: str, tiers: list, unit: str = "message") -> Fee:
    return Fee(1, "volume", kind, unit, "USD", parse_tiers(kind, tiers), date(2026, 1, 1), None)


@pytest.mark.parametrize(
    ("volume", "amount"),
    [(0, "0"), (1000, "0"), (1001, "0.002"), (5000, "8.000"), (5001, "8.001"), (6000, "9.000")],
)
def test_graduated_tiers_price_each_unit_in_its_own_tier(volume, amount):
    f = fee("graduated", [[0, "0"], [1000, "0.002"], [5000, "0.001"]])
    assert sum((c.amount for c in charges(f, volume)), Decimal(0)) == Decimal(amount)
    assert sum(c.units for c in charges(f, volume)) == volume


@pytest.mark.parametrize(("volume", "price"), [(0, "500"), (99999, "500"), (100000, "300"),
                                                (10**9, "300")])  # fmt: skip
def test_a_volume_fee_is_the_fee_of_the_band_reached(volume, price):
    [charge] = charges(fee("volume-fee", [[0, "500"], [100000, "300"]]), volume)
    assert charge.amount == Decimal(price) and charge.unit_price is None


def test_volume_price_bills_every_unit_at_the_band_price_and_monthly_is_fixed():
    f = fee("volume-price", [[0, "0.01"], [1000, "0.008"]])
    assert charges(f, 999)[0].amount == Decimal("9.99")
    assert charges(f, 1000)[0].amount == Decimal("8.000")
    assert charges(fee("monthly", [[0, "100"]]), 0)[0].amount == Decimal(100)


@pytest.mark.parametrize(
    ("kind", "tiers", "message"),
    [
        ("graduated", [[10, "0.01"]], "the first tier starts from 0"),
        ("graduated", [[0, "0.01"], [0, "0.02"]], "does not follow"),
        ("graduated", [], "expected a list"),
        ("monthly", [[0, "1"], [5, "2"]], "one amount"),
        ("graduated", [[0, "-1"]], "negative"),
        ("graduated", [[-1, "1"]], "whole number"),
        ("graduated", [[0, 0.5]], "floating-point"),
    ],
)
def test_bad_tiers_are_refused(kind, tiers, message):
    with pytest.raises(InvalidInput, match=message):
        parse_tiers(kind, tiers)


# -- the statement -------------------------------------------------------------------------
def statement(groups, rates, billable="accepted", fees=()):
    table = RateTable(rates)
    start, end = NOV.bounds(UTC_ZONE)
    starts = [start, *table.boundaries(start, end)]
    return build(
        "2026-11", groups, lambda g: table.at(g.dest_key, starts[g.bucket]),
        billable=billable, fees=list(fees), bounds=lambda p: (start, end), tz=UTC_ZONE,
    )  # fmt: skip


def test_rounding_happens_once_per_line():
    """3 messages at 0.0033 are 0.0099: 0.01 on the line (per message it would be 0.00)."""
    s = statement([Group("2026-11", "964", 0, "delivered", 3, 3)],
                  [rate(1, "964", "0.0033", date(2026, 1, 1))])  # fmt: skip
    [line] = s.lines
    assert line.amount == Decimal("0.01")
    assert s.totals == {"USD": Decimal("0.01")}


def test_a_tie_rounds_half_up_and_each_currency_keeps_its_minor_unit():
    s = statement(
        [Group("2026-11", "964", 0, "delivered", 5, 5), Group("2026-11", "1", 0, "delivered", 1, 1)],
        [rate(1, "964", "0.001", date(2026, 1, 1), currency="USD"),
         rate(2, "1", "0.0005", date(2026, 1, 1), currency="IQD")],
    )  # fmt: skip
    assert s.totals == {"IQD": Decimal("0.001"), "USD": Decimal("0.01")}  # 0.005 -> 0.01


def test_delivered_only_carriers_do_not_pay_for_failures_and_unrated_is_shown():
    groups = [
        Group("2026-11", "964", 0, "delivered", 10, 12),
        Group("2026-11", "964", 0, "failed", 4, 4),
        Group("2026-11", "447", 0, "delivered", 2, 2),
    ]
    rates = [rate(1, "964", "0.01", date(2026, 1, 1), unit="segment")]
    s = statement(groups, rates, billable="delivered")
    assert (s.messages, s.not_billable, s.unrated) == (12, 4, 2)
    usage, unrated = s.lines
    assert (usage.messages, usage.units, usage.amount) == (10, 12, Decimal("0.12"))
    assert (unrated.kind, unrated.messages, unrated.amount) == ("unrated", 2, None)
    assert statement(groups, rates, billable="accepted").lines[0].units == 16


def test_a_mid_month_price_change_gives_one_line_per_price():
    rates = [rate(1, "964", "0.01", date(2026, 1, 1), date(2026, 11, 14)),
             rate(2, "964", "0.02", date(2026, 11, 15))]  # fmt: skip
    groups = [Group("2026-11", "964", 0, "delivered", 100, 100),
              Group("2026-11", "964", 1, "delivered", 50, 50)]  # fmt: skip
    first, second = statement(groups, rates).lines
    assert (first.amount, second.amount) == (Decimal("1.00"), Decimal("1.00"))
    assert first.description == "964 at 0.01 USD per message, 2026-11-01 to 2026-11-14"
    assert second.description == "964 at 0.02 USD per message, 2026-11-15 to 2026-11-30"


def test_fees_count_the_months_billable_volume():
    f = Fee(1, "platform", "volume-fee", "segment", "EUR",
            (Tier(0, Decimal(50)), Tier(10, Decimal(20))), date(2026, 1, 1), None)  # fmt: skip
    s = statement([Group("2026-11", "964", 0, "delivered", 6, 12)],
                  [rate(1, "964", "0.01", date(2026, 1, 1))], fees=[f])  # fmt: skip
    assert s.totals == {"EUR": Decimal("20.00"), "USD": Decimal("0.06")}


states = st.sampled_from(["delivered", "failed", "expired", "rejected", "deleted"])


@given(
    tables(),
    st.lists(st.tuples(st.text(alphabet="96417", min_size=1, max_size=5), st.integers(0, 3),
                       states, st.integers(1, 50), st.integers(1, 4)), max_size=30),
    st.sampled_from(["accepted", "delivered"]),
    st.randoms(use_true_random=False),
)  # fmt: skip
def test_a_statement_accounts_for_every_billable_message_whatever_the_group_order(
    table_rates, raw, billable, rnd
):
    table, _ = table_rates
    start, end = NOV.bounds(UTC_ZONE)
    starts = [start, *table.boundaries(start, end)]
    merged: dict[tuple, list[int]] = {}
    for key, bucket, state, n, per in raw:
        if bucket < len(starts):
            counts = merged.setdefault((key[: table.key_length] or key, bucket, state), [0, 0])
            counts[0] += n
            counts[1] += n * per
    groups = [Group("2026-11", k, b, s, m, p) for (k, b, s), (m, p) in merged.items()]

    def build_from(gs):
        return build("2026-11", gs, lambda g: table.at(g.dest_key, starts[g.bucket]),
                     billable=billable, fees=[], bounds=lambda p: (start, end), tz=UTC_ZONE)  # fmt: skip

    s = build_from(groups)
    billable_msgs = sum(
        g.messages for g in groups if billable == "accepted" or g.state == "delivered"
    )
    assert s.messages == billable_msgs
    assert sum(ln.messages for ln in s.lines) == billable_msgs
    assert s.not_billable == sum(g.messages for g in groups) - billable_msgs
    for currency, total in s.totals.items():
        assert total == sum(ln.amount for ln in s.lines if ln.currency == currency)
    shuffled = list(groups)
    rnd.shuffle(shuffled)
    assert build_from(shuffled) == s
