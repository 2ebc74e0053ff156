# Tests of gateway/queue.py: lanes, one message per destination at a time, held lines.
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.queue import TABLE, DeliveryQueue, Line, LineError, LineEvent, LineState, Pending

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def msg(i: int, dest: str = "964111222333", lane: str = "bulk") -> Pending:
    return Pending(
        id=i,
        destination=dest,
        source="AsiaCell",
        source_ton=5,
        lane=lane,  # type: ignore[arg-type]
        priority=0,
        data_coding=0,
        text=f"m{i}",
        body=None,
        registered_delivery=0,
        validity_until=T0 + timedelta(hours=1),
        accepted_at=T0,
        parts=1,
    )


def drain(q: DeliveryQueue) -> list[int]:
    out = []
    while (m := q.pop()) is not None:
        out.append(m.id)
        q.done(m.destination)
    return out


def test_priority_lane_goes_first_and_order_is_kept_per_lane():
    q = DeliveryQueue()
    for i in range(1, 6):
        q.push(msg(i))
    q.push(msg(10, lane="priority"))
    q.push(msg(11, lane="priority"))
    assert drain(q) == [10, 11, 1, 2, 3, 4, 5]
    assert len(q) == 0


def test_one_message_per_destination_in_flight():
    q = DeliveryQueue()
    q.push(msg(1, "a"))
    q.push(msg(2, "a"))
    q.push(msg(3, "b"))
    first = q.pop()
    second = q.pop()
    assert (first.id, second.id) == (1, 3)
    assert q.pop() is None  # a's next waits for its first to end
    q.done("a")
    assert q.pop().id == 2


def test_a_held_line_parks_its_queued_messages_and_admits_new_ones_to_the_store():
    q = DeliveryQueue()
    for i in (1, 2, 3):
        q.push(msg(i))
    first = q.pop()
    parked = q.hold(first.destination, T0 + timedelta(seconds=30))
    assert [m.id for m in parked] == [2, 3]
    assert q.admit(first.destination) == "park"
    assert q.pop() is None and len(q) == 0
    assert q.due(T0) == []
    assert q.due(T0 + timedelta(seconds=30)) == [first.destination]


def test_release_merges_loaded_messages_before_those_queued_meanwhile():
    q = DeliveryQueue()
    q.push(msg(5))
    m = q.pop()
    q.hold(m.destination, T0)
    assert q.release(m.destination)
    assert q.admit(m.destination) == "queue"
    q.push(msg(9))  # accepted while the store is read
    assert q.pop() is None  # releasing: nothing goes out yet
    q.released(m.destination, [msg(5), msg(6), msg(7)])
    assert drain(q) == [5, 6, 7, 9]


def test_hold_keeps_the_earliest_due_time():
    q = DeliveryQueue()
    q.push(msg(1))
    m = q.pop()
    q.hold(m.destination, T0 + timedelta(hours=2))
    q.hold(m.destination, T0 + timedelta(hours=1))
    q.hold(m.destination, T0 + timedelta(hours=3))
    assert q.next_due() == T0 + timedelta(hours=1)
    assert q.due(T0 + timedelta(hours=1)) == [m.destination]


def test_remove_takes_a_queued_message_out():
    q = DeliveryQueue()
    q.push(msg(1))
    q.push(msg(2))
    assert q.remove(2).id == 2
    assert q.remove(2) is None
    assert drain(q) == [1]


def test_out_of_order_push_is_sorted_by_id():
    q = DeliveryQueue()
    q.push(msg(3))
    q.push(msg(1))
    q.push(msg(2))
    assert drain(q) == [1, 2, 3]


def test_release_of_a_line_that_is_not_held_does_nothing():
    q = DeliveryQueue()
    assert not q.release("964")
    q.push(msg(1))
    q.pop()
    assert not q.release("964111222333")


@given(st.sampled_from(list(LineState)), st.sampled_from(list(LineEvent)))
def test_only_the_table_moves_a_line(state, event):
    line = Line("x", state=state)
    if (state, event) in TABLE:
        line.move(event)
        assert line.state is TABLE[(state, event)]
    else:
        with pytest.raises(LineError):
            line.move(event)
        assert line.state is state


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["priority", "bulk"])),
        max_size=40,
    )
)
def test_every_message_comes_out_once_in_lane_then_id_order_per_destination(items):
    q = DeliveryQueue()
    for i, (dest, lane) in enumerate(items):
        q.push(msg(i, dest, lane))
    out = []
    while (m := q.pop()) is not None:
        out.append(m)
        q.done(m.destination)
    assert sorted(m.id for m in out) == list(range(len(items)))
    for dest in "abc":
        mine = [m for m in out if m.destination == dest]
        lanes = [m.lane for m in mine]
        assert lanes == sorted(lanes, key=lambda lane: lane != "priority")
        for lane in ("priority", "bulk"):
            ids = [m.id for m in mine if m.lane == lane]
            assert ids == sorted(ids)
