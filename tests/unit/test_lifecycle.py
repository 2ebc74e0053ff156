# Tests of gateway/lifecycle.py: the message life cycle table, retries and expiry.
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.lifecycle import (
    FINAL,
    TABLE,
    BadTransition,
    MessageEvent,
    MessageState,
    advance,
    retry_delay,
)

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
VALID = T0 + timedelta(hours=48)
SCHEDULE = [timedelta(seconds=s) for s in (5, 30, 120, 600, 3600)]
S, E = MessageState, MessageEvent


def test_happy_path_local_delivery():
    state = S.ACCEPTED
    for event, expected in ((E.ROUTE, S.ROUTED), (E.SEND, S.SENDING), (E.OK, S.DELIVERED)):
        step = advance(state, event, now=T0, validity_until=VALID)
        assert step.state is expected
        state = step.state
    assert step.final


def test_temporary_failures_follow_the_schedule_then_repeat_the_last():
    waits = []
    for attempts in range(1, 8):
        step = advance(
            S.SENDING,
            E.TEMPORARY,
            now=T0,
            validity_until=VALID,
            attempts=attempts,
            schedule=SCHEDULE,
        )
        assert step.state is S.RETRY_WAIT and not step.final
        waits.append(step.next_attempt_at - T0)
    assert waits == SCHEDULE + [SCHEDULE[-1]] * 2


def test_retry_beyond_validity_is_capped_then_expires():
    late = VALID - timedelta(seconds=10)
    step = advance(
        S.SENDING, E.TEMPORARY, now=late, validity_until=VALID, attempts=5, schedule=SCHEDULE
    )
    assert (step.state, step.next_attempt_at) == (S.RETRY_WAIT, VALID)
    due = advance(S.RETRY_WAIT, E.DUE, now=VALID, validity_until=VALID)
    assert due.state is S.EXPIRED and due.final
    after = advance(S.SENDING, E.TEMPORARY, now=VALID, validity_until=VALID, schedule=SCHEDULE)
    assert after.state is S.EXPIRED


def test_offline_app_waits_in_retry_wait():
    step = advance(
        S.ROUTED, E.TEMPORARY, now=T0, validity_until=VALID, attempts=1, schedule=SCHEDULE
    )
    assert step.state is S.RETRY_WAIT


def test_crash_recovery_sends_again():
    assert advance(S.SENDING, E.RECOVER, now=T0, validity_until=VALID).state is S.ROUTED


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("event", list(E))
def test_every_pair_is_in_the_table_or_refused(state, event):
    if (state, event) in TABLE:
        step = advance(state, event, now=T0, validity_until=VALID, schedule=SCHEDULE)
        assert step.final == (step.state in FINAL)
    else:
        with pytest.raises(BadTransition, match=f"{state}.*{event}"):
            advance(state, event, now=T0, validity_until=VALID)


def test_nothing_leaves_a_final_state():
    assert not any(state in FINAL for state, _ in TABLE)


@given(st.lists(st.sampled_from(list(E)), max_size=30), st.integers(0, 200_000))
def test_any_event_sequence_stays_in_the_table(events, seconds):
    state, now = S.ACCEPTED, T0
    for attempts, event in enumerate(events, start=1):
        now += timedelta(seconds=seconds)
        try:
            step = advance(
                state, event, now=now, validity_until=VALID, attempts=attempts, schedule=SCHEDULE
            )
        except BadTransition:
            continue
        if step.state is S.RETRY_WAIT:
            assert now < step.next_attempt_at <= VALID
        state = step.state
    assert state in set(S)


def test_retry_delay_needs_a_schedule():
    with pytest.raises(ValueError, match="empty"):
        retry_delay(1, [])
