# PDUs for carriers (delivery receipts, MO messages): stored first, sent on a receiver bind.
"""The way out to carriers: ``deliver_sm`` that must survive restarts and absent binds.

A PDU for a carrier is written to the ``outbox`` table (durably, through the batch writer)
and only then sent on one of the carrier's bound receiver or transceiver sessions, as their
windows allow. It leaves the table when the carrier answers ESME_ROK; a temporary error or a
timeout puts it back in line after a growing delay (1 s doubling to 60 s), a permanent error
(or ``MAX_ATTEMPTS``) drops it with a log line. When no receiver is bound it waits; the
carrier's next receiver bind loads it again. Memory holds at most ``MAX_QUEUED`` PDUs per
carrier; the rest waits in the table.

**Messages delivered to a carrier** (a policy ``--carrier``, :mod:`gateway.smpp.mo`) travel the
same way, one row per part (``part`` set), written in the transaction that starts the
attempt. They are *tracked*: their answer is not retried here but reported to the pipeline
(:meth:`Outbox.track`), which settles the message (every part ESME_ROK: delivered), fails it
over to the next policy or retries it by ``delivery.retry``. When the carrier's last
receiver goes, the parts still waiting are handed back the same way ("not bound"). A part
row found in the table with no attempt tracking it (left by a previous run: the message is
still ``sending`` and is sent again whole) is dropped unsent. What we send a carrier is
limited by its ``throughput`` setting (segments per second, a token bucket of its own, the
same rate it may submit at); receipts are not counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from gateway.smpp.codec import Pdu, decode, encode
from gateway.smpp.constants import Status
from gateway.smpp.guard import TokenBucket
from gateway.store.events import stage_event
from gateway.store.schema import outbox
from gateway.store.textcrypt import TextUnreadable, open_pdu, seal_pdu
from gateway.store.writer import Batch, BatchWriter

if TYPE_CHECKING:
    from gateway.smpp.server import SmppConnection

log = logging.getLogger("gateway.smpp.outbox")

MAX_QUEUED = 10_000
LOAD_BATCH = 1_000
MAX_ATTEMPTS = 10
RETRY_FIRST = 1.0  # seconds before the first retry of a PDU; doubling up to RETRY_MAX
RETRY_MAX = 60.0
PERMANENT = frozenset({Status.ESME_RX_P_APPN, Status.ESME_RINVCMDID})


@dataclass(slots=True)
class Item:
    id: int
    carrier_id: int
    pdu: Pdu
    attempts: int = 0
    message_id: int | None = None  # the message a receipt is about (its trace notes the answer)
    part: int | None = None  # a part of a message delivered to the carrier (tracked)


Report = Callable[[Item, int | None, str], None]
"""A tracked part's end: (item, command_status or None when unanswered/unsent, why)."""


def stage_pdu(
    batch: Batch, carrier_id: int, pdu: Pdu, message_id: int | None, part: int | None = None
) -> Item:
    """Add ``pdu`` for the carrier to ``batch``; once committed, hand the Item to
    :meth:`Outbox.queued` (the pipeline writes receipts in the transaction of the outcome)."""
    [pk] = batch.new_ids(1)
    batch.add(
        outbox,
        {
            "id": pk,
            "carrier_id": carrier_id,
            "message_id": message_id,
            "pdu": seal_pdu(pk, encode(pdu)),  # an MO text, or a receipt quoting one
            "created_at": datetime.now(UTC),
            "attempts": 0,
            "part": part,
        },
    )
    return Item(pk, carrier_id, pdu, message_id=message_id, part=part)


@dataclass
class _Store:
    """Write one PDU to the outbox; then hand it to the outbox for sending. Persistent: a
    receipt of an accepted message waits for a database that went away."""

    persistent = True

    box: Outbox
    carrier_id: int
    pdu: Pdu
    message_id: int | None
    item: Item | None = None

    def stage(self, batch: Batch) -> None:
        self.item = stage_pdu(batch, self.carrier_id, self.pdu, self.message_id)

    def finish(self, error: BaseException | None) -> None:
        if error is not None or self.item is None:
            log.error("PDU for carrier %d not stored: %s", self.carrier_id, error)
            return
        self.box.queued(self.item)


@dataclass
class _Load:
    """Read waiting PDUs of a carrier, beyond those already in memory."""

    box: Outbox
    carrier_id: int
    after: int
    rows: list[Any] = field(default_factory=list)

    def stage(self, batch: Batch) -> None:
        def load(conn: Connection) -> None:
            self.rows = list(
                conn.execute(
                    select(
                        outbox.c.id,
                        outbox.c.pdu,
                        outbox.c.attempts,
                        outbox.c.message_id,
                        outbox.c.part,
                    )
                    .where(outbox.c.carrier_id == self.carrier_id, outbox.c.id > self.after)
                    .order_by(outbox.c.id)
                    .limit(LOAD_BATCH)
                )
            )

        batch.then(load)

    def finish(self, error: BaseException | None) -> None:
        self.box.loaded(self.carrier_id, self.rows, error)


@dataclass
class _Remove:
    pk: int
    message_id: int | None = None
    detail: str = ""  # what became of the PDU, for the message's trace
    event: str | None = "receipt-sent"  # the trace's event (None: no event)
    persistent = True  # else the PDU is sent again after a restart

    def stage(self, batch: Batch) -> None:
        pk = self.pk
        if self.message_id is not None and self.event is not None:
            stage_event(batch, self.message_id, self.event, detail=self.detail)
        batch.then(lambda conn: conn.execute(delete(outbox).where(outbox.c.id == pk)))

    def finish(self, error: BaseException | None) -> None:
        if error is not None:  # sent again after a restart: at-least-once
            log.warning("outbox row %d not removed: %s", self.pk, error)


@dataclass
class _Attempted:
    """A PDU's failed attempts so far, kept with it (``MAX_ATTEMPTS`` holds across restarts)."""

    pk: int
    attempts: int
    persistent = True

    def stage(self, batch: Batch) -> None:
        pk, attempts = self.pk, self.attempts
        batch.then(
            lambda conn: conn.execute(
                update(outbox).where(outbox.c.id == pk).values(attempts=attempts)
            )
        )

    def finish(self, error: BaseException | None) -> None:
        if error is not None:
            log.warning("outbox row %d: attempts not recorded: %s", self.pk, error)


class Outbox:
    """Per-carrier lines of PDUs and their dispatch to bound receivers."""

    def __init__(self, writer: BatchWriter) -> None:
        self.writer = writer
        self._lines: dict[int, deque[Item]] = {}
        self._seen: dict[int, int] = {}  # highest outbox id read or queued, per carrier
        self._loading: set[int] = set()
        self._overflow: set[int] = set()  # carriers with PDUs in the table but not in memory
        # carriers whose table was read from its first row since start: until then a new PDU
        # stays in the table, or it would hide older ones (lower ids) left by a previous run
        self._read_from_start: set[int] = set()
        self._missed: set[int] = set()  # PDUs queued while a load was reading the table
        self._receivers: dict[int, list[SmppConnection]] = {}
        self.acknowledged = 0  # PDUs carriers answered ESME_ROK
        self._delayed: dict[int, int] = {}  # per carrier: PDUs waiting out a retry delay
        self._waiters: list[asyncio.Future[None]] = []
        self._tracked: dict[int, Report] = {}  # outbox id -> the attempt its answer ends
        self.rate_of: Callable[[int], int | None] = lambda carrier_id: None  # segments/s
        self._buckets: dict[int, TokenBucket] = {}
        self._wake: dict[int, asyncio.TimerHandle] = {}
        self.on_bound: Callable[[int], None] | None = None  # a carrier's receiver bound
        self.started = datetime.now(UTC)
        self._unbound_since: dict[int, datetime] = {}

    # -- what the rest of the gateway calls ------------------------------------------------
    def send(self, carrier_id: int, pdu: Pdu, message_id: int | None = None) -> None:
        """Keep ``pdu`` for the carrier (durably) and send it as soon as a receiver can take it."""
        self.writer.submit(_Store(self, carrier_id, pdu, message_id))

    def waiting(self, carrier_id: int) -> int:
        return len(self._lines.get(carrier_id, ()))

    def receiving(self, carrier_id: int) -> bool:
        """The carrier has a receiver or transceiver bound here now."""
        return bool(self._receivers.get(carrier_id))

    def unbound_since(self, carrier_id: int) -> datetime:
        """Since when the carrier has had no receiver bound (the start, if never bound)."""
        return self._unbound_since.get(carrier_id, self.started)

    def track(self, items: list[Item], report: Report) -> None:
        """Committed parts of a message for the carrier: send them, report each one's end."""
        for item in items:
            self._tracked[item.id] = report
        for item in items:
            if not self.receiving(item.carrier_id):
                self._end(item, None, "the carrier has no receiver bound")
            else:
                self.queued(item)

    def withdraw(self, items: list[Item]) -> None:
        """Parts of an attempt that ended: no longer sent, their rows removed, not reported."""
        ids = {item.id for item in items if self._tracked.pop(item.id, None) is not None}
        if not ids:
            return
        for carrier_id in {item.carrier_id for item in items}:
            line = self._lines.get(carrier_id)
            if line:
                kept = [i for i in line if i.id not in ids]
                if len(kept) != len(line):
                    self._lines[carrier_id] = deque(kept)
        for pk in ids:
            self.writer.submit(_Remove(pk, event=None))

    def _end(self, item: Item, status: int | None, why: str) -> bool:
        """A tracked part ended: its row goes, the attempt hears of it. False if untracked."""
        report = self._tracked.pop(item.id, None)
        if report is None:
            return False
        self.writer.submit(_Remove(item.id, event=None))
        report(item, status, why)
        return True

    # -- receivers ------------------------------------------------------------------------
    def bound(self, conn: SmppConnection, carrier_id: int) -> None:
        """A receiver or transceiver of the carrier bound: load what waits for it, send."""
        self._receivers.setdefault(carrier_id, []).append(conn)
        self._load(carrier_id)
        self.pump(carrier_id)
        if self.on_bound is not None:
            self.on_bound(carrier_id)

    def gone(self, conn: SmppConnection, carrier_id: int, unanswered: list[Any]) -> None:
        receivers = self._receivers.get(carrier_id, [])
        if conn in receivers:
            receivers.remove(conn)
            if not receivers:
                self._unbound_since[carrier_id] = datetime.now(UTC)
        line = self._lines.setdefault(carrier_id, deque())
        for item in reversed([c for c in unanswered if isinstance(c, Item)]):
            if not self._end(item, None, "the bind closed before it answered"):
                line.appendleft(item)  # sent but unanswered: first in line again
        if not receivers and any(item.id in self._tracked for item in line):
            for item in [i for i in line if i.id in self._tracked]:
                line.remove(item)
                self._end(item, None, "the carrier's last receiver unbound")
        self.pump(carrier_id)

    # -- answers ------------------------------------------------------------------------
    async def changed(self) -> None:
        """Wait for the next answer, timeout or lost receiver (for tests and monitoring)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def answered(self, item: Item, status: int) -> None:
        self._notify()
        if item.id in self._tracked:
            if status == Status.ESME_ROK:
                self.acknowledged += 1
            self._end(item, status, f"answered with status 0x{status:08X}")
            self.pump(item.carrier_id)
            return
        if status == Status.ESME_ROK:
            self.acknowledged += 1
            detail = f"{item.pdu.name} answered ESME_ROK by carrier {item.carrier_id}"
            self.writer.submit(_Remove(item.id, item.message_id, detail))
        else:
            self._retry(item, f"answered with status 0x{status:08X}", status in PERMANENT)
        self.pump(item.carrier_id)

    def timed_out(self, item: Item) -> None:
        self._notify()
        if self._end(item, None, "not answered in time"):
            self.pump(item.carrier_id)
            return
        self._retry(item, "not answered in time", False)
        self.pump(item.carrier_id)

    def _retry(self, item: Item, why: str, permanent: bool) -> None:
        item.attempts += 1
        if permanent or item.attempts >= MAX_ATTEMPTS:
            log.warning(
                "dropping %s for carrier %d after %d attempts: %s",
                item.pdu.name,
                item.carrier_id,
                item.attempts,
                why,
            )
            detail = f"{item.pdu.name} dropped after {item.attempts} attempts: {why}"
            self.writer.submit(_Remove(item.id, item.message_id, detail))
            return
        # a carrier that is throttling or slow is given time: 1 s, 2 s, 4 s ... 60 s at most
        # (ten attempts span about five minutes), the rest of its line goes on meanwhile
        delay = min(RETRY_FIRST * 2 ** (item.attempts - 1), RETRY_MAX)
        self.writer.submit(_Attempted(item.id, item.attempts))  # a restart goes on counting
        self._delayed[item.carrier_id] = self._delayed.get(item.carrier_id, 0) + 1
        asyncio.get_running_loop().call_later(delay, self._retry_due, item)

    def _retry_due(self, item: Item) -> None:
        cid = item.carrier_id
        self._delayed[cid] -= 1
        self._lines.setdefault(cid, deque()).append(item)
        self.pump(cid)

    def delayed(self, carrier_id: int) -> int:
        """PDUs of the carrier waiting out a retry delay."""
        return self._delayed.get(carrier_id, 0)

    # -- internals ------------------------------------------------------------------------
    def queued(self, item: Item) -> None:
        cid = item.carrier_id
        line = self._lines.setdefault(cid, deque())
        if (
            cid not in self._read_from_start
            or cid in self._overflow
            or cid in self._loading
            or len(line) >= MAX_QUEUED
        ):
            self._overflow.add(cid)  # it waits in the table, loaded in id order later
            if cid in self._loading:
                self._missed.add(cid)  # the load in progress may not have seen it
        elif item.id > self._seen.get(cid, 0):
            line.append(item)
            self._seen[cid] = item.id
        self.pump(cid)

    def _load(self, carrier_id: int) -> None:
        if carrier_id not in self._loading:
            self._loading.add(carrier_id)
            self.writer.submit(_Load(self, carrier_id, self._seen.get(carrier_id, 0)))

    def loaded(self, carrier_id: int, rows: list[Any], error: BaseException | None) -> None:
        self._loading.discard(carrier_id)
        if error is not None:
            log.error("loading the outbox of carrier %d failed: %s", carrier_id, error)
            return
        line = self._lines.setdefault(carrier_id, deque())
        for pk, data, attempts, message_id, part in rows:
            if pk > self._seen.get(carrier_id, 0):
                self._seen[carrier_id] = pk
                if part is not None and pk not in self._tracked:
                    # a part no attempt waits for (a previous run's): its message is sent again
                    self.writer.submit(_Remove(pk, event=None))
                    continue
                try:
                    pdu = decode(open_pdu(pk, data))
                except TextUnreadable as exc:  # cannot be sent: dropped, with its reason
                    log.error("outbox row %d for carrier %d: %s", pk, carrier_id, exc.reason)
                    detail = f"PDU dropped: it cannot be decrypted ({exc.reason})"
                    self.writer.submit(_Remove(pk, message_id, detail[:255]))
                    continue
                line.append(Item(pk, carrier_id, pdu, attempts, message_id, part))
        self._read_from_start.add(carrier_id)
        missed = carrier_id in self._missed
        self._missed.discard(carrier_id)
        if len(rows) < LOAD_BATCH and not missed:
            self._overflow.discard(carrier_id)
        else:
            self._overflow.add(carrier_id)
        self.pump(carrier_id)

    def pump(self, carrier_id: int) -> None:
        """Send what waits, on every receiver of the carrier with room in its window."""
        line = self._lines.get(carrier_id)
        if not line:
            if carrier_id in self._overflow and self._receivers.get(carrier_id):
                self._load(carrier_id)  # the next PDUs wait in the table
            return
        for conn in list(self._receivers.get(carrier_id, [])):
            while line and conn.can_deliver():
                if line[0].id in self._tracked and not self._may_send(carrier_id):
                    return
                item = line.popleft()
                conn.deliver(item)

    def _may_send(self, carrier_id: int) -> bool:
        """The carrier's throughput lets one more message segment go now (else a wake-up is
        armed for when it will)."""
        rate = self.rate_of(carrier_id)
        if rate is None:
            return True
        bucket = self._buckets.get(carrier_id)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[carrier_id] = TokenBucket(rate)
        loop = asyncio.get_running_loop()
        if bucket.take(1, loop.time()):
            return True
        if carrier_id not in self._wake:

            def wake() -> None:
                self._wake.pop(carrier_id, None)
                self.pump(carrier_id)

            self._wake[carrier_id] = loop.call_later(1.0 / rate, wake)
        return False
