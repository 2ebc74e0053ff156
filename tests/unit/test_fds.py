# Unit tests of the file descriptor watch (gateway/fds.py): margin, shortage memory, handler.
from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket
from typing import Any

import pytest

from gateway import fds


def test_the_margin_is_five_percent_and_at_least_one() -> None:
    assert fds.reserve(1024) == 52 and fds.reserve(128) == 7 and fds.reserve(10) == 1
    assert not fds.near_limit(120, 128) and fds.near_limit(121, 128)
    assert fds.near_limit(128, 128)
    assert not fds.near_limit(10**6, None)  # unlimited


def test_open_count_sees_a_new_descriptor() -> None:
    before = fds.open_count()
    assert before is not None
    with open(__file__, "rb"):
        assert fds.open_count() == before + 1


def test_a_shortage_is_reported_for_a_while_then_forgotten() -> None:
    watch = fds.FdWatch(recent=10.0)
    assert watch.shortage(100.0) is None
    watch.note("accept() failed (Too many open files)", 100.0)
    assert watch.shortage(103.2) == "accept() failed (Too many open files) 3s ago"
    assert watch.shortage(110.0) is not None and watch.shortage(110.5) is None


def test_an_accept_near_the_limit_is_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fds, "soft_limit", lambda: 128)
    watch = fds.FdWatch()
    assert not watch.accepted(119, 5.0) and watch.shortage(5.0) is None
    assert watch.accepted(120, 6.0)  # descriptor 120: 121 open at least, within 7 of 128
    assert (
        watch.shortage(6.0) == "a connection was accepted on descriptor 120 near the limit 0s ago"
    )


class FakeLoop:
    def __init__(self) -> None:
        self.now = 0.0
        self.defaults: list[dict[str, Any]] = []

    def time(self) -> float:
        return self.now

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.defaults.append(context)


def test_failed_accepts_are_noted_and_logged_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = fds.FdWatch(log_every=60.0)
    handler = watch.exception_handler(None)
    loop = FakeLoop()
    out = {"message": fds.OUT_OF_RESOURCE, "exception": OSError(errno.EMFILE, "x")}
    with caplog.at_level(logging.ERROR, "gateway"):
        for i in range(300):  # asyncio reports each failed accept() of a flood
            loop.now = i / 10
            handler(loop, out)
    assert watch.failed_accepts == 300 and loop.defaults == []  # no traceback per accept
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("accept() failed (Too many open files)")
    assert watch.shortage(30.0) is not None
    other = {"message": "Task exception was never retrieved", "exception": ValueError()}
    handler(loop, other)  # anything else goes on to the default handler
    assert loop.defaults == [other]


def test_the_handler_chains_to_the_previous_one() -> None:
    seen: list[dict[str, Any]] = []
    handler = fds.FdWatch().exception_handler(lambda loop, context: seen.append(context))
    handler(FakeLoop(), {"message": "something else"})
    assert seen == [{"message": "something else"}]


def test_a_real_loop_reports_emfile_to_the_handler() -> None:
    """The standard loop's accept() failing for want of descriptors reaches the watch (the
    message the handler matches is asyncio's own)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    async def scenario() -> fds.FdWatch:
        loop = asyncio.get_running_loop()
        watch = fds.FdWatch()
        loop.set_exception_handler(watch.exception_handler(None))
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        lowest_free = os.dup(0)  # descriptors are numbered lowest free first
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no room to accept
        try:
            for _ in range(100):  # a few turns of the loop: the accept is tried and fails
                await asyncio.sleep(0)
                if watch.failed_accepts:
                    break
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            client.close()
            server.close()
        return watch

    watch = asyncio.run(scenario())  # the standard loop, not uvloop
    assert watch.failed_accepts >= 1 and "Too many open files" in watch.what
