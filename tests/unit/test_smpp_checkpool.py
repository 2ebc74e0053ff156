"""The password-check pool: bounded line, fair by key, the longest line gives way."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

import pytest

from gateway.smpp.checkpool import CheckPool, Dropped

WAIT = 10.0


def blocked_pool(limit: int) -> tuple[CheckPool, threading.Event, Future]:
    """A one-thread pool whose thread is held by a first job until the event is set."""
    pool = CheckPool(1, limit)
    release, started = threading.Event(), threading.Event()

    def hold() -> str:
        started.set()
        release.wait(WAIT)
        return "held"

    first = pool.submit("hold", hold)
    assert first is not None and started.wait(WAIT)
    return pool, release, first


def recorder(order: list[str], name: str) -> Callable[[], str]:
    def job() -> str:
        order.append(name)
        return name

    return job


def test_keys_take_turns_so_a_flood_does_not_hold_another_key_back():
    pool, release, first = blocked_pool(limit=100)
    order: list[str] = []
    futures = [pool.submit("FLOOD", recorder(order, f"flood{i}")) for i in range(5)]
    futures.append(pool.submit("TATA", recorder(order, "tata")))
    release.set()
    assert [f.result(WAIT) for f in futures if f is not None]
    assert first.result(WAIT) == "held"
    assert order.index("tata") <= 1  # after at most one check of the flood
    pool.close()


def test_a_full_line_drops_the_longest_lines_newest_for_a_new_key():
    pool, release, _ = blocked_pool(limit=3)
    flood = [pool.submit("FLOOD", lambda: "flood") for _ in range(3)]
    assert pool.waiting == 3
    tata = pool.submit("TATA", lambda: "tata")
    assert tata is not None and pool.waiting == 3
    with pytest.raises(Dropped):
        flood[2].result(WAIT)  # gave its place away
    assert pool.submit("FLOOD", lambda: "more") is None  # the longest line: refused at once
    other = pool.submit("OTHER", lambda: "other")  # FLOOD (2) is longer than OTHER's (0) + 1
    assert other is not None
    assert pool.submit("ANOTHER", lambda: "x") is None  # lines of 1: nothing to drop
    release.set()
    assert tata.result(WAIT) == "tata" and other.result(WAIT) == "other"
    assert flood[0].result(WAIT) == "flood"
    pool.close()


def test_a_cancelled_check_is_not_run_and_errors_reach_the_caller():
    pool, release, _ = blocked_pool(limit=10)
    ran: list[str] = []
    cancelled = pool.submit("A", recorder(ran, "cancelled"))
    assert cancelled is not None and cancelled.cancel()

    def boom() -> None:
        raise ValueError("bad hash")

    failing = pool.submit("B", boom)
    release.set()
    assert failing is not None
    with pytest.raises(ValueError, match="bad hash"):
        failing.result(WAIT)
    assert ran == []
    pool.close()


def test_close_drops_what_waits_and_refuses_new_checks():
    pool, release, first = blocked_pool(limit=10)
    waiting = pool.submit("A", lambda: "a")
    pool.close()
    assert waiting is not None
    with pytest.raises(Dropped):
        waiting.result(WAIT)
    assert pool.submit("A", lambda: "a") is None
    release.set()
    assert first.result(WAIT) == "held"


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        CheckPool(0, 10)
    with pytest.raises(ValueError):
        CheckPool(1, 0)
