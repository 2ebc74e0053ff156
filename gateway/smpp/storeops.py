# Store operations of the SMPP server, run by the batch writer: accept, assemble, query, cancel.
"""Each operation stages its rows in the writer thread (``stage``) and answers the carrier on
the event loop once the transaction is committed (``finish``): the submit_sm_resp carrying a
message id is never sent before the message is on disk (accepted means durable)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection

from gateway.admission import Admission
from gateway.pipeline_store import pending_from_row, stage_cdr
from gateway.smpp.accept import Submission
from gateway.smpp.codec import Pdu, format_time
from gateway.smpp.constants import Status
from gateway.smpp.dlr import joined_registered_delivery
from gateway.smpp.receipt import MESSAGE_STATE, format_message_id, parse_message_id
from gateway.smpp.text import TextError, count_parts, decode_text, is_binary
from gateway.store.events import stage_event
from gateway.store.schema import fragments, messages
from gateway.store.textcrypt import TextUnreadable, open_part, seal_message, seal_part
from gateway.store.writer import Batch

log = logging.getLogger("gateway.smpp")

PENDING_STATES = ("accepted", "routed", "retry-wait")  # a carrier may still cancel these
# Our message states as SMPP message_state values (§5.2.28).
SMPP_STATE = {
    "accepted": "ENROUTE",
    "routed": "ENROUTE",
    "sending": "ENROUTE",
    "retry-wait": "ENROUTE",
    "forwarded": "ENROUTE",
    "delivered": "DELIVRD",
    "expired": "EXPIRED",
    "deleted": "DELETED",
    "failed": "UNDELIV",
    "rejected": "REJECTD",
}


class Answerer(Protocol):
    """The connection a request came on (it may have gone: then answering does nothing)."""

    def respond(self, pdu: Pdu, status: int = Status.ESME_ROK, **params: Any) -> None: ...


def message_row(
    message_id: int,
    carrier_id: int | None,
    sub: Submission | dict[str, Any],
    *,
    text: str | None,
    body: bytes | None,
    parts: int,
    registered_delivery: int,
    now: datetime,
    state: str = "accepted",
    reason: str | None = None,
    origin: str = "carrier",
    account_id: int | None = None,
    connection_id: int | None = None,
    admission: Admission | None = None,
    accepted_at: datetime | None = None,
) -> dict[str, Any]:
    """The messages row of a whole message (from a Submission, a part's stored meta, or
    the fields of an app's MESSAGE with ``origin="account"``); ``admission`` is what the
    pipeline decided at submit time (route, lane, parked for an offline app);
    ``accepted_at`` when it differs from ``now`` (joined parts: when the first came)."""
    meta = sub.fields() if isinstance(sub, Submission) else sub
    if admission is not None and admission.rewrite:
        changes = dict(admission.rewrite)
        text = changes.pop("text", text)
        meta = {**meta, **changes}
    schedule = meta["schedule_at"]
    validity = meta["validity_until"]
    if isinstance(schedule, str):
        schedule = datetime.fromisoformat(schedule)
    if isinstance(validity, str):
        validity = datetime.fromisoformat(validity)
    priority = int(meta["priority"])
    lane = "priority" if priority > 0 else "bulk"
    route = next_attempt_at = None
    path, upstream = meta.get("path"), meta.get("upstream")
    if admission is not None and state == "accepted":
        state, reason, lane = admission.state, admission.reason, admission.lane
        route, path, next_attempt_at = admission.route, admission.path, admission.next_attempt_at
        upstream = admission.upstream
    final = state not in PENDING_STATES
    if next_attempt_at is None and not final:
        next_attempt_at = schedule or now
    return {
        "id": message_id,
        "origin": origin,
        "carrier_id": carrier_id,
        "account_id": account_id,
        "connection_id": connection_id,
        "source": meta["source"],
        "source_ton": meta["source_ton"],
        "destination": meta["destination"],
        "data_coding": meta["data_coding"],
        "esm_class": meta["esm_class"],
        "body_text": text,
        "body_bytes": body,
        "parts": parts,
        "registered_delivery": registered_delivery,
        "priority": priority,
        "lane": lane,
        "state": state,
        "reason": reason,
        "error_code": None,
        "attempts": 0,
        "route": route,
        "peer_message_id": None,
        "path": path,
        "upstream_id": upstream,
        "accepted_at": accepted_at or now,
        "next_attempt_at": None if final else next_attempt_at,
        "validity_until": validity,
        "final_at": now if final else None,
    }


@dataclass(frozen=True, slots=True)
class PartTag:
    """What one stored part brings to its message: the id the carrier got for it, the
    registered_delivery it asked and when it was accepted (the reassembler keeps it)."""

    id: int
    registered_delivery: int
    accepted_at: datetime


def joined_fields(tags: Sequence[PartTag]) -> tuple[int, datetime]:
    """The registered_delivery and acceptance time of a message joined from ``tags`` (its
    parts; live, at start after a restart and on expiry alike): any part asking for a receipt
    asks for the message's, and the message was accepted when its first part was, so its
    CDR, period and tariff are those of the moment the carrier handed it over."""
    if not tags:
        raise ValueError("a joined message has at least one part")
    return (
        joined_registered_delivery(t.registered_delivery for t in tags),
        min(t.accepted_at for t in tags),
    )


def group_key(carrier_id: int, sub: Submission) -> str:
    """Parts belong together when carrier, sender, recipient, reference and count agree."""
    assert sub.concat is not None
    ref, total, _ = sub.concat
    return f"{carrier_id}|{sub.source}|{sub.destination}|{ref}|{total}"


@dataclass
class AcceptOp:
    """Store one submission (a whole message, or one part), then answer with its id."""

    conn: Answerer
    pdu: Pdu
    sub: Submission
    carrier_id: int
    id_style: str
    now: datetime
    expires_at: datetime
    on_part: Callable[[AcceptOp], AssembleOp | None] | None = None
    admission: Admission | None = None  # what the pipeline decided (None: no pipeline)
    on_stored: Callable[[dict[str, Any]], None] | None = None  # a whole message is committed
    message_id: int = 0
    row: dict[str, Any] | None = None

    def stage(self, batch: Batch) -> None:
        [self.message_id] = batch.new_ids(1)
        sub = self.sub
        if sub.concat is None:
            self.row = message_row(
                self.message_id,
                self.carrier_id,
                sub,
                text=sub.text,
                body=sub.body,
                parts=sub.segments,
                registered_delivery=sub.registered_delivery,
                now=self.now,
                admission=self.admission,
            )
            batch.add(messages, seal_message(self.row))
            return
        meta = sub.meta()
        if self.admission is not None and self.admission.path:
            meta["path"] = self.admission.path
        if self.admission is not None and self.admission.upstream:
            meta["upstream"] = self.admission.upstream
        _, total, seq = sub.concat
        batch.add(
            fragments,
            {
                "id": self.message_id,
                "carrier_id": self.carrier_id,
                "group_key": group_key(self.carrier_id, sub),
                "total": total,
                "seq": seq,
                "payload": seal_part(self.message_id, sub.part),
                "registered_delivery": sub.registered_delivery,
                "meta": meta,
                "accepted_at": self.now,
                "expires_at": self.expires_at,
                "message_id": None,
            },
        )

    def finish(self, error: BaseException | None) -> None:
        if error is not None:
            log.error("message from carrier %d not stored: %s", self.carrier_id, error)
            self.conn.respond(self.pdu, Status.ESME_RSYSERR)
            return
        assemble = None
        if self.sub.concat is not None and self.on_part is not None:
            assemble = self.on_part(self)
        if assemble is None:
            self.answer()
        else:  # the last part: answered once the whole message is written too
            assemble.after = self.answer
        if self.row is not None and self.on_stored is not None:
            self.on_stored(self.row)

    def answer(self) -> None:
        self.conn.respond(self.pdu, message_id=format_message_id(self.message_id, self.id_style))  # type: ignore[arg-type]


@dataclass
class AssembleOp:
    """Write the whole message of a complete (or expired) group and link its parts to it."""

    key: str
    carrier_id: int | None
    meta: dict[str, Any]
    payload: bytes
    total: int
    registered_delivery: int
    now: datetime
    accepted_at: datetime | None = None  # when its first part was accepted (None: ``now``)
    missing: list[int] = field(default_factory=list)  # part numbers that never came
    unreadable: list[int] = field(default_factory=list)  # stored parts that cannot be decrypted
    message_id: int = 0
    after: Callable[[], None] | None = None  # answers the part that completed the message
    on_stored: Callable[[dict[str, Any]], None] | None = None  # the whole message is committed
    admission: Admission | None = None  # the pipeline's decision for the whole message
    rejected: str | None = None  # the pipeline found no route for it: the reason
    row: dict[str, Any] | None = None

    def stage(self, batch: Batch) -> None:
        [self.message_id] = batch.new_ids(1)
        data_coding = int(self.meta["data_coding"])
        text: str | None = None
        body: bytes | None = None
        state, reason = "accepted", None
        alphabet = self.meta.get("alphabet", "gsm")
        if is_binary(data_coding):
            body = self.payload
        else:
            try:
                text = decode_text(self.payload, data_coding, default_alphabet=alphabet)
            except TextError as exc:
                state, reason = "failed", f"concatenated text cannot be decoded: {exc}"
                body = self.payload
        if self.unreadable:
            state = "failed"
            reason = (
                f"parts {', '.join(map(str, self.unreadable))} of {self.total} cannot be"
                " decrypted (another key file, or damaged)"
            )
        elif self.missing:
            state = "failed"
            reason = f"parts {', '.join(map(str, self.missing))} of {self.total} never arrived"
        elif self.rejected is not None and state == "accepted":
            state, reason = "rejected", self.rejected
        parts = self.total  # the parts the carrier sent, or the segments its text needs
        if state != "failed":
            with contextlib.suppress(TextError):  # over 255 segments: the parts sent count
                counted = count_parts(self.payload, data_coding, default_alphabet=alphabet)
                parts = max(parts, counted)
        self.row = message_row(
            self.message_id,
            self.carrier_id,
            self.meta,
            text=text,
            body=body,
            parts=parts,
            registered_delivery=self.registered_delivery,
            now=self.now,
            state=state,
            reason=reason,
            admission=self.admission,
            accepted_at=self.accepted_at,
        )
        batch.add(messages, seal_message(self.row))
        key, message_id = self.key, self.message_id
        batch.then(
            lambda conn: conn.execute(
                update(fragments)
                .where(and_(fragments.c.group_key == key, fragments.c.message_id.is_(None)))
                .values(message_id=message_id)
            )
        )

    def finish(self, error: BaseException | None) -> None:
        if error is not None:  # the parts stay stored and unlinked: assembled after a restart
            log.error("concatenated message %s not assembled: %s", self.key, error)
        if self.after is not None:  # the part itself is stored either way
            self.after()
        if error is None and self.row is not None and self.on_stored is not None:
            self.on_stored(self.row)


def _find(conn: Connection, message_id: int, carrier_id: int) -> dict[str, Any] | None:
    """The message a carrier knows by ``message_id`` (its own, or the one a part went into)."""
    row = (
        conn.execute(
            select(messages).where(messages.c.id == message_id, messages.c.carrier_id == carrier_id)
        )
        .mappings()
        .first()
    )
    if row is not None:
        return dict(row)
    part = conn.execute(
        select(fragments.c.message_id, fragments.c.accepted_at).where(
            fragments.c.id == message_id, fragments.c.carrier_id == carrier_id
        )
    ).first()
    if part is None:
        return None
    if part.message_id is None:  # still waiting for its other parts
        return {"id": message_id, "state": "accepted", "final_at": None}
    whole = (
        conn.execute(select(messages).where(messages.c.id == part.message_id)).mappings().first()
    )
    return dict(whole) if whole is not None else None


@dataclass
class QueryOp:
    """query_sm: the state of one of this carrier's messages (§4.8)."""

    conn: Answerer
    pdu: Pdu
    carrier_id: int
    id_style: str
    found: dict[str, Any] | None = None

    def stage(self, batch: Batch) -> None:
        try:
            wanted = parse_message_id(str(self.pdu.params.get("message_id", "")), self.id_style)  # type: ignore[arg-type]
        except (ValueError, TextError):
            return
        batch.then(lambda conn: setattr(self, "found", _find(conn, wanted, self.carrier_id)))

    def finish(self, error: BaseException | None) -> None:
        if error is not None or self.found is None:
            self.conn.respond(self.pdu, Status.ESME_RQUERYFAIL)
            return
        final = self.found.get("final_at")
        self.conn.respond(
            self.pdu,
            message_id=self.pdu.params.get("message_id", ""),
            final_date=format_time(final) if final else "",
            message_state=MESSAGE_STATE[SMPP_STATE.get(self.found["state"], "UNKNOWN")],
            error_code=0,
        )


CANCELLED = "cancelled by the carrier (cancel_sm)"


@dataclass
class CancelOp:
    """cancel_sm of one message by id, while it is not yet delivered (§4.9)."""

    conn: Answerer
    pdu: Pdu
    carrier_id: int
    id_style: str
    now: datetime
    cancelled: bool = False
    on_done: Callable[[bool, int | None], None] | None = None  # (cancelled, whole message id)
    message_id: int | None = None

    def stage(self, batch: Batch) -> None:
        text = str(self.pdu.params.get("message_id", ""))
        try:
            wanted = parse_message_id(text, self.id_style)  # type: ignore[arg-type]
        except (ValueError, TextError):
            return

        def cancel(conn: Connection) -> None:
            found = _find(conn, wanted, self.carrier_id)
            if found is None or found["state"] not in PENDING_STATES or "source" not in found:
                return
            source = str(self.pdu.params.get("source_addr", ""))
            if source and source != found["source"] and source.lstrip("+") != found["source"]:
                return
            result = conn.execute(
                update(messages)
                .where(messages.c.id == found["id"], messages.c.state.in_(PENDING_STATES))
                .values(
                    state="deleted",
                    reason=CANCELLED,
                    final_at=self.now,
                    next_attempt_at=None,
                )
            )
            self.cancelled = result.rowcount == 1
            self.message_id = found["id"]
            if self.cancelled and "origin" in found:  # a whole message: it ends like any other
                p = pending_from_row(found)
                stage_event(batch, p.id, "deleted", detail=CANCELLED, at=self.now)
                stage_cdr(batch, p, "deleted", CANCELLED, self.now)

        batch.then(cancel)

    def finish(self, error: BaseException | None) -> None:
        cancelled = error is None and self.cancelled
        status = Status.ESME_ROK if cancelled else Status.ESME_RCANCELFAIL
        self.conn.respond(self.pdu, status)
        if self.on_done is not None:
            self.on_done(cancelled, self.message_id)


@dataclass
class ExpireGroupOp:
    """A group whose parts did not all arrive in time: read its stored parts, then write its
    message as failed, naming the missing parts (two transactions: read, then write)."""

    key: str
    writer: Any  # the BatchWriter, to queue the AssembleOp
    rows: list[Any] = field(default_factory=list)
    on_stored: Callable[[dict[str, Any]], None] | None = None

    def stage(self, batch: Batch) -> None:
        def load(conn: Connection) -> None:
            self.rows = list(
                conn.execute(
                    select(fragments)
                    .where(fragments.c.group_key == self.key, fragments.c.message_id.is_(None))
                    .order_by(fragments.c.seq, fragments.c.id)
                ).mappings()
            )

        batch.then(load)

    def finish(self, error: BaseException | None) -> None:
        if error is not None or not self.rows:
            return
        first = self.rows[0]
        by_seq: dict[int, bytes] = {}
        unreadable: list[int] = []
        for row in self.rows:  # in seq order, then id: a part sent twice counts once (first)
            try:
                by_seq.setdefault(row["seq"], open_part(row["id"], row["payload"]))
            except TextUnreadable as exc:
                log.error("stored part %d of %s: %s", row["id"], self.key, exc.reason)
                unreadable.append(row["seq"])
        unreadable = [n for n in unreadable if n not in by_seq]
        missing = [
            n for n in range(1, first["total"] + 1) if n not in by_seq and n not in unreadable
        ]
        payload = b"".join(by_seq.values())
        registered_delivery, accepted_at = joined_fields(
            [PartTag(r["id"], r["registered_delivery"], r["accepted_at"]) for r in self.rows]
        )
        self.writer.submit(
            AssembleOp(
                self.key,
                first["carrier_id"],
                first["meta"],
                payload,
                first["total"],
                registered_delivery,
                datetime.now(UTC),
                accepted_at,
                missing=missing,
                unreadable=sorted(set(unreadable)),
                on_stored=self.on_stored,
            )
        )
