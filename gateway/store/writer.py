# Grouped commits: one writer thread turns many accepted messages into one transaction.
"""The batch writer behind "accepted means durable" (docs/architecture.md rule 7).

The event loop submits operations; a single writer thread takes everything waiting (up to
``max_batch``), lets each operation stage its rows, writes them with one executemany per
table in one transaction, commits, and only then calls every operation's ``finish`` back on
the loop. While one commit is on its way to disk the next batch gathers, so the cost of a
durable commit is shared by all messages that arrived meanwhile.

An operation whose staging fails fails alone (what it staged before failing is taken out of
the batch). When the transaction fails, the batch is tried again one operation per
transaction, so one bad row cannot refuse its neighbours.

Nothing else stops the thread: an unexpected error (a bug, not the database's: a TypeError in
a statement, a naive datetime in a row) fails the operations concerned with
:class:`WriterError` (answered ESME_RSYSERR / SIP 500), is logged with its traceback and
counted (``gateway_store_writer_errors_total``), and the thread goes on. When it cannot go on
- ``BROKEN_AFTER`` transactions in a row failed that way, or the thread died anyway - the
writer is *failed*: :attr:`BatchWriter.failure` says why, /readyz answers 503, new operations
are refused at once, and :meth:`BatchWriter.failed` wakes the node, which stops with an error
so that its supervisor (systemd) starts it again.

When the database itself is unavailable (server down, connection lost, file locked, disk
full or read-only), new traffic is refused at once - an operation fails and answers its
sender with an error, having acknowledged nothing - while *persistent* operations (what
already-accepted messages became: steps, outcomes, CDRs, receipts; ``persistent = True``)
are kept, in order, and written when the database is back. The writer then tries again
every ``RETRY_MIN``..``RETRY_MAX`` seconds (doubling) and, between tries, refuses
non-persistent operations without waiting for the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Dialect, Engine, Table
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from gateway.errors import GatewayError
from gateway.metrics import COMMIT_LATENCY, COMMIT_OPERATIONS, WRITER_ERRORS
from gateway.smpp.constants import Status
from gateway.store.fastinsert import FastInsert, FastUpdate
from gateway.store.ids import IdAllocator

log = logging.getLogger("gateway.store.writer")

RETRY_MIN = 0.2
RETRY_MAX = 2.0
ID_HEADROOM = 5000
"""Ids kept at hand before each transaction, for the statements that stage rows inside it
(receipts of a settled message: one per part)."""
BROKEN_AFTER = 5
"""Transactions failing in a row with an unexpected error (not the database's) after which
the writer is failed: the node stops so that its supervisor restarts it."""


class WriterError(GatewayError):
    """An operation was not written because of an unexpected error inside the writer (a bug,
    not the database): answered ESME_RSYSERR to a carrier and 500 to an app."""

    status = Status.ESME_RSYSERR
    sip = 500

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else '-'}"


@dataclass(frozen=True)
class UpdateSpec:
    """A grouped UPDATE: ``columns`` set by ``key`` (one executemany per batch), ``guard`` a
    fixed SQL condition of the code's own added to the WHERE."""

    table: Table
    columns: tuple[str, ...]
    key: str = "id"
    guard: str = ""


class Batch:
    """What one transaction holds: rows per table (inserted first), grouped updates, then
    statements. A statement may add rows or updates: they are written in a further round of
    the same transaction."""

    def __init__(self, ids: IdAllocator) -> None:
        self._ids = ids
        self.rows: dict[tuple[Table, bool], list[dict[str, Any]]] = {}
        self.updates: dict[UpdateSpec, list[dict[str, Any]]] = {}
        self.statements: list[Callable[[Connection], None]] = []

    def mark(self) -> tuple[dict[Any, int], dict[Any, int], int]:
        """Where the batch stands now, to :meth:`undo` an operation whose staging failed."""
        return (
            {key: len(rows) for key, rows in self.rows.items()},
            {spec: len(rows) for spec, rows in self.updates.items()},
            len(self.statements),
        )

    def undo(self, mark: tuple[dict[Any, int], dict[Any, int], int]) -> None:
        """Drop what was staged since ``mark``."""
        rows, updates, statements = mark
        for key in list(self.rows):
            del self.rows[key][rows.get(key, 0) :]
            if not self.rows[key]:
                del self.rows[key]
        for spec in list(self.updates):
            del self.updates[spec][updates.get(spec, 0) :]
            if not self.updates[spec]:
                del self.updates[spec]
        del self.statements[statements:]

    def new_ids(self, count: int = 1) -> list[int]:
        return self._ids.take(count)

    def add(self, table: Table, row: dict[str, Any], *, ignore: bool = False) -> None:
        """Insert ``row``; with ``ignore``, a row whose unique key exists is skipped."""
        self.rows.setdefault((table, ignore), []).append(row)

    def change(self, spec: UpdateSpec, row: dict[str, Any]) -> None:
        """Update one row by its key with ``spec`` (``row`` holds the columns and the key)."""
        self.updates.setdefault(spec, []).append(row)

    def then(self, statement: Callable[[Connection], None]) -> None:
        """Run ``statement`` in the same transaction, after the grouped inserts and updates."""
        self.statements.append(statement)

    def write(self, conn: Connection) -> None:
        dialect = conn.dialect
        while self.rows or self.updates or self.statements:
            rows, self.rows = self.rows, {}
            updates, self.updates = self.updates, {}
            statements, self.statements = self.statements, []
            for (table, ignore), group in rows.items():
                _inserter(table, dialect, ignore).execute(conn, group)
            for spec, group in updates.items():
                _updater(spec, dialect).execute(conn, group)
            for statement in statements:
                statement(conn)


_INSERTERS: dict[tuple[str, str, bool], FastInsert] = {}
_UPDATERS: dict[tuple[UpdateSpec, str], FastUpdate] = {}


def _inserter(table: Table, dialect: Dialect, ignore: bool = False) -> FastInsert:
    key = (table.name, dialect.name, ignore)
    found = _INSERTERS.get(key)
    if found is None:
        found = _INSERTERS[key] = FastInsert(table, dialect, ignore=ignore)
    return found


def _updater(spec: UpdateSpec, dialect: Dialect) -> FastUpdate:
    key = (spec, dialect.name)
    found = _UPDATERS.get(key)
    if found is None:
        found = _UPDATERS[key] = FastUpdate(
            spec.table, list(spec.columns), spec.key, dialect, spec.guard
        )
    return found


class Op(Protocol):
    """One unit of work: staged in the writer thread, finished on the event loop. An op with
    a true ``persistent`` attribute is kept while the database is unavailable (it may be
    staged several times: staging must start afresh each time)."""

    def stage(self, batch: Batch) -> None: ...

    def finish(self, error: BaseException | None) -> None: ...


class StoreUnavailable(SQLAlchemyError):
    """The database could not be reached a moment ago; refused without trying again yet."""


# SQLite reports a bad statement ("no such table") as OperationalError too: only these mean
# that the file cannot take a write now
_SQLITE_UNAVAILABLE = ("locked", "busy", "disk", "readonly", "unable to open", "i/o error")


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is unavailable (as opposed to a bad statement)."""
    if isinstance(exc, StoreUnavailable):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if orig is None or type(orig).__name__ not in {"OperationalError", "InterfaceError"}:
        return False
    if type(orig).__module__.startswith("sqlite3"):
        return any(word in str(orig).lower() for word in _SQLITE_UNAVAILABLE)
    return True


def _persistent(op: Op) -> bool:
    return bool(getattr(op, "persistent", False))


class BatchWriter:
    """The single writer of accepted traffic."""

    def __init__(self, engine: Engine, *, max_batch: int = 1000, block: int = 1000) -> None:
        self._engine = engine
        self._ids = IdAllocator(engine, block=block)
        self._max_batch = max_batch
        self._queue: deque[Op] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0
        self.written = 0
        self._down: SQLAlchemyError | None = None  # why the last write found no database
        self._retry_at = 0.0
        self._delay = RETRY_MIN
        self.errors = 0  # unexpected errors (not the database's), counted since the start
        self._broken_run = 0  # transactions in a row that failed with an unexpected error
        self._failure: str | None = None
        self._failed: asyncio.Event | None = None
        self._writing: list[Op] = []  # the operations being written now

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._failed = asyncio.Event()
        self._thread = threading.Thread(target=self._main, name="batch-writer", daemon=True)
        self._thread.start()

    @property
    def failure(self) -> str | None:
        """Why the writer cannot go on (the node must restart), or None while it works."""
        thread = self._thread
        if self._failure is None and thread is not None and not thread.is_alive():
            return None if self._closing else "the writer thread is not running"
        return self._failure

    async def failed(self) -> str:
        """Wait until the writer cannot go on; the reason."""
        assert self._failed is not None
        await self._failed.wait()
        return self.failure or "the writer failed"

    def _fail(self, reason: str) -> None:
        """From the writer thread: the writer cannot go on."""
        if self._failure is None:
            log.critical("batch writer failed, the node must restart: %s", reason)
            self._failure = reason
        loop, event = self._loop, self._failed
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody to tell
                loop.call_soon_threadsafe(event.set)

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def engine(self) -> Engine:
        """The store it writes to (for reads that need not wait in line with the writes)."""
        return self._engine

    @property
    def down(self) -> str | None:
        """Why the database is unavailable now, or None while it takes writes."""
        down = self._down
        return None if down is None else str(down).splitlines()[0][:200]

    def submit(self, op: Op) -> None:
        """Queue ``op``; its ``finish`` runs on the loop once it is committed (or failed)."""
        with self._wake:
            if self._closing:
                raise RuntimeError("the writer is closed")
            failure = self.failure
            if failure is None:
                self._queue.append(op)
                self._wake.notify()
                return
        # nobody would write it: answered at once (the node is stopping to be restarted)
        self._deliver([(op, WriterError(f"the store writer failed: {failure}"))])

    async def barrier(self) -> None:
        """Return once every operation submitted before this call is finished."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.submit(_Barrier(done))
        await done

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop the thread."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- writer thread ------------------------------------------------------------------
    def _main(self) -> None:
        """The thread: :meth:`_run` until closed; if it ever ends otherwise, the writer is
        failed and what waits is answered with an error."""
        reason = "the writer thread ended"
        try:
            self._run()
            return
        except BaseException as exc:  # logged, and the node told to restart
            WRITER_ERRORS.labels("thread").inc()
            log.critical("the batch writer thread died", exc_info=exc)
            reason = f"the writer thread died: {_describe(exc)}"
        finally:
            if not self._closing or self._queue:
                self._fail(reason)
                with self._wake:
                    left, self._queue = [*self._writing, *self._queue], deque()
                self._writing = []
                self._deliver([(op, WriterError(reason)) for op in left])

    def _run(self) -> None:
        while True:
            refused: list[tuple[Op, BaseException | None]] = []
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue and self._closing:
                    return
                wait = self._retry_at - time.monotonic() if self._down is not None else 0.0
                if wait > 0:
                    # the database was unavailable a moment ago: refuse new traffic now, keep
                    # what accepted messages became until the next try
                    kept: deque[Op] = deque()
                    for op in self._queue:
                        if _persistent(op):
                            kept.append(op)
                        else:
                            refused.append((op, StoreUnavailable(str(self._down))))
                    self._queue = kept
                    if not refused:
                        self._wake.wait(wait)
                        continue
                    ops: list[Op] = []
                else:
                    count = min(len(self._queue), self._max_batch)
                    ops = [self._queue.popleft() for _ in range(count)]
            if refused:
                self._deliver(refused)
                continue
            self._writing = ops  # answered by _main if the thread dies while writing them
            try:
                self._write(ops)
            except Exception as exc:  # noqa: BLE001 - a bug of the writer's: the thread goes on
                # _write answers its operations last: none was answered
                self._unexpected("thread", exc, len(ops))
                self._deliver([(op, WriterError(f"not written: {_describe(exc)}")) for op in ops])
            self._writing = []

    def _write(self, ops: list[Op]) -> None:
        results: list[tuple[Op, BaseException | None]] = []
        batch = Batch(self._ids)
        staged: list[Op] = []
        for op in ops:
            mark = batch.mark()
            try:
                op.stage(batch)
                staged.append(op)
            except Exception as exc:  # noqa: BLE001 - the op's own error, reported to its sender
                batch.undo(mark)  # what it staged before failing is not written
                results.append((op, self._stage_error(op, exc)))
        try:
            self._ids.ensure(ID_HEADROOM)
            started = time.perf_counter()
            with self._engine.begin() as conn:
                batch.write(conn)
            COMMIT_LATENCY.observe(time.perf_counter() - started)
            COMMIT_OPERATIONS.inc(len(staged))
            self.commits += 1
            self.written += len(staged)
            results.extend((op, None) for op in staged)
            self._broken_run = 0
            if self._down is not None:
                log.warning("database available again; writing what waited")
                self._down, self._delay = None, RETRY_MIN
        except SQLAlchemyError as exc:
            if unavailable(exc):
                results.extend((op, exc) for op in staged if not _persistent(op))
                self._keep([op for op in staged if _persistent(op)], exc)
            elif len(staged) > 1:
                log.warning("batch of %d failed (%s); writing one by one", len(staged), exc)
                results.extend(self._one_by_one(staged))
            else:
                log.error("write failed: %s", exc)
                results.extend((op, exc) for op in staged)
        except Exception as exc:  # noqa: BLE001 - not the database's: a bug in a statement or row
            if len(staged) > 1:
                log.warning(
                    "batch of %d failed (%s); writing one by one", len(staged), _describe(exc)
                )
                results.extend(self._one_by_one(staged))
            else:
                self._unexpected("batch", exc, len(staged))
                results.extend((op, WriterError(f"not written: {_describe(exc)}")) for op in staged)
        self._deliver(results)

    def _stage_error(self, op: Op, exc: Exception) -> BaseException:
        """An operation's staging failed: its own error (a GatewayError, the database's) as it
        is, anything else counted and logged as a bug and answered as WriterError."""
        if isinstance(exc, GatewayError | SQLAlchemyError):
            return exc
        self.errors += 1
        WRITER_ERRORS.labels("stage").inc()
        log.error("staging %s failed", type(op).__name__, exc_info=exc)
        return WriterError(f"not written: {_describe(exc)}")

    def _unexpected(self, where: str, exc: BaseException, count: int) -> None:
        """A transaction failed with an error that is not the database's."""
        self.errors += 1
        self._broken_run += 1
        WRITER_ERRORS.labels(where).inc()
        log.error("unexpected error writing %d operations", count, exc_info=exc)
        if self._broken_run >= BROKEN_AFTER:
            self._fail(f"{self._broken_run} writes in a row failed; last: {_describe(exc)}")

    def _keep(self, ops: list[Op], exc: SQLAlchemyError) -> None:
        """The database is unavailable: put ``ops`` back at the head of the queue, in order,
        and try again after a growing delay."""
        if self._down is None:
            log.error("database unavailable (%s); refusing new traffic, keeping %d writes",
                      exc, len(ops))  # fmt: skip
        self._down = exc
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, RETRY_MAX)
        with self._wake:
            self._queue.extendleft(reversed(ops))

    def _one_by_one(self, ops: list[Op]) -> list[tuple[Op, BaseException | None]]:
        out: list[tuple[Op, BaseException | None]] = []
        kept: list[Op] = []
        down: SQLAlchemyError | None = None
        for op in ops:
            batch = Batch(self._ids)
            try:
                op.stage(batch)
                self._ids.ensure(ID_HEADROOM)
                with self._engine.begin() as conn:
                    batch.write(conn)
                self.commits += 1
                self.written += 1
                self._broken_run = 0
                out.append((op, None))
            except SQLAlchemyError as exc:
                if unavailable(exc) and _persistent(op):  # the database went away meanwhile
                    kept.append(op)
                    down = exc
                else:
                    out.append((op, exc))
            except Exception as exc:  # noqa: BLE001 - reported to the op's sender
                if isinstance(exc, GatewayError):
                    out.append((op, exc))
                else:
                    self._unexpected("batch", exc, 1)
                    out.append((op, WriterError(f"not written: {_describe(exc)}")))
        if down is not None:
            self._keep(kept, down)
        return out

    def _deliver(self, results: list[tuple[Op, BaseException | None]]) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(_finish_all, results)
        except RuntimeError:  # the loop is gone (shutdown): nobody is waiting for answers
            log.warning("event loop closed; %d results not delivered", len(results))


class _Barrier:
    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done

    def stage(self, batch: Batch) -> None:
        """Nothing to write: it only marks a place in the queue."""

    def finish(self, error: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _finish_all(results: list[tuple[Op, BaseException | None]]) -> None:
    for op, error in results:
        try:
            op.finish(error)
        except Exception:
            log.exception("finishing a written operation failed")
