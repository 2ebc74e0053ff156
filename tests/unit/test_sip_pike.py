# The SIP flood guard (gateway/sip/pike.py): per-source counts, blocks, bounded memory.
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sip.pike import Pike


def send(pike: Pike, source: str, count: int, now: float) -> int:
    """``count`` requests at ``now``; how many passed."""
    return sum(pike.check(source, now) for _ in range(count))


def test_within_the_limit_everything_passes() -> None:
    pike = Pike(limit=10, interval=2.0, block=60.0)
    for tenth in range(200):  # 4 per second, steady, for 20 s: 8 per 2 s
        if tenth % 10 in (0, 2, 5, 7):
            assert pike.check("10.0.0.1", tenth / 10)
    assert pike.dropped == 0 and pike.blocks == 0


def test_over_the_limit_the_source_is_blocked_and_others_are_not() -> None:
    pike = Pike(limit=10, interval=2.0, block=60.0)
    assert send(pike, "10.0.0.1", 10, 100.0) == 10
    assert pike.check("10.0.0.1", 100.1) is False  # the 11th within the interval
    assert pike.newly_blocked  # worth a log line
    assert pike.blocked("10.0.0.1", 100.2)
    assert send(pike, "10.0.0.1", 5, 110.0) == 0  # blocked, however little it sends now
    assert not pike.newly_blocked
    assert send(pike, "10.0.0.2", 10, 110.0) == 10  # another address is not held back
    assert pike.dropped == 6 and pike.blocks == 1


def test_the_previous_interval_counts_in_a_sliding_window() -> None:
    pike = Pike(limit=10, interval=2.0, block=60.0)
    assert send(pike, "a", 10, 0.0) == 10
    # at 2.5 s a quarter of the last interval is gone: 10 * 0.75 + 3 = 10.5 > 10
    assert send(pike, "a", 3, 2.5) == 2
    pike = Pike(limit=10, interval=2.0, block=60.0)
    assert send(pike, "a", 10, 0.0) == 10
    assert send(pike, "a", 10, 4.0) == 10  # two intervals later the old count is gone


def test_a_block_ends_and_a_calm_source_starts_afresh() -> None:
    pike = Pike(limit=10, interval=2.0, block=30.0)
    assert send(pike, "a", 11, 0.0) == 10
    assert not pike.check("a", 29.9)
    assert pike.check("a", 30.0)  # the block is over and the flood long ago
    assert not pike.blocked("a", 30.0)


def test_a_source_that_keeps_flooding_is_blocked_again_at_once() -> None:
    pike = Pike(limit=10, interval=2.0, block=30.0)
    now = 0.0
    passed = 0
    while now < 100.0:  # 50 per second, for 100 s
        passed += send(pike, "a", 5, now)
        now += 0.1
    assert passed == 10  # only the first interval's allowance; every block renewed
    assert pike.blocks >= 3


def test_a_blocked_source_is_reported_at_most_once_a_minute() -> None:
    pike = Pike(limit=1, interval=1.0, block=1.0, report_every=60.0)
    reports = 0
    for tenth in range(0, 1800):  # 3 minutes of a source over its limit, blocked again and again
        pike.check("a", tenth / 10)
        reports += pike.newly_blocked
    assert reports == 3


def test_memory_is_bounded_least_recently_heard_out() -> None:
    pike = Pike(limit=5, interval=1.0, block=60.0, max_sources=100)
    assert send(pike, "flooder", 6, 0.0) == 5
    for n in range(100):
        pike.check(f"10.1.{n // 256}.{n % 256}", 0.5)
    assert len(pike) == 100
    assert not pike.blocked("flooder", 0.5)  # evicted: bounded memory wins
    pike.check("10.1.0.99", 0.6)  # heard again: the most recent, kept
    for n in range(1000, 1099):
        pike.check(f"x{n}", 0.7)
    assert len(pike) == 100 and "10.1.0.99" in pike._sources


def test_time_going_back_does_not_break_the_count() -> None:
    pike = Pike(limit=3, interval=1.0, block=10.0)
    assert send(pike, "a", 3, 5.0) == 3
    assert send(pike, "a", 1, 4.0) == 0  # still the same flood: over the limit


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0, "interval": 1.0, "block": 1.0},
        {"limit": 1, "interval": 0.0, "block": 1.0},
        {"limit": 1, "interval": float("nan"), "block": 1.0},
        {"limit": 1, "interval": 1.0, "block": -1.0},
        {"limit": 1, "interval": 1.0, "block": 1.0, "max_sources": 0},
    ],
)
def test_bad_parameters_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Pike(**kwargs)


@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0, 5), st.integers(1, 30)),
        max_size=60,
    )
)
def test_never_more_than_twice_the_limit_passes_in_one_interval(steps: list) -> None:
    """Whatever the traffic, no source gets more than 2 x limit through within any one
    interval (the sliding estimate can lag by at most one interval's count)."""
    limit, interval = 10, 2.0
    pike = Pike(limit=limit, interval=interval, block=5.0, max_sources=10)
    now = 0.0
    passed: dict[str, list[float]] = {}
    for source, advance, count in steps:
        now += advance
        for _ in range(count):
            if pike.check(source, now):
                passed.setdefault(source, []).append(now)
    for times in passed.values():
        for start in times:
            assert sum(1 for t in times if start <= t < start + interval) <= 2 * limit
