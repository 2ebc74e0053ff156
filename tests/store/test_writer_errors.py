# The batch writer survives unexpected errors: the operations concerned fail alone, the thread
# goes on, and a writer that cannot go on fails /readyz and wakes the node (issue 15).
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, select

from gateway.config import parse_config
from gateway.metrics import WRITER_ERRORS
from gateway.smpp.constants import Status
from gateway.status import Node
from gateway.store.engine import make_engine, migrate
from gateway.store.schema import customers
from gateway.store.writer import BROKEN_AFTER, Batch, BatchWriter, WriterError

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


class Put:
    """Writes one customer; ``broken`` makes its staging, its row or its statement fail."""

    def __init__(self, name: str, broken: str | None = None) -> None:
        self.name = name
        self.broken = broken
        self.answer: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future()
        )

    def stage(self, batch: Batch) -> None:
        [pk] = batch.new_ids(1)
        created = T0.replace(tzinfo=None) if self.broken == "row" else T0  # naive: ValueError
        batch.add(customers, {"id": pk, "name": self.name, "created_at": created})
        if self.broken == "stage":
            raise TypeError("a bug in staging, after a row was added")
        if self.broken == "exit":
            raise SystemExit("the thread is told to end")
        if self.broken == "statement":
            batch.then(lambda conn: len(None))  # type: ignore[arg-type] - TypeError in a statement

    def finish(self, error: BaseException | None) -> None:
        self.answer.set_result(error)
        if self.broken == "finish":
            raise RuntimeError("a bug in finish")


def names(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(customers.c.name)).scalars())


def errors(where: str) -> float:
    return WRITER_ERRORS.labels(where)._value.get()


async def run(engine: Engine, make: Callable[[], list[Put]]) -> tuple[BatchWriter, list[Put]]:
    """Submit the ops before the thread starts, so that they form one batch; wait for all."""
    writer = BatchWriter(engine)
    ops = make()
    for op in ops:
        writer.submit(op)
    writer.start(asyncio.get_running_loop())
    await asyncio.wait_for(asyncio.gather(*(op.answer for op in ops)), 30)
    return writer, ops


async def still_writes(writer: BatchWriter, engine: Engine) -> None:
    after = Put("after")
    writer.submit(after)
    assert await asyncio.wait_for(after.answer, 30) is None
    assert "after" in names(engine)


def test_a_stage_that_raises_fails_alone_and_leaves_nothing_behind(engine):
    async def scenario() -> None:
        before = errors("stage")
        writer, (a, bad, c) = await run(
            engine, lambda: [Put("a"), Put("bad", broken="stage"), Put("c")]
        )
        error = bad.answer.result()
        assert isinstance(error, WriterError) and "TypeError" in str(error)
        assert error.status == Status.ESME_RSYSERR and error.sip == 500
        assert a.answer.result() is None and c.answer.result() is None
        assert names(engine) == {"a", "c"}  # the row it staged before raising is not written
        assert errors("stage") == before + 1
        await still_writes(writer, engine)
        assert writer.failure is None
        writer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("broken", ["row", "statement"])
def test_an_unexpected_error_in_the_transaction_fails_its_op_only(engine, broken):
    async def scenario() -> None:
        before = errors("batch")
        writer, (a, bad, c) = await run(engine, lambda: [Put("a"), Put("bad", broken), Put("c")])
        assert isinstance(bad.answer.result(), WriterError)
        assert a.answer.result() is None and c.answer.result() is None
        assert names(engine) == {"a", "c"}
        assert errors("batch") == before + 1
        await still_writes(writer, engine)  # the thread lives
        assert writer.failure is None
        writer.close()

    asyncio.run(scenario())


def test_a_finish_that_raises_does_not_stop_the_others(engine):
    async def scenario() -> None:
        writer, ops = await run(engine, lambda: [Put("a", broken="finish"), Put("b"), Put("c")])
        assert [op.answer.result() for op in ops] == [None, None, None]
        await still_writes(writer, engine)
        writer.close()

    asyncio.run(scenario())


def test_repeated_unexpected_failures_fail_the_writer(engine):
    async def scenario() -> None:
        writer = BatchWriter(engine)
        writer.start(asyncio.get_running_loop())
        for i in range(BROKEN_AFTER):
            op = Put(f"bad{i}", broken="statement")
            writer.submit(op)
            assert isinstance(await asyncio.wait_for(op.answer, 30), WriterError)
        reason = await asyncio.wait_for(writer.failed(), 30)
        assert f"{BROKEN_AFTER} writes in a row failed" in reason
        assert writer.failure == reason
        writer.close()

    asyncio.run(scenario())


def node_of(writer: BatchWriter, engine: Engine) -> Node:
    config = parse_config({}, "conf/test.yaml")
    smpp = SimpleNamespace(addresses=[("127.0.0.1", 1, False)] * len(config.smpp.listen))
    sip = SimpleNamespace(transports=SimpleNamespace(bound=[object()] * len(config.sip.listen)))
    return Node(config, engine, T0, writer, smpp, sip, None, None)


def test_a_dead_writer_thread_fails_readiness_and_refuses_new_work(engine):
    async def scenario() -> None:
        writer = BatchWriter(engine)
        node = node_of(writer, engine)
        writer.start(asyncio.get_running_loop())
        assert await node.readiness() == []
        before = errors("thread")
        dying = Put("dying", broken="exit")  # SystemExit: not an Exception, the thread ends
        writer.submit(dying)
        reason = await asyncio.wait_for(writer.failed(), 30)
        assert "the writer thread died: SystemExit" in reason
        # its answer comes from the dying thread, on its own way to the loop
        assert isinstance(await asyncio.wait_for(dying.answer, 30), WriterError)
        assert errors("thread") == before + 1
        problems: list[Any] = await node.readiness()
        assert problems == [f"store writer: {reason}"]
        late = Put("late")  # answered at once with an error instead of waiting forever
        writer.submit(late)
        assert isinstance(await asyncio.wait_for(late.answer, 30), WriterError)
        assert "late" not in names(engine)
        writer.close()

    asyncio.run(scenario())
