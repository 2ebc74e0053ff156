# The pipeline's store side: life-cycle steps, CDRs and receipts in grouped commits; its reads.
"""What the pipeline writes and reads, as batch-writer operations (docs/architecture.md rule 7).

Every step of a message is one grouped UPDATE by id (``STEP``), guarded so that nothing ever
leaves a final state (a cancel_sm that won a race stays won). A final step writes, in the same
transaction, the message's CDR (idempotent on message id and leg) and, when the originating
carrier asked, its delivery receipt into the outbox (one per part the carrier sent, each with
the id that part was acknowledged with). Reads: a held destination's parked messages, the
backlog left in the store (at start, or when memory was full), the destinations that have
parked messages, forwarded messages past their validity, and a peer's receipt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from billing import cdr
from gateway.logs import about
from gateway.queue import Pending
from gateway.smpp.codec import Pdu
from gateway.smpp.dlr import STAT_OF_STATE, receipt_pdu, wants_receipt
from gateway.smpp.outbox import Item, stage_pdu
from gateway.smpp.receipt import format_message_id
from gateway.store.events import stage_event
from gateway.store.schema import cdrs, forwards, fragments, messages
from gateway.store.textcrypt import TextUnreadable, open_message
from gateway.store.writer import Batch, UpdateSpec

log = logging.getLogger("gateway.pipeline")

FINAL_STATES = ("delivered", "failed", "expired", "rejected", "deleted")
WAITING_STATES = ("accepted", "routed", "sending", "retry-wait")  # not final, not forwarded
_NOT_FINAL = "state NOT IN (" + ", ".join(f"'{s}'" for s in FINAL_STATES) + ")"
STEP = UpdateSpec(
    messages,
    ("state", "reason", "error_code", "attempts", "route", "next_attempt_at", "final_at"),
    guard=_NOT_FINAL,
)
FORWARDED = UpdateSpec(
    messages, ("state", "attempts", "route", "peer_message_id", "next_attempt_at"), guard=_NOT_FINAL
)
MAX_REASON = 255
RECEIPT_OK = "DELIVRD"

IdStyle = Callable[[int], str | None]
"""carrier id -> its receipt id format (dec/hex), None when the carrier no longer exists."""


def pending_from_row(
    row: Mapping[str, Any], *, concatenated: bool | None = None, stored: bool = True
) -> Pending:
    """The in-memory form of a messages row read from the store (``stored=False``: the plain
    row just written); a stored text that cannot be decrypted leaves ``text`` empty and says
    why in ``unreadable`` (the pipeline fails the message)."""
    text, body, unreadable = row["body_text"], row["body_bytes"], None
    try:
        if stored:
            text, body = open_message(row)
    except TextUnreadable as exc:
        text = body = None
        unreadable = f"the stored text cannot be decrypted: {exc.reason}"
        log.error("message %d: %s", row["id"], unreadable, extra=about(row["id"]))
    return Pending(
        id=row["id"],
        destination=row["destination"],
        source=row["source"],
        source_ton=row["source_ton"],
        lane=row["lane"],
        priority=row["priority"],
        data_coding=row["data_coding"],
        text=text,
        body=body,
        registered_delivery=row["registered_delivery"],
        validity_until=row["validity_until"],
        accepted_at=row["accepted_at"],
        parts=row["parts"],
        attempts=row["attempts"],
        origin=row["origin"],
        carrier_id=row["carrier_id"],
        account_id=row["account_id"],
        connection_id=row["connection_id"],
        path=row["path"],
        concatenated=(row["origin"] == "carrier" and row["parts"] > 1)
        if concatenated is None
        else concatenated,
        route=row["route"],
        unreadable=unreadable,
    )


def _reason(text: str | None) -> str | None:
    return None if text is None else text[:MAX_REASON]


def stage_step(
    batch: Batch,
    p: Pending,
    state: str,
    *,
    reason: str | None = None,
    error_code: int | None = None,
    next_attempt_at: datetime | None = None,
    final_at: datetime | None = None,
    detail: str | None = None,
) -> None:
    """A step of ``p``: its row and, unless it starts an attempt, the event that records
    it (``detail``, else the reason, says what happened)."""
    if state != "sending":
        stage_event(
            batch, p.id, state, detail=detail or reason, route=p.route, error_code=error_code,
            attempt=p.attempts or None,
        )  # fmt: skip
    batch.change(
        STEP,
        {
            "id": p.id,
            "state": state,
            "reason": _reason(reason),
            "error_code": error_code,
            "attempts": p.attempts,
            "route": p.route,
            "next_attempt_at": next_attempt_at,
            "final_at": final_at,
        },
    )


def stage_cdr(batch: Batch, p: Pending, state: str, reason: str | None, now: datetime) -> None:
    """The CDR of ``p``, ended in ``state`` at ``now`` (written once: a repeat is ignored).
    A concatenated message from a carrier lists the ids its parts were acknowledged with
    (read in the same transaction): the ids the carrier knows it by."""
    [cdr_id] = batch.new_ids(1)
    row = cdr.row(
        cdr_id=cdr_id,
        message_id=p.id,
        carrier_id=p.carrier_id,
        account_id=p.account_id,
        connection_id=p.connection_id,
        source=p.source,
        destination=p.destination,
        parts=p.parts,
        data_coding=p.data_coding,
        route=p.route,
        state=state,
        reason=_reason(reason),
        accepted_at=p.accepted_at,
        final_at=now,
    )
    if not p.concatenated or p.origin != "carrier":
        batch.add(cdrs, row, ignore=True)
        return

    def with_part_ids(conn: Connection) -> None:
        ids = conn.execute(
            select(fragments.c.id)
            .where(fragments.c.message_id == p.id)
            .order_by(fragments.c.seq, fragments.c.id)
        ).scalars()
        row["part_ids"] = " ".join(map(str, ids)) or None  # none: a long text sent whole
        batch.add(cdrs, row, ignore=True)

    batch.then(with_part_ids)


def stage_out_cdr(
    batch: Batch, p: Pending, state: str, now: datetime, taken: tuple[int, int]
) -> None:
    """The CDR of leg ``out``: the carrier (bound to us) that took ``p`` as MO deliver_sm and
    the parts it took; rated by that carrier's ``out`` tariffs (written once)."""
    [cdr_id] = batch.new_ids(1)
    carrier_id, parts = taken
    row = cdr.row(
        cdr_id=cdr_id,
        message_id=p.id,
        carrier_id=carrier_id,
        account_id=p.account_id,
        connection_id=None,
        source=p.source,
        destination=p.destination,
        parts=parts,
        data_coding=p.data_coding,
        route=p.route,
        state=state,
        reason=None,
        accepted_at=p.accepted_at,
        final_at=now,
        leg=cdr.LEG_OUT,
    )
    batch.add(cdrs, row, ignore=True)


def stage_final(
    batch: Batch,
    p: Pending,
    state: str,
    *,
    reason: str | None,
    error_code: int | None,
    now: datetime,
    id_style: IdStyle,
    items: list[Item],
    detail: str | None = None,
    taken: tuple[int, int] | None = None,
) -> None:
    """The final step, the CDR(s) and the originator's receipts (``items`` gets the outbox
    entries to hand to the outbox once committed). ``taken``: (carrier, parts) when a
    carrier bound to us took the message: a second CDR, leg ``out``."""
    stage_step(batch, p, state, reason=reason, error_code=error_code, final_at=now, detail=detail)
    stage_cdr(batch, p, state, reason, now)
    if taken is not None:
        stage_out_cdr(batch, p, state, now, taken)
    carrier = p.carrier_id
    if p.origin != "carrier" or carrier is None or not wants_receipt(p.registered_delivery, state):
        return
    style = id_style(carrier)
    if style is None:
        log.info("message %d: carrier %d is gone; no receipt", p.id, carrier, extra=about(p.id))
        return

    def pdu(message_id: int) -> Pdu:
        return receipt_pdu(
            message_id=format_message_id(message_id, style),  # type: ignore[arg-type]
            source=p.source,
            source_ton=p.source_ton,
            destination=p.destination,
            state=state,
            err=error_code or 0,
            submit_date=p.accepted_at,
            done_date=now,
            text=p.text or "",
            parts=p.parts,
        )

    stat = STAT_OF_STATE.get(state, "UNDELIV")
    stage_event(batch, p.id, "receipt", detail=f"stat:{stat} queued for carrier {carrier}")
    if not p.concatenated:
        items.append(stage_pdu(batch, carrier, pdu(p.id), p.id))
        return

    def each_part(conn: Connection) -> None:
        ids = conn.execute(
            select(fragments.c.id).where(fragments.c.message_id == p.id).order_by(fragments.c.seq)
        ).scalars()
        # a long text sent whole (message_payload) has several parts but no fragments: the
        # carrier knows it by the message's own id
        for part_id in list(ids) or [p.id]:
            items.append(stage_pdu(batch, carrier, pdu(part_id), p.id))

    batch.then(each_part)


def stage_forwarded(
    batch: Batch, p: Pending, connection_id: int, peer_ids: tuple[str, ...], now: datetime
) -> None:
    """A peer accepted every part: wait for its receipts (until the validity runs out)."""
    stage_event(
        batch, p.id, "forwarded", route=p.route, at=now, attempt=p.attempts or None,
        detail=f"taken by connection {connection_id}, peer id {', '.join(peer_ids)}",
    )  # fmt: skip
    batch.change(
        FORWARDED,
        {
            "id": p.id,
            "state": "forwarded",
            "attempts": p.attempts,
            "route": p.route,
            "peer_message_id": peer_ids[0][:65] if peer_ids else None,
            "next_attempt_at": p.validity_until,
        },
    )
    for part, peer_id in enumerate(peer_ids, start=1):
        [pk] = batch.new_ids(1)
        batch.add(
            forwards,
            {
                "id": pk,
                "message_id": p.id,
                "connection_id": connection_id,
                "peer_message_id": peer_id[:65],
                "part": part,
                "parts": len(peer_ids),
                "stat": None,
                "err": None,
                "created_at": now,
            },
            ignore=True,
        )


# -- operations ---------------------------------------------------------------------------
@dataclass
class WriteOp:
    """Steps of many messages in one operation; ``done`` callbacks run after the commit.
    Persistent: what accepted messages became waits for a database that went away."""

    persistent = True

    stagers: list[Callable[[Batch], None]] = field(default_factory=list)
    done: list[Callable[[BaseException | None], None]] = field(default_factory=list)

    def stage(self, batch: Batch) -> None:
        for stager in self.stagers:
            stager(batch)

    def finish(self, error: BaseException | None) -> None:
        for callback in self.done:
            try:
                callback(error)
            except Exception:
                log.exception("after a pipeline write")


@dataclass
class ReadOp:
    """A read in the writer's order (it sees everything committed before it)."""

    query: Callable[[Connection], list[Any]]
    done: Callable[[list[Any], BaseException | None], None]
    rows: list[Any] = field(default_factory=list)

    def stage(self, batch: Batch) -> None:
        def run(conn: Connection) -> None:
            self.rows = self.query(conn)

        batch.then(run)

    def finish(self, error: BaseException | None) -> None:
        self.done(self.rows, error)


def parked_counts(at_least: int) -> Callable[[Connection], list[Any]]:
    """(destination, parked messages) of the numbers with at least ``at_least`` parked."""

    def query(conn: Connection) -> list[Any]:
        return list(
            conn.execute(
                select(messages.c.destination, func.count())
                .where(messages.c.state == "retry-wait")
                .group_by(messages.c.destination)
                .having(func.count() >= at_least)
            )
        )

    return query


def state_counts(conn: Connection) -> list[Any]:
    """(state, messages) of the messages not ended yet (the index on state serves it)."""
    return list(
        conn.execute(
            select(messages.c.state, func.count())
            .where(messages.c.state.in_((*WAITING_STATES, "forwarded")))
            .group_by(messages.c.state)
        )
    )


def waiting_counts(conn: Connection) -> list[Any]:
    """(route, messages) of the messages waiting to be forwarded over each SMPP route."""
    return list(
        conn.execute(
            select(messages.c.route, func.count())
            .where(
                messages.c.state.in_(WAITING_STATES),
                messages.c.route.like("smpp:%"),
            )
            .group_by(messages.c.route)
        )
    )


def parked_of(destination: str, limit: int) -> Callable[[Connection], list[Any]]:
    """A destination's parked (retry-wait) messages, the priority lane's first, each lane
    oldest first (so a verification code does not wait behind a parked campaign)."""

    def query(conn: Connection) -> list[Any]:
        return list(
            conn.execute(
                select(messages)
                .where(
                    messages.c.destination == destination,
                    messages.c.state == "retry-wait",
                )
                .order_by(messages.c.lane.desc(), messages.c.id)  # "priority" > "bulk"
                .limit(limit)
            ).mappings()
        )

    return query


def backlog_after(after: int, limit: int) -> Callable[[Connection], list[Any]]:
    """Messages to send that are not in memory (ids above ``after``), oldest first."""

    def query(conn: Connection) -> list[Any]:
        return list(
            conn.execute(
                select(messages)
                .where(
                    messages.c.state.in_(("accepted", "routed", "sending")),
                    messages.c.id > after,
                )
                .order_by(messages.c.id)
                .limit(limit)
            ).mappings()
        )

    return query


def held_destinations(conn: Connection) -> list[Any]:
    """Destinations with parked messages and the earliest time one is due."""
    return list(
        conn.execute(
            select(messages.c.destination, func.min(messages.c.next_attempt_at))
            .where(messages.c.state == "retry-wait")
            .group_by(messages.c.destination)
        )
    )


@dataclass
class ExpireForwardedOp:
    """Forwarded messages whose receipt never came within their validity: expired."""

    now: datetime
    id_style: IdStyle
    limit: int = 1000
    expired: list[Pending] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    after: Callable[[ExpireForwardedOp, BaseException | None], None] | None = None

    def stage(self, batch: Batch) -> None:
        self.expired.clear()  # staged again when its batch is retried op by op
        self.items.clear()

        def run(conn: Connection) -> None:
            rows = conn.execute(
                select(messages)
                .where(messages.c.state == "forwarded", messages.c.next_attempt_at <= self.now)
                .order_by(messages.c.next_attempt_at)
                .limit(self.limit)
            ).mappings()
            for row in rows:
                p = pending_from_row(row)
                self.expired.append(p)
                stage_final(
                    batch,
                    p,
                    "expired",
                    reason="no receipt from the peer within the validity",
                    error_code=None,
                    now=self.now,
                    id_style=self.id_style,
                    items=self.items,
                )

        batch.then(run)

    def finish(self, error: BaseException | None) -> None:
        if self.after is not None:
            self.after(self, error)


RECEIPT_STATE = {"DELIVRD": "delivered", "EXPIRED": "expired"}
"""A peer's final stat -> our final state; every other final stat is a failure."""
FINAL_STATS = frozenset(STAT_OF_STATE.values()) | {"UNKNOWN"}


@dataclass
class PeerReceiptOp:
    """A receipt from a connection's peer for one part we forwarded: recorded; when it settles
    the message (every part delivered, or one failed), the message's final step."""

    connection_id: int
    peer_id: str
    stat: str
    err: int
    now: datetime
    id_style: IdStyle
    after: Callable[[PeerReceiptOp, BaseException | None], None] | None = None
    known: bool = False
    settled: Pending | None = None
    state: str | None = None
    items: list[Item] = field(default_factory=list)

    def stage(self, batch: Batch) -> None:
        batch.then(lambda conn: self._run(batch, conn))

    def _run(self, batch: Batch, conn: Connection) -> None:
        row = conn.execute(
            select(forwards.c.id, forwards.c.message_id).where(
                forwards.c.connection_id == self.connection_id,
                forwards.c.peer_message_id == self.peer_id,
            )
        ).first()
        if row is None:
            return
        self.known = True
        stage_event(
            batch, row.message_id, "peer-receipt", at=self.now, error_code=self.err or None,
            detail=f"stat:{self.stat} err:{self.err:03d} from connection {self.connection_id}"
            f" for peer id {self.peer_id}",
        )  # fmt: skip
        if self.stat not in FINAL_STATS:
            return  # ENROUTE, ACCEPTD: an intermediate notice
        conn.execute(
            update(forwards).where(forwards.c.id == row.id).values(stat=self.stat, err=self.err)
        )
        stats = conn.execute(
            select(forwards.c.stat, forwards.c.err).where(forwards.c.message_id == row.message_id)
        ).all()
        failed = [(s, e) for s, e in stats if s is not None and s != RECEIPT_OK]
        if failed:
            stat, err = failed[0]
        elif all(s == RECEIPT_OK for s, _ in stats):
            stat, err = RECEIPT_OK, 0
        else:
            return  # other parts have no final receipt yet
        message = (
            conn.execute(
                select(messages).where(
                    messages.c.id == row.message_id, messages.c.state == "forwarded"
                )
            )
            .mappings()
            .first()
        )
        if message is None:
            return  # already settled (a repeated receipt)
        p = pending_from_row(message)
        state = RECEIPT_STATE.get(stat, "failed")
        reason = None if state == "delivered" else f"the peer reported {stat} (err {err})"
        self.settled, self.state = p, state
        stage_final(
            batch,
            p,
            state,
            reason=reason,
            error_code=err or None,
            now=self.now,
            id_style=self.id_style,
            items=self.items,
            detail=reason or f"the peer's receipts say {stat}",
        )

    def finish(self, error: BaseException | None) -> None:
        if self.after is not None:
            self.after(self, error)
