# Supervision of background work (gateway/tasks.py) and the node's stop when its writer fails.
from __future__ import annotations

import asyncio
import logging

import pytest

from gateway import app, tasks
from gateway.metrics import BACKGROUND_ERRORS


def counted(task: str) -> float:
    return BACKGROUND_ERRORS.labels(task)._value.get()


def fail(message: str) -> None:
    raise ValueError(message)


def test_forever_restarts_a_loop_that_raises_and_logs_each_kind_of_error_once(caplog):
    runs: list[int] = []

    async def loop() -> None:
        runs.append(1)
        if len(runs) <= 2:
            fail(f"bad row {len(runs)}")  # the same place both times: one kind of error
        # the third run ends normally

    raised_at = fail.__code__.co_firstlineno + 1
    before = counted("test loop")
    with caplog.at_level(logging.ERROR, logger="gateway.tasks"):
        asyncio.run(tasks.forever("test loop", loop, backoff=0))
    assert len(runs) == 3
    assert counted("test loop") == before + 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "test loop failed: ValueError: bad row 1",
        f"test loop failed: ValueError: bad row 2 (seen before, at {__file__}:{raised_at})",
    ]
    assert errors[0].exc_info is not None and errors[1].exc_info is None  # one traceback


def test_forever_lets_cancellation_through():
    async def main() -> None:
        started = asyncio.Event()

        async def loop() -> None:
            started.set()
            await asyncio.Event().wait()

        task = asyncio.ensure_future(tasks.forever("test cancelled", loop, backoff=0))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_guarded_reports_with_the_message_id_and_recovers(caplog):
    recovered: list[BaseException] = []

    async def deliver() -> int:
        raise KeyError("route")

    async def main() -> int | None:
        return await tasks.guarded("test delivery", deliver(), recovered.append, message_id=42)

    before = counted("test delivery")
    with caplog.at_level(logging.ERROR, logger="gateway.tasks"):
        assert asyncio.run(main()) is None
    [error] = recovered
    assert isinstance(error, KeyError)
    assert counted("test delivery") == before + 1
    [record] = caplog.records
    assert record.getMessage() == "test delivery failed for message 42: KeyError: 'route'"
    assert record.message_id == 42  # type: ignore[attr-defined] - the JSON log's field


def test_guarded_reports_a_recovery_that_fails_too():
    async def deliver() -> None:
        raise RuntimeError("first")

    def recover(exc: BaseException) -> None:
        raise RuntimeError("second")

    before = counted("test twice (recovery)")
    asyncio.run(tasks.guarded("test twice", deliver(), recover, message_id=7))
    assert counted("test twice (recovery)") == before + 1


def test_guarded_returns_the_result_when_all_goes_well():
    async def work() -> str:
        return "done"

    assert asyncio.run(tasks.guarded("test ok", work())) == "done"


class FailingWriter:
    async def failed(self) -> str:
        return "the writer thread died: SystemExit"


def test_the_node_stops_with_an_error_when_its_writer_fails():
    async def main() -> None:
        await app._until_signal_or_failure(FailingWriter())  # type: ignore[arg-type]

    with pytest.raises(app.NodeFailed) as caught:
        asyncio.run(main())
    assert "the store writer failed" in str(caught.value)
    assert "SystemExit" in str(caught.value)
