# SMPP server adapter (asyncio): listeners, bind authentication, submissions stored before resp.
"""Moves bytes between sockets and ``Session`` state machines, and carries out what the
sessions ask: bind checks (carrier directory, allowed networks, max binds, failed-bind guard),
submissions (validated by ``accept``, throttled per carrier, stored by the batch writer and
only then answered), query_sm and cancel_sm, and the reassembly of concatenated messages.
Each connection arms one timer at its session's next deadline.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Engine, select

from gateway.admission import Refused
from gateway.config import Config
from gateway.fds import FdWatch
from gateway.logs import about
from gateway.metrics import (
    SMPP_BIND_CHECKS,
    SMPP_BIND_FAILURES,
    SMPP_CONNECTIONS_REFUSED,
    SMPP_THROTTLED,
    Children,
    smpp_responses,
)
from gateway.provisioning import unblock
from gateway.queue import Pending
from gateway.smpp.accept import Rules, read_submission
from gateway.smpp.carriers import BindVerdict, Carrier, CarrierDirectory, bind_status
from gateway.smpp.checkpool import CheckPool, Dropped
from gateway.smpp.codec import Pdu, SmppError, status_name
from gateway.smpp.constants import CommandId, Status
from gateway.smpp.guard import BindCounter, BindGuard, TokenBucket
from gateway.smpp.hops import parse_path, read_path, read_upstream
from gateway.smpp.intake import REASONS, AllowedAddresses, Refusal, RefusalLog, UnboundCounter
from gateway.smpp.outbox import Item, Outbox
from gateway.smpp.receipt import parse_message_id
from gateway.smpp.session import (
    BindRequested,
    Closed,
    Event,
    Limits,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    Session,
    State,
)
from gateway.smpp.storeops import (
    AcceptOp,
    AssembleOp,
    CancelOp,
    ExpireGroupOp,
    PartTag,
    QueryOp,
    group_key,
    joined_fields,
)
from gateway.smpp.text import Reassembler, TextError, decode_text, is_binary
from gateway.store.schema import fragments
from gateway.store.textcrypt import TextUnreadable, open_part
from gateway.store.writer import BatchWriter

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

log = logging.getLogger("gateway.smpp")

LOGGED_ERRORS = 10  # protocol errors logged per connection; the rest are counted
COUNTED = frozenset(
    {CommandId.SUBMIT_SM, CommandId.DATA_SM, CommandId.QUERY_SM, CommandId.CANCEL_SM}
)  # requests whose answers /metrics counts by status
MAX_WRITER_BACKLOG = 50_000  # beyond this, submissions are answered ESME_RMSGQFUL
connections_refused = Children(SMPP_CONNECTIONS_REFUSED)
bind_failures = Children(SMPP_BIND_FAILURES)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _checked_bind_status(carrier: Carrier | None, password: str, address: str) -> BindVerdict:
    """bind_status on a password-check thread, counted (one scrypt each)."""
    SMPP_BIND_CHECKS.inc()
    return bind_status(carrier, password, address)


class SmppServer:
    """All SMPP listeners of one gateway node and the state they share."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        writer: BatchWriter,
        directory: CarrierDirectory,
        fds: FdWatch | None = None,
    ) -> None:
        smpp = config.smpp
        self.config = config
        self.engine = engine
        self.writer = writer
        self.directory = directory
        self.limits = Limits(
            bind_timeout=smpp.bind_timeout,
            enquire_link_interval=smpp.enquire_link,
            inactivity_timeout=smpp.inactivity_timeout,
            response_timeout=smpp.response_timeout,
            window_in=smpp.window,
            max_pdu=smpp.max_pdu,
        )
        self.guard = BindGuard(
            max_failures=smpp.failed_bind_limit,
            spread=smpp.failed_bind_spread,
            block=smpp.failed_bind_block.total_seconds(),
        )
        # bind passwords are checked on threads of their own (gateway/smpp/checkpool.py)
        self.checks = CheckPool(smpp.bind_check_threads, smpp.bind_check_queue)
        self._unblocks_seen = 0  # id of the last bind_unblocks row applied
        self.binds = BindCounter()
        self.buckets: dict[int, TokenBucket] = {}
        self.reassembler = Reassembler(smpp.max_pending_messages, smpp.reassembly_timeout)
        self.outbox = Outbox(writer)
        self.connections: set[SmppConnection] = set()
        self.addresses: list[tuple[str, int, bool]] = []  # (host, port, tls) actually bound
        self._servers: list[asyncio.Server] = []
        self._rules: dict[str, Rules] = {}
        self._idle = asyncio.Event()
        self._expiry: asyncio.TimerHandle | None = None
        self.pipeline: Pipeline | None = None  # attached by the node; None: store only
        # connections before their bind (gateway/smpp/intake.py)
        self.unbound = UnboundCounter(smpp.max_unbound_per_address, smpp.max_unbound)
        self.allowed = AllowedAddresses()
        self.refusals = RefusalLog()
        self.fds = fds if fds is not None else FdWatch()
        self._summary: asyncio.TimerHandle | None = None

    # -- life cycle ------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self._recover_parts()
        self._unblocks_seen = await loop.run_in_executor(None, self._last_unblock)
        for listener in self.config.smpp.listen:
            context = None
            if listener.tls is not None:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.load_cert_chain(listener.tls.cert, listener.tls.key)
            tls = context is not None
            # a TLS connection is admitted (connection_made) once its handshake is done: the
            # handshake may hold its socket for the bind timeout at most
            handshake = self.config.smpp.bind_timeout.total_seconds() if tls else None
            server = await loop.create_server(
                lambda tls=tls: SmppConnection(self, tls),
                listener.host,
                listener.port,
                ssl=context,
                ssl_handshake_timeout=handshake,
            )
            self._servers.append(server)
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                self.addresses.append((host, port, tls))
                log.info("smpp%s listening on %s:%d", "+tls" if tls else "", host, port)

    async def close(self, timeout: float = 10.0) -> None:
        """Stop accepting, answer what is in flight, unbind every carrier, then close."""
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.shut_down()
        if self.connections:
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except TimeoutError:
                log.warning("%d binds did not unbind in time; closing them", len(self.connections))
        for conn in list(self.connections):
            conn.abort()
        for server in self._servers:
            await server.wait_closed()
        if self._expiry is not None:
            self._expiry.cancel()
        self.checks.close()
        if self._summary is not None:
            self._summary.cancel()
            self._summarise()

    def enforce_directory(self) -> None:
        """After a reload: binds of carriers that were disabled or removed, and binds from an
        address the carrier's allow-list no longer holds, are unbound."""
        for conn in list(self.connections):
            carrier = conn.carrier
            if carrier is None or not conn.bound:
                continue
            now = self.directory.by_id(carrier.id)
            if now is None or not now.enabled or now.system_id != carrier.system_id:
                log.warning(
                    "carrier %s was disabled or removed: unbinding %s", carrier.name, conn.address
                )
                conn.shut_down()
            elif not now.allows(conn.address):
                log.warning(
                    "carrier %s no longer allows %s: unbinding it", carrier.name, conn.address
                )
                conn.shut_down()

    def send_to_carrier(self, carrier_id: int, pdu: Pdu, message_id: int | None = None) -> None:
        """Deliver ``pdu`` (a receipt or an MO deliver_sm) to a carrier: stored first, then
        sent on one of its receiver/transceiver binds, now or when it next binds."""
        self.outbox.send(carrier_id, pdu, message_id)

    # -- connections before their bind ---------------------------------------------------
    def admit(self, address: str, fileno: int | None) -> Refusal | None:
        """Decide on a connection just accepted, before reading from it: None admits it
        (counted as unbound until it binds or goes), else why it is closed at once."""
        now = asyncio.get_running_loop().time()
        reason: Refusal | None = None
        smpp = self.config.smpp
        if smpp.refuse_unknown_addresses and not self.allowed.allows(
            address, self.directory.carriers()
        ):
            reason = Refusal.UNKNOWN_ADDRESS
        elif fileno is not None and self.fds.accepted(fileno, now):
            reason = Refusal.FD_LIMIT
        else:
            reason = self.unbound.admit(address)
        if reason is None:
            return None
        connections_refused(reason.value).inc()
        if self.refusals.refused(address, reason, now):
            log.warning(
                "refused a connection from %s: %s (unbound now: %d from it, %d in all;"
                " further refusals of it within a minute are only counted)",
                address, REASONS[reason], self.unbound.of(address), self.unbound.count,
            )  # fmt: skip
        if self.refusals.pending and self._summary is None:
            loop = asyncio.get_running_loop()
            self._summary = loop.call_later(self.refusals.every, self._summarise)
        return reason

    def _summarise(self) -> None:
        self._summary = None
        line = self.refusals.summary(asyncio.get_running_loop().time())
        if line is not None:
            log.warning("smpp: %s", line)

    # -- failed-bind blocks lifted by gatewayctl carrier unblock --------------------------
    def read_unblocks(self) -> list[tuple[int, str]]:
        """Unblock requests newer than the last applied (blocking: run it in a thread)."""
        with self.engine.connect() as conn:
            return unblock.since(conn, self._unblocks_seen)

    def apply_unblocks(self, requests: list[tuple[int, str]]) -> None:
        """Lift the failed-bind blocks of each requested address (see read_unblocks)."""
        for request_id, address in requests:
            self._unblocks_seen = max(self._unblocks_seen, request_id)
            lifted = self.guard.unblock(address)
            log.warning("failed-bind blocks of %s lifted (%d were active)", address, lifted)

    def _last_unblock(self) -> int:
        with self.engine.connect() as conn:
            return unblock.last_id(conn)

    def forget(self, conn: SmppConnection) -> None:
        self.connections.discard(conn)
        if conn.carrier is not None and conn.bound:
            self.binds.remove(conn.carrier.id)
        if not self.connections:
            self._idle.set()

    # -- per carrier -------------------------------------------------------------------
    def rules(self, carrier: Carrier) -> Rules:
        rules = self._rules.get(carrier.alphabet)
        if rules is None:
            rules = self._rules[carrier.alphabet] = Rules(
                plan=self.config.numbering,
                default_alphabet=carrier.alphabet,
                default_validity=self.config.delivery.validity,
            )
        return rules

    def bucket(self, carrier: Carrier) -> TokenBucket | None:
        if carrier.throughput is None:
            self.buckets.pop(carrier.id, None)
            return None
        bucket = self.buckets.get(carrier.id)
        if bucket is None or bucket.rate != carrier.throughput:
            bucket = self.buckets[carrier.id] = TokenBucket(carrier.throughput)
        return bucket

    # -- concatenated messages ------------------------------------------------------------
    def part_stored(self, op: AcceptOp) -> AssembleOp | None:
        """A part is on disk: add it to its group; when the message is whole, write it.

        The returned AssembleOp answers the completing part once the whole message is
        stored, so a carrier that got every resp knows the message is kept whole."""
        sub = op.sub
        assert sub.concat is not None
        ref, total, seq = sub.concat
        key = group_key(op.carrier_id, sub)
        tag = PartTag(op.message_id, sub.registered_delivery, op.now)
        try:
            whole = self.reassembler.join(key, ref, total, seq, sub.part, op.now, tag)
        except SmppError as exc:  # e.g. a part claiming another total: stays stored, expires
            log.warning(
                "part %d of %s not reassembled: %s", op.message_id, key, exc,
                extra=about(op.message_id),
            )  # fmt: skip
            return None
        self._arm_expiry()
        if whole is None:
            return None
        meta = sub.meta()
        if op.admission is not None and op.admission.path:
            meta["path"] = op.admission.path
        if op.admission is not None and op.admission.upstream:
            meta["upstream"] = op.admission.upstream
        registered_delivery, accepted_at = joined_fields(whole.tags)
        assemble = AssembleOp(
            key,
            op.carrier_id,
            meta,
            whole.payload,
            total,
            registered_delivery,
            utcnow(),
            accepted_at,
            on_stored=self._assembled,
        )
        self._admit_whole(assemble, op.carrier_id)
        self.writer.submit(assemble)
        return assemble

    def _admit_whole(self, assemble: AssembleOp, carrier_id: int | None) -> None:
        """The pipeline's decision for a message whose last part arrived: its whole text
        decides the lane; no route (after the parts were taken) stores it as rejected."""
        if self.pipeline is None or assemble.missing:
            return
        meta = assemble.meta
        data_coding = int(meta["data_coding"])
        text = None
        if not is_binary(data_coding):
            try:
                alphabet = meta.get("alphabet", "gsm")
                text = decode_text(assemble.payload, data_coding, default_alphabet=alphabet)
            except TextError:
                return  # stored as failed, naming the reason
        carrier = self.directory.by_id(carrier_id) if carrier_id is not None else None
        validity = meta["validity_until"]
        try:
            assemble.admission = self.pipeline.admit(
                origin="carrier",
                sender=carrier.name if carrier is not None else "",
                source=meta["source"],
                destination=meta["destination"],
                text=text,
                priority=int(meta["priority"]),
                validity_until=datetime.fromisoformat(validity)
                if isinstance(validity, str)
                else validity,
                path=parse_path(meta.get("path")),
                now=utcnow(),
            )
        except (Refused, SmppError) as exc:
            assemble.rejected = str(getattr(exc, "reason", exc))

    def _assembled(self, row: dict[str, Any]) -> None:
        if self.pipeline is not None:
            self.pipeline.accepted(row, concatenated=True)

    def _stored(self, row: dict[str, Any]) -> None:
        if self.pipeline is not None:
            self.pipeline.accepted(row)

    def _arm_expiry(self) -> None:
        deadline = self.reassembler.next_deadline()
        if deadline is None or self._expiry is not None:
            return
        delay = max(0.0, (deadline - utcnow()).total_seconds())
        self._expiry = asyncio.get_running_loop().call_later(delay, self.expire_parts)

    def expire_parts(self, now: datetime | None = None) -> None:
        self._expiry = None
        for key, _ref in self.reassembler.expire(now or utcnow()):
            self.writer.submit(ExpireGroupOp(str(key), self.writer, on_stored=self._assembled))
        self._arm_expiry()

    def _load_parts(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(fragments)
                    .where(fragments.c.message_id.is_(None))
                    .order_by(fragments.c.id)
                ).mappings()
            )

    async def _recover_parts(self) -> None:
        """After a restart: parts stored but not yet in a message go back into their groups."""
        rows = await asyncio.get_running_loop().run_in_executor(None, self._load_parts)
        payloads: dict[int, bytes] = {}
        unreadable: set[str] = set()  # groups that can never be whole: failed at once
        for row in rows:
            try:
                payloads[row["id"]] = open_part(row["id"], row["payload"])
            except TextUnreadable as exc:
                log.error("stored part %d: %s", row["id"], exc.reason)
                unreadable.add(row["group_key"])
        for key in sorted(unreadable):  # its message is written failed, naming the parts
            self.writer.submit(ExpireGroupOp(key, self.writer, on_stored=self._assembled))
        for row in rows:
            if row["group_key"] in unreadable:
                continue
            ref = int(row["group_key"].rsplit("|", 2)[1])
            payload = payloads[row["id"]]
            tag = PartTag(row["id"], row["registered_delivery"], row["accepted_at"])
            try:
                whole = self.reassembler.join(
                    row["group_key"], ref, row["total"], row["seq"], payload, row["accepted_at"],
                    tag,
                )  # fmt: skip
            except SmppError as exc:  # stored by a version that did not check it first
                log.warning("stored part %d cannot join its group: %s", row["id"], exc)
                continue
            if whole is not None:
                registered_delivery, accepted_at = joined_fields(whole.tags)
                assemble = AssembleOp(
                    row["group_key"],
                    row["carrier_id"],
                    row["meta"],
                    whole.payload,
                    row["total"],
                    registered_delivery,
                    utcnow(),
                    accepted_at,
                    on_stored=self._assembled,
                )
                self._admit_whole(assemble, row["carrier_id"])
                self.writer.submit(assemble)
        if rows:
            log.info("recovered %d stored parts of concatenated messages", len(rows))
        self.expire_parts()


class SmppConnection(asyncio.Protocol):
    """One carrier connection: a Session plus the I/O and the server's decisions."""

    def __init__(self, server: SmppServer, tls: bool) -> None:
        self.server = server
        self.tls = tls
        self.refused: Refusal | None = None  # closed unread at connection_made
        self._unbound = False  # counted in server.unbound until it binds or goes
        self._bound = False
        self.carrier: Carrier | None = None
        self.bound = False
        self.receiver = False  # bound rx or trx: takes deliver_sm
        self.address = "?"
        self.bind_type: str | None = None  # tx | rx | trx once bound
        self.bound_at: datetime | None = None
        self.session: Session
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: datetime | None = None
        self._draining = False
        self._flush_soon = False
        self._errors_logged = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "?"
        sock = transport.get_extra_info("socket")
        self.refused = self.server.admit(self.address, sock.fileno() if sock is not None else None)
        if self.refused is not None:  # closed before a byte is read, no answer: a reset
            self.transport.abort()
            return
        self._unbound = True
        self.session = Session(utcnow(), self.server.limits)
        self.server.connections.add(self)
        self._arm()

    @property
    def bound(self) -> bool:
        return self._bound

    @bound.setter
    def bound(self, value: bool) -> None:
        self._bound = value
        if value and self._unbound:  # a carrier now: off the unbound caps
            self._unbound = False
            self.server.unbound.release(self.address)

    def data_received(self, data: bytes) -> None:
        if self.refused is not None:
            return
        now = utcnow()
        self._handle(self.session.receive_data(data, now), now)
        self._flush()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused is not None:
            return
        if self._unbound:
            self._unbound = False
            self.server.unbound.release(self.address)
        if self._timer is not None:
            self._timer.cancel()
        if self.session.state is not State.CLOSED:
            self.session.close("connection lost")
        self.server.forget(self)
        if self.carrier is not None:
            if self.receiver:
                self.server.outbox.gone(self, self.carrier.id, self.session.abandon_requests())
            log.info("carrier %s (%s) disconnected", self.carrier.name, self.address)

    def pause_writing(self) -> None:  # the carrier is not reading: stop taking its requests
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    # -- events ----------------------------------------------------------------------
    def _handle(self, events: list[Event], now: datetime) -> None:
        for event in events:
            if isinstance(event, RequestReceived):
                self._request(event.pdu, now)
            elif isinstance(event, BindRequested):
                task = asyncio.get_running_loop().create_task(
                    self._bind(event.pdu, event.bind_type)
                )
                self._tasks.add(task)
                task.add_done_callback(self._task_done)
            elif isinstance(event, ProtocolError):
                self._errors_logged += 1
                if self._errors_logged <= LOGGED_ERRORS:  # garbage cannot flood the log
                    log.info("carrier %s (%s): %s", self._who(), self.address, event.reason)
            elif isinstance(event, ResponseReceived):
                if isinstance(event.context, Item):
                    self.server.outbox.answered(event.context, event.response.status)
            elif isinstance(event, ResponseTimedOut):
                if isinstance(event.context, Item):
                    self.server.outbox.timed_out(event.context)
            elif isinstance(event, Closed):
                extra = self._errors_logged - LOGGED_ERRORS
                more = f" ({extra} more protocol errors not logged)" if extra > 0 else ""
                log.info("closing %s (%s): %s%s", self._who(), self.address, event.reason, more)
                self._flush()
                if self.transport is not None:
                    self.transport.close()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("bind of %s failed", self.address, exc_info=task.exception())
            if self.transport is not None:
                self.transport.close()

    def _who(self) -> str:
        return self.carrier.name if self.carrier else "unbound connection"

    async def _bind(self, pdu: Pdu, bind_type: str) -> None:
        server = self.server
        loop = asyncio.get_running_loop()
        our_id = server.config.smpp.system_id
        system_id = str(pdu.params.get("system_id", ""))
        # counted on arrival, before any password is checked (BindGuard)
        admission = server.guard.arrive(self.address, system_id, loop.time())
        attempt = admission.attempt
        try:
            if admission.delay:
                await asyncio.sleep(admission.delay)  # slows down guessing from this address
            if attempt is None:
                verdict = BindVerdict(Status.ESME_RBINDFAIL, admission.reason, kind="blocked")
            else:
                verdict = await self._check(system_id, str(pdu.params.get("password", "")))
            status, reason = verdict.status, verdict.reason
            if status == Status.ESME_ROK:
                carrier = server.directory.by_system_id(system_id)
                assert carrier is not None
                if not server.binds.try_add(carrier.id, carrier.max_binds):
                    status, reason = (
                        Status.ESME_RBINDFAIL,
                        f"carrier {carrier.name} has {carrier.max_binds} binds already",
                    )
                    verdict = verdict._replace(kind="max_binds")
                else:
                    self.carrier, self.bound = carrier, True
            if attempt is not None:  # told before anything else, even if the peer left
                if status == Status.ESME_ROK:
                    server.guard.succeeded(attempt, loop.time())
                elif verdict.guessing:
                    server.guard.failed(attempt, loop.time())
                else:
                    server.guard.release(attempt, loop.time())
        finally:
            if attempt is not None:
                server.guard.release(attempt, loop.time())  # no-op once told
        if status != Status.ESME_ROK:
            bind_failures(verdict.kind).inc()
        if self.session.state is State.CLOSED:
            if self.bound and self.carrier is not None:
                server.binds.remove(self.carrier.id)
                self.bound = False
            return
        if status == Status.ESME_ROK:
            self.session.accept_bind(pdu, our_id, utcnow())
            self.bind_type, self.bound_at = bind_type, utcnow()
            log.info(
                "carrier %s bound %s from %s%s",
                reason.removeprefix("carrier "),
                bind_type,
                self.address,
                " over TLS" if self.tls else "",
            )
            if bind_type in ("rx", "trx") and self.carrier is not None:
                self.receiver = True
                self._flush()  # the bind_resp goes before any deliver_sm
                server.outbox.bound(self, self.carrier.id)
        else:
            log.warning(
                "bind refused for system_id %r from %s: %s", system_id, self.address, reason
            )
            self.session.reject_bind(pdu, status, our_id)
        self._flush()
        self._arm()

    async def _check(self, system_id: str, password: str) -> BindVerdict:
        """The credentials' verdict from the password-check pool, or a refusal at once when
        the pool has no room (ESME_RBINDFAIL, not counted as guessing)."""
        carrier = self.server.directory.by_system_id(system_id)
        future = self.server.checks.submit(
            system_id, partial(_checked_bind_status, carrier, password, self.address)
        )
        busy = BindVerdict(Status.ESME_RBINDFAIL, "password checks busy", kind="busy")
        if future is None:
            return busy
        try:
            return cast(BindVerdict, await asyncio.wrap_future(future))
        except Dropped:
            return busy

    def _request(self, pdu: Pdu, now: datetime) -> None:
        carrier = self.carrier
        assert carrier is not None  # the session only passes requests of a bound carrier
        command = pdu.command_id
        writer = self.server.writer
        if self._draining:  # shutting down: nothing new, so the bind can be unbound soon
            self.respond(pdu, Status.ESME_RTHROTTLED)
            return
        if command in (CommandId.SUBMIT_SM, CommandId.DATA_SM):
            self._submit(pdu, carrier, now)
        elif command == CommandId.QUERY_SM:
            writer.submit(QueryOp(self, pdu, carrier.id, carrier.receipt_id))
        elif command == CommandId.CANCEL_SM:
            self._cancel(pdu, carrier, now)
        elif command == CommandId.REPLACE_SM:
            self.respond(pdu, Status.ESME_RREPLACEFAIL)  # stored messages are not rewritten
        else:  # submit_multi: one recipient per submit_sm only
            self.respond(pdu, Status.ESME_RINVCMDID)

    def _cancel(self, pdu: Pdu, carrier: Carrier, now: datetime) -> None:
        """cancel_sm: a message being sent right now cannot be cancelled; one queued in memory
        is taken out while the store decides (and put back if the cancel fails)."""
        pipeline = self.server.pipeline
        withdrawn = None
        if pipeline is not None:
            try:
                wanted = parse_message_id(str(pdu.params.get("message_id", "")), carrier.receipt_id)
            except SmppError:
                wanted = None
            if wanted is not None:
                withdrawn = pipeline.withdraw(wanted, carrier.id)
                if withdrawn is False:
                    self.respond(pdu, Status.ESME_RCANCELFAIL)
                    return

        def done(cancelled: bool, message_id: int | None) -> None:
            if pipeline is None:
                return
            if isinstance(withdrawn, Pending) and not cancelled:
                pipeline.restore(withdrawn)
            elif cancelled and message_id is not None and not isinstance(withdrawn, Pending):
                pipeline.withdraw(message_id, carrier.id)  # cancelled by a part's id: out too

        op = CancelOp(self, pdu, carrier.id, carrier.receipt_id, now, on_done=done)
        self.server.writer.submit(op)

    def _submit(self, pdu: Pdu, carrier: Carrier, now: datetime) -> None:
        server = self.server
        try:
            sub = read_submission(pdu, server.rules(carrier), now)
            path, upstream = read_path(pdu), read_upstream(pdu)
        except SmppError as exc:
            log.info("carrier %s: %s refused: %s", carrier.name, pdu.name, exc)
            self.respond(pdu, exc.status)
            return
        bucket = server.bucket(carrier)
        if bucket is not None and not bucket.take(sub.segments, asyncio.get_running_loop().time()):
            SMPP_THROTTLED.labels("in", carrier.name).inc()
            self.respond(pdu, Status.ESME_RTHROTTLED)
            return
        if sub.concat is not None:
            ref, total, seq = sub.concat
            try:  # refused now, not once stored and acknowledged (it could never be joined)
                server.reassembler.check(group_key(carrier.id, sub), ref, total, seq, sub.part)
            except SmppError as exc:
                log.info("carrier %s: %s part refused: %s", carrier.name, pdu.name, exc)
                self.respond(pdu, exc.status)
                return
        if server.writer.pending >= MAX_WRITER_BACKLOG:
            self.respond(pdu, Status.ESME_RMSGQFUL)
            return
        admission = None
        if server.pipeline is not None:
            try:
                admission = server.pipeline.admit(
                    origin="carrier",
                    sender=carrier.name,
                    source=sub.source,
                    destination=sub.destination,
                    text=sub.text,
                    priority=sub.priority,
                    validity_until=sub.validity_until,
                    path=path,
                    upstream=upstream,
                    now=now,
                )
            except Refused as exc:
                log.info("carrier %s: %s refused: %s", carrier.name, pdu.name, exc.reason)
                self.respond(pdu, exc.status)
                return
        op = AcceptOp(
            self,
            pdu,
            sub,
            carrier.id,
            carrier.receipt_id,
            now,
            now + server.config.smpp.reassembly_timeout,
            server.part_stored,
            admission=admission,
            on_stored=server._stored,
        )
        try:
            server.writer.submit(op)
        except RuntimeError:  # shutting down
            self.respond(pdu, Status.ESME_RSYSERR)

    def respond(self, pdu: Pdu, status: int = Status.ESME_ROK, **params: Any) -> None:
        if self.session.state is State.CLOSED:
            return
        if self.carrier is not None and pdu.command_id in COUNTED:
            smpp_responses(self.carrier.name, pdu.name, status_name(status)).inc()
        self._handle(self.session.respond(pdu, status, **params), utcnow())
        if self._draining and self.session.unanswered == 0:
            self.session.unbind(utcnow())
        if not self._flush_soon:  # the answers of one committed batch leave in one write
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._deferred_flush)

    def _deferred_flush(self) -> None:
        self._flush_soon = False
        self._flush()
        self._arm()

    def can_deliver(self) -> bool:
        return not self._draining and self.session.can_send(CommandId.DELIVER_SM)

    def deliver(self, item: Item) -> None:
        """Send an outbox PDU; its answer comes back as ResponseReceived with ``item``."""
        pdu = item.pdu
        self.session.send_request(pdu.command_id, pdu.params, utcnow(), pdu.tlvs, context=item)
        if not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._deferred_flush)

    # -- shutdown ---------------------------------------------------------------------
    def shut_down(self) -> None:
        """Graceful: once every request of this bind is answered, unbind it."""
        self._draining = True
        if self.session.state in (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX):
            if self.session.unanswered == 0:
                self.session.unbind(utcnow())
                self._flush()
        elif self.transport is not None and self.session.unanswered == 0:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- bytes and time ------------------------------------------------------------------
    def _flush(self) -> None:
        data = self.session.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _arm(self) -> None:
        deadline = self.session.next_deadline()
        if deadline is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return  # an earlier timer fires first and re-arms
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, (deadline - utcnow()).total_seconds())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
        self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        now = utcnow()
        self._handle(self.session.on_timer(now), now)
        self._flush()
        self._arm()
