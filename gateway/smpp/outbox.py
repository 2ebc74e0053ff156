# PDUs for carriers (delivery receipts, MO messages): stored first, sent on a receiver bind.
"""The way out to carriers: ``deliver_sm`` that must survive restarts and absent binds.

A PDU for a carrier is written to the ``outbox`` table (durably, through the batch writer)
and only then sent on one of the carrier's bound receiver or transceiver sessions, as their
windows allow. It leaves the table when the carrier answers ESME_ROK; a temporary error or a
timeout puts it back in line after a growing delay (1 s doubling to 60 s), a permanent error
(or ``MAX_ATTEMPTS``) drops it with a log line. When no receiver is bound it waits; the
carrier's next receiver bind loads it again. Memory holds at most ``MAX_QUEUED`` PDUs per
carrier; the rest waits in the table.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from gateway.smpp.codec import Pdu, decode, encode
from gateway.smpp.constants import Status
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


def stage_pdu(batch: Batch, carrier_id: int, pdu: Pdu, message_id: int | None) -> Item:
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
        },
    )
    return Item(pk, carrier_id, pdu, message_id=message_id)


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
                    select(outbox.c.id, outbox.c.pdu, outbox.c.attempts, outbox.c.message_id)
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
    persistent = True  # else the PDU is sent again after a restart

    def stage(self, batch: Batch) -> None:
        pk = self.pk
        if self.message_id is not None:
            stage_event(batch, self.message_id, "receipt-sent", detail=self.detail)
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

    # -- what the rest of the gateway calls ------------------------------------------------
    def send(self, carrier_id: int, pdu: Pdu, message_id: int | None = None) -> None:
        """Keep ``pdu`` for the carrier (durably) and send it as soon as a receiver can take it."""
        self.writer.submit(_Store(self, carrier_id, pdu, message_id))

    def waiting(self, carrier_id: int) -> int:
        return len(self._lines.get(carrier_id, ()))

    # -- receivers ------------------------------------------------------------------------
    def bound(self, conn: SmppConnection, carrier_id: int) -> None:
        """A receiver or transceiver of the carrier bound: load what waits for it, send."""
        self._receivers.setdefault(carrier_id, []).append(conn)
        self._load(carrier_id)
        self.pump(carrier_id)

    def gone(self, conn: SmppConnection, carrier_id: int, unanswered: list[Any]) -> None:
        receivers = self._receivers.get(carrier_id, [])
        if conn in receivers:
            receivers.remove(conn)
        line = self._lines.setdefault(carrier_id, deque())
        for item in reversed([c for c in unanswered if isinstance(c, Item)]):
            line.appendleft(item)  # sent but unanswered: first in line again
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
        if status == Status.ESME_ROK:
            self.acknowledged += 1
            detail = f"{item.pdu.name} answered ESME_ROK by carrier {item.carrier_id}"
            self.writer.submit(_Remove(item.id, item.message_id, detail))
        else:
            self._retry(item, f"answered with status 0x{status:08X}", status in PERMANENT)
        self.pump(item.carrier_id)

    def timed_out(self, item: Item) -> None:
        self._notify()
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
        for pk, data, attempts, message_id in rows:
            if pk > self._seen.get(carrier_id, 0):
                self._seen[carrier_id] = pk
                try:
                    pdu = decode(open_pdu(pk, data))
                except TextUnreadable as exc:  # cannot be sent: dropped, with its reason
                    log.error("outbox row %d for carrier %d: %s", pk, carrier_id, exc.reason)
                    detail = f"PDU dropped: it cannot be decrypted ({exc.reason})"
                    self.writer.submit(_Remove(pk, message_id, detail[:255]))
                    continue
                line.append(Item(pk, carrier_id, pdu, attempts, message_id))
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
                item = line.popleft()
                conn.deliver(item)
