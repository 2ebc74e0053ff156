"""Failed-auth throttling per source, token buckets and live-bind counts, on a fake clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp.guard import Attempt, AuthGuard, BindCounter, BindGuard, TokenBucket, Verdict

SRC = "192.0.2.1"
OTHER = "198.51.100.7"


def fail_n(guard: AuthGuard, source: str, n: int, now: float, step: float = 0.0) -> float:
    for _ in range(n):
        guard.failed(source, now)
        now += step
    return now


# --- AuthGuard -------------------------------------------------------------------------------


def test_clean_source_is_allowed_without_delay():
    guard = AuthGuard()
    assert guard.check(SRC, 0.0) == Verdict(allowed=True, delay=0.0, blocked_until=None)
    assert guard.tracked == 0


def test_failures_slow_down_then_block():
    guard = AuthGuard(free_failures=3, max_failures=10, window=300.0, block=900.0, max_delay=5.0)
    delays = []
    now = 100.0
    for _ in range(9):
        verdict = guard.check(SRC, now)
        assert verdict.allowed
        assert verdict.blocked_until is None
        delays.append(verdict.delay)
        guard.failed(SRC, now)
        now += 1.0
    assert delays == [0.0, 0.0, 0.0, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert guard.blocked_count(now) == 0
    guard.failed(SRC, now)  # the 10th failure within the window
    verdict = guard.check(SRC, now)
    assert not verdict.allowed
    assert verdict.blocked_until == now + 900.0
    assert guard.blocked_count(now) == 1
    # another source is unaffected
    assert guard.check(OTHER, now) == Verdict(allowed=True, delay=0.0)


def test_block_ends_after_block_seconds_and_source_starts_afresh():
    guard = AuthGuard(max_failures=5, window=300.0, block=900.0)
    fail_n(guard, SRC, 5, 0.0)
    assert not guard.check(SRC, 899.999).allowed
    assert guard.blocked_count(899.999) == 1
    assert guard.blocked_count(900.0) == 0
    verdict = guard.check(SRC, 900.0)
    assert verdict == Verdict(allowed=True, delay=0.0)
    assert guard.tracked == 0


def test_block_shorter_than_window_does_not_keep_old_failures():
    guard = AuthGuard(free_failures=1, max_failures=3, window=300.0, block=10.0)
    fail_n(guard, SRC, 3, 0.0)
    assert not guard.check(SRC, 5.0).allowed
    assert guard.check(SRC, 10.0) == Verdict(allowed=True, delay=0.0)
    guard.failed(SRC, 11.0)
    assert guard.check(SRC, 11.0).allowed


def test_failures_during_block_neither_count_nor_extend_it():
    guard = AuthGuard(max_failures=3, block=60.0)
    fail_n(guard, SRC, 3, 0.0)
    fail_n(guard, SRC, 20, 1.0, step=1.0)
    assert guard.check(SRC, 59.0).blocked_until == 60.0
    assert guard.check(SRC, 60.0).allowed
    assert guard.check(SRC, 60.0).delay == 0.0


def test_failures_older_than_window_do_not_count():
    guard = AuthGuard(free_failures=3, max_failures=10, window=300.0)
    fail_n(guard, SRC, 9, 0.0)
    assert guard.check(SRC, 299.0).delay == 5.0
    # all nine are at t=0: at t=300 they are a full window old
    assert guard.check(SRC, 300.0) == Verdict(allowed=True, delay=0.0)
    guard.failed(SRC, 301.0)
    assert guard.check(SRC, 301.0).allowed
    assert guard.blocked_count(301.0) == 0


def test_sliding_window_blocks_only_when_enough_failures_are_recent():
    guard = AuthGuard(max_failures=10, window=300.0)
    # one failure every 40 s: never more than 8 inside any 300 s window
    now = fail_n(guard, SRC, 100, 0.0, step=40.0)
    assert guard.check(SRC, now).allowed
    # one every 30 s: the 10th inside the window blocks
    guard2 = AuthGuard(max_failures=10, window=300.0)
    fail_n(guard2, SRC, 10, 0.0, step=30.0)
    assert not guard2.check(SRC, 270.0).allowed


def test_success_resets_failures():
    guard = AuthGuard(free_failures=3)
    fail_n(guard, SRC, 6, 0.0)
    assert guard.check(SRC, 1.0).delay == 4.0
    guard.succeeded(SRC, 1.0)
    assert guard.check(SRC, 1.0) == Verdict(allowed=True, delay=0.0)
    assert guard.tracked == 0
    guard.succeeded(OTHER, 1.0)  # unknown source: no-op
    assert guard.tracked == 0


def test_success_does_not_lift_an_active_block():
    guard = AuthGuard(max_failures=3, block=100.0)
    fail_n(guard, SRC, 3, 0.0)
    guard.succeeded(SRC, 50.0)
    assert not guard.check(SRC, 50.0).allowed
    assert guard.check(SRC, 100.0).allowed


def test_delay_never_exceeds_max_delay_even_with_many_allowed_failures():
    guard = AuthGuard(free_failures=0, max_failures=5000, max_delay=5.0, window=1e6)
    fail_n(guard, SRC, 4000, 0.0)
    verdict = guard.check(SRC, 1.0)
    assert verdict.allowed
    assert verdict.delay == 5.0


def test_free_failures_zero_delays_after_first_failure():
    guard = AuthGuard(free_failures=0)
    assert guard.check(SRC, 0.0).delay == 0.0
    guard.failed(SRC, 0.0)
    assert guard.check(SRC, 0.0).delay == 0.5


def test_max_sources_bound_holds_under_200k_distinct_sources():
    guard = AuthGuard(max_sources=100_000)
    peak = 0
    for i in range(200_000):
        guard.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1000.0 + i * 1e-3)
        peak = max(peak, guard.tracked)
        assert len(guard._sources) <= 100_000
    assert peak == 100_000
    assert guard.tracked == 100_000
    # the oldest were evicted, the newest kept
    assert f"10.0.0.{0}" not in guard._sources
    last = 199_999
    assert f"10.{last >> 16 & 255}.{last >> 8 & 255}.{last & 255}" in guard._sources


def test_eviction_drops_the_source_whose_last_failure_is_oldest():
    guard = AuthGuard(max_sources=3, max_failures=100)
    guard.failed("a", 0.0)
    guard.failed("b", 1.0)
    guard.failed("c", 2.0)
    guard.failed("a", 3.0)  # a is now the most recent
    guard.failed("d", 4.0)  # evicts b
    assert set(guard._sources) == {"a", "c", "d"}
    assert guard.tracked == 3


def test_stale_sources_expire_as_new_failures_arrive():
    guard = AuthGuard(window=300.0, block=900.0, max_failures=3)
    guard.failed("old", 0.0)
    fail_n(guard, "blocked", 3, 0.0)
    assert guard.tracked == 2
    guard.failed("new", 899.0)  # the block of "blocked" is still active
    assert guard.tracked == 3
    guard.failed("new", 900.0)
    assert set(guard._sources) == {"new"}


def test_check_forgets_a_source_whose_failures_aged_out():
    guard = AuthGuard(window=10.0)
    guard.failed(SRC, 0.0)
    assert guard.tracked == 1
    assert guard.check(SRC, 10.0).delay == 0.0
    assert guard.tracked == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"free_failures": -1},
        {"max_failures": 0},
        {"window": 0.0},
        {"window": math.inf},
        {"block": -1.0},
        {"block": math.nan},
        {"max_delay": -0.1},
        {"max_sources": 0},
    ],
)
def test_auth_guard_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        AuthGuard(**kwargs)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["check", "failed", "succeeded"]),
            st.sampled_from(["a", "b", "c", "d", "e"]),
            st.floats(min_value=0.0, max_value=50.0),
        ),
        max_size=200,
    )
)
def test_auth_guard_invariants_over_random_operations(ops):
    guard = AuthGuard(free_failures=2, max_failures=4, window=30.0, block=20.0, max_sources=3)
    now = 0.0
    for op, source, step in ops:
        now += step
        if op == "failed":
            guard.failed(source, now)
        elif op == "succeeded":
            guard.succeeded(source, now)
        else:
            verdict = guard.check(source, now)
            assert 0.0 <= verdict.delay <= guard.max_delay
            assert verdict.allowed == (verdict.blocked_until is None)
            if verdict.blocked_until is not None:
                assert now < verdict.blocked_until <= now + guard.block
        assert guard.tracked <= 3
        assert 0 <= guard.blocked_count(now) <= guard.tracked


# --- TokenBucket -----------------------------------------------------------------------------


def test_bucket_starts_full_and_allows_a_burst():
    bucket = TokenBucket(rate=10.0, burst=20.0)
    assert all(bucket.take(1, 0.0) for _ in range(20))
    assert not bucket.take(1, 0.0)
    assert bucket.wait_time(1, 0.0) == pytest.approx(0.1)


def test_burst_defaults_to_rate_or_one():
    assert TokenBucket(rate=50.0).burst == 50.0
    assert TokenBucket(rate=0.2).burst == 1.0


def test_bucket_refills_at_rate_up_to_burst():
    bucket = TokenBucket(rate=10.0, burst=20.0)
    assert bucket.take(20, 0.0)
    assert bucket.available(0.5) == pytest.approx(5.0)
    assert not bucket.take(6, 0.5)
    assert bucket.available(0.5) == pytest.approx(5.0)  # a refused take takes nothing
    assert bucket.take(5, 0.5)
    assert bucket.available(100.0) == 20.0  # capped at burst
    assert bucket.take(20, 100.0)


def test_waiting_exactly_wait_time_is_enough():
    bucket = TokenBucket(rate=3.0, burst=7.0)
    now = 0.0
    assert bucket.take(7, now)
    for n in (1, 2, 3, 5, 7, 1, 4):
        wait = bucket.wait_time(n, now)
        assert wait > 0
        if wait > 1e-6:
            assert not bucket.take(n, now + wait - 1e-6)
        now += wait
        assert bucket.take(n, now)


def test_sustained_throughput_matches_rate():
    bucket = TokenBucket(rate=100.0, burst=1.0)
    taken = sum(bucket.take(1, i * 0.001) for i in range(10_001))  # 10 s in 1 ms steps
    assert 1000 <= taken <= 1001


def test_more_than_burst_passes_from_a_full_bucket_and_leaves_a_debt():
    """A 5-segment message from a carrier allowed 4 per second passes (it could never pass
    otherwise), and the next segment waits until the debt is paid back."""
    bucket = TokenBucket(rate=5.0, burst=4.0)
    assert bucket.take(5, 0.0)  # full: it passes whole
    assert bucket.available(0.0) == pytest.approx(-1.0)
    assert not bucket.take(1, 0.0)
    assert bucket.wait_time(1, 0.0) == pytest.approx(0.4)
    assert bucket.take(1, 0.4)
    assert not bucket.take(5, 0.4)  # not full: a long one waits for a full bucket
    assert bucket.wait_time(5, 0.4) == pytest.approx(0.8)
    assert bucket.take(5, 1.2)


def test_take_zero_and_negative():
    bucket = TokenBucket(rate=1.0)
    assert bucket.take(1, 0.0)
    assert bucket.take(0, 0.0)
    assert bucket.wait_time(0, 0.0) == 0.0
    with pytest.raises(ValueError):
        bucket.take(-1, 0.0)
    with pytest.raises(ValueError):
        bucket.wait_time(-1, 0.0)


def test_clock_going_backwards_refills_nothing():
    bucket = TokenBucket(rate=1.0, burst=2.0)
    assert bucket.take(2, 10.0)
    assert not bucket.take(1, 5.0)
    assert bucket.available(10.5) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(0.0, None), (-1.0, None), (math.inf, None), (math.nan, None), (10.0, 0.5), (1.0, math.inf)],
)
def test_bucket_rejects_bad_settings(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


@given(
    st.floats(min_value=0.1, max_value=1000.0),
    st.floats(min_value=1.0, max_value=100.0),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=120), st.floats(0.0, 2.0)),
        max_size=100,
    ),
)
def test_bucket_never_grants_more_than_burst_plus_refill(rate, burst, ops):
    bucket = TokenBucket(rate, burst)
    now = 0.0
    granted = 0
    for n, step in ops:
        now += step
        if bucket.take(n, now):
            granted += n
        assert bucket.available(now) <= burst
    biggest = max((n for n, _ in ops), default=0)
    assert granted <= max(burst, biggest) + rate * now + 1e-6


# --- BindCounter -----------------------------------------------------------------------------


def test_bind_counter_limits():
    binds = BindCounter()
    assert binds.try_add(7, 2)
    assert binds.try_add(7, 2)
    assert not binds.try_add(7, 2)
    assert binds.count(7) == 2
    assert binds.try_add(8, 1)  # carriers counted separately
    assert binds.total == 3
    assert binds.remove(7)
    assert binds.try_add(7, 2)
    assert not binds.try_add(9, 0)  # max_binds 0: nothing allowed
    assert binds.count(9) == 0


def test_bind_counter_never_negative():
    binds = BindCounter()
    assert not binds.remove(1)
    assert binds.count(1) == 0
    assert binds.try_add(1, 1)
    assert binds.remove(1)
    assert not binds.remove(1)
    assert binds.count(1) == 0
    assert binds.total == 0
    assert binds._counts == {}


@given(
    st.dictionaries(st.integers(0, 4), st.integers(0, 5), min_size=5, max_size=5),
    st.lists(st.tuples(st.sampled_from(["add", "remove"]), st.integers(0, 4)), max_size=300),
)
def test_bind_counter_property(limits, ops):
    binds = BindCounter()
    adds = dict.fromkeys(limits, 0)
    removes = dict.fromkeys(limits, 0)
    for op, carrier in ops:
        if op == "add":
            before = binds.count(carrier)
            ok = binds.try_add(carrier, limits[carrier])
            assert ok == (before < limits[carrier])
            adds[carrier] += ok
        else:
            before = binds.count(carrier)
            ok = binds.remove(carrier)
            assert ok == (before > 0)
            removes[carrier] += ok
        for cid, limit in limits.items():
            assert binds.count(cid) == adds[cid] - removes[cid]
            assert 0 <= binds.count(cid) <= limit
    assert binds.total == sum(adds.values()) - sum(removes.values())


# --- BindGuard: counted on arrival, per (address, system_id), the address on spread -----------


def admit(guard: BindGuard, address: str, system_id: str, now: float) -> Attempt:
    admission = guard.arrive(address, system_id, now)
    assert admission.allowed and admission.attempt is not None, admission.reason
    return admission.attempt


def test_parallel_attempts_count_on_arrival_so_at_most_the_limit_are_checked():
    guard = BindGuard(max_failures=10)
    admitted = [guard.arrive(SRC, "TATA", 0.0) for _ in range(150)]
    attempts = [a.attempt for a in admitted if a.allowed]
    assert len(attempts) == 10  # the other 140 are refused before any password check
    refused = [a for a in admitted if not a.allowed]
    assert all(a.delay == guard.max_delay and a.attempt is None for a in refused)
    # the right password, sent in the same burst, is refused as well
    assert not guard.arrive(SRC, "TATA", 0.0).allowed
    for attempt in attempts:
        guard.failed(attempt, 1.0)
    verdict = guard.arrive(SRC, "TATA", 1.0)
    assert not verdict.allowed and verdict.blocked_until == 1.0 + guard.block


def test_an_attempt_given_back_frees_its_place_and_counts_nothing():
    guard = BindGuard(max_failures=2)
    first, second = admit(guard, SRC, "TATA", 0.0), admit(guard, SRC, "TATA", 0.0)
    assert not guard.arrive(SRC, "TATA", 0.0).allowed  # 2 in flight
    guard.release(first, 0.0)  # e.g. no room in the check pool
    guard.release(first, 0.0)  # told twice: once only
    third = admit(guard, SRC, "TATA", 0.0)
    guard.succeeded(second, 0.0)
    guard.succeeded(third, 0.0)
    assert guard.tracked == 0


def test_one_bad_system_id_does_not_lock_out_another_behind_the_same_address():
    guard = BindGuard(max_failures=3, spread=3, block=900.0)
    for _ in range(3):
        guard.failed(admit(guard, SRC, "KANNEL", 0.0), 0.0)
    assert not guard.arrive(SRC, "KANNEL", 1.0).allowed
    guard.succeeded(admit(guard, SRC, "TATA", 1.0), 1.0)  # the good carrier binds
    assert guard.blocked(1.0) == (0, 1)
    assert guard.arrive(OTHER, "KANNEL", 1.0).allowed  # another address is not concerned


def test_failures_for_several_system_ids_block_the_whole_address():
    guard = BindGuard(max_failures=10, spread=3, window=300.0, block=900.0)
    guard.failed(admit(guard, SRC, "A", 0.0), 0.0)
    guard.failed(admit(guard, SRC, "B", 1.0), 1.0)
    guard.failed(admit(guard, SRC, "B", 2.0), 2.0)  # the same one again: still two
    assert guard.arrive(SRC, "TATA", 2.0).allowed
    guard.failed(admit(guard, SRC, "NOBODY", 3.0), 3.0)  # a third system_id
    verdict = guard.arrive(SRC, "TATA", 4.0)
    assert not verdict.allowed and verdict.blocked_until == 903.0
    assert "address blocked" in verdict.reason
    assert guard.blocked(4.0) == (1, 0)
    assert guard.arrive(SRC, "TATA", 903.0).allowed  # the block ends


def test_failures_for_other_system_ids_outside_the_window_do_not_add_up():
    guard = BindGuard(spread=3, window=300.0)
    guard.failed(admit(guard, SRC, "A", 0.0), 0.0)
    guard.failed(admit(guard, SRC, "B", 100.0), 100.0)
    guard.failed(admit(guard, SRC, "C", 301.0), 301.0)  # A's failure is out of the window
    assert guard.arrive(SRC, "TATA", 301.0).allowed


def test_a_success_takes_its_system_id_out_of_the_address_count():
    guard = BindGuard(spread=3)
    guard.failed(admit(guard, SRC, "A", 0.0), 0.0)
    guard.failed(admit(guard, SRC, "TATA", 0.0), 0.0)  # a typo, then the right password
    guard.succeeded(admit(guard, SRC, "TATA", 0.0), 0.0)
    guard.failed(admit(guard, SRC, "B", 0.0), 0.0)
    assert guard.arrive(SRC, "TATA", 0.0).allowed


def test_an_address_has_at_most_the_limit_in_flight_across_system_ids():
    guard = BindGuard(max_failures=4, spread=3)
    admitted = [guard.arrive(SRC, f"S{i}", 0.0) for i in range(20)]
    assert sum(a.allowed for a in admitted) == 4
    assert guard.arrive(OTHER, "S0", 0.0).allowed


def test_unblock_lifts_the_address_and_its_pairs_blocks():
    guard = BindGuard(max_failures=2, spread=2)
    for system_id in ("A", "A", "B"):
        guard.failed(admit(guard, SRC, system_id, 0.0), 0.0)
    assert guard.blocked(1.0) == (1, 1)
    assert guard.unblock(SRC) == 2
    assert guard.blocked(1.0) == (0, 0)
    assert guard.arrive(SRC, "A", 1.0).allowed
    assert guard.unblock(OTHER) == 0


def test_an_attempt_outliving_its_entries_gives_its_place_back_harmlessly():
    guard = BindGuard(max_failures=2, max_sources=1)
    attempt = admit(guard, SRC, "A", 0.0)
    admit(guard, OTHER, "B", 0.0)  # evicts SRC's entries (bounded memory)
    guard.failed(attempt, 0.0)
    guard.unblock(OTHER)
    assert guard.tracked == 0


def test_delays_grow_with_the_pairs_failures_not_with_other_system_ids():
    guard = BindGuard(free_failures=3, max_failures=10, spread=100)
    for _ in range(5):
        guard.failed(admit(guard, SRC, "A", 0.0), 0.0)
    assert guard.arrive(SRC, "A", 0.0).delay == 2.0
    assert guard.arrive(SRC, "TATA", 0.0).delay == 0.0


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["arrive", "arrive", "failed", "release"]),
            st.sampled_from(["a", "b"]),
            st.sampled_from(["X", "Y", "Z"]),
            st.floats(min_value=0.0, max_value=20.0),
            st.integers(min_value=0, max_value=5),
        ),
        max_size=120,
    )
)
def test_bind_guard_never_admits_more_than_the_limit_per_pair_and_window(ops) -> None:
    """A model of what was checked: at each admission, the pair's failures within the window
    plus its attempts in flight stay below the limit, and an address never has more than the
    limit in flight (no success, so nothing is forgiven; block > window)."""
    guard = BindGuard(free_failures=1, max_failures=3, spread=3, window=30.0, block=40.0)
    now = 0.0
    open_attempts: list[Attempt] = []
    failures: dict[tuple[str, str], list[float]] = {}
    for op, address, system_id, step, pick in ops:
        now += step
        if op == "arrive":
            key = (address, system_id)
            recent = len([t for t in failures.get(key, []) if t > now - 30.0])
            flying = sum(1 for a in open_attempts if (a.address, a.system_id) == key)
            admission = guard.arrive(address, system_id, now)
            if admission.attempt is not None:
                assert recent + flying < 3
                assert sum(1 for a in open_attempts if a.address == address) < 3
                open_attempts.append(admission.attempt)
        elif open_attempts:
            attempt = open_attempts.pop(pick % len(open_attempts))
            if op == "failed":
                failures.setdefault((attempt.address, attempt.system_id), []).append(now)
                guard.failed(attempt, now)
            else:
                guard.release(attempt, now)
