# The delivery pipeline: accept -> route -> deliver (SIP or SMPP) -> outcome, receipt, CDR.
"""Store-and-forward between the SMPP and SIP sides (issue 5).

**Admission** (:meth:`Pipeline.admit`), before a message is stored: the env path is checked
(loop protection), plugins may refuse or rewrite it, the router resolves the destination (no
route: refused, ESME_RINVDSTADR / SIP 404), its lane is chosen, and a message for an app that
is not registered is stored straight as parked (retry-wait) for it.

**After the commit** (:meth:`Pipeline.accepted`) the message joins the :class:`DeliveryQueue`
in memory (or stays in the store when memory holds ``delivery.max_queued`` already: it is
read back in id order as the queue drains). The pump sends the next message of each
destination, priority lane first, up to ``delivery.max_in_flight`` at once:

- to a local DID with a live registration: SIP MESSAGE to every contact
  (:meth:`gateway.sip.server.SipServer.send_message`); 2xx: delivered; 408/480/503, a timeout
  or a transport error: retry-wait by ``delivery.retry`` (parked for the next REGISTER
  when no contact is left, sent again at once when the app registered again from a new
  contact meanwhile); any other answer: failed;
- to a local DID whose app is offline: parked until the account registers (then its messages
  go out in order) or until the validity runs out (expired);
- over an outbound SMPP connection: the first route of the decision whose connection is bound;
  a refusal fails over to the next; accepted by the peer: ``forwarded`` until the peer's
  receipt settles it;
- to a carrier bound to us (a policy ``--carrier``): as MO deliver_sm on one of its receiver
  or transceiver binds, through the outbox (:mod:`gateway.smpp.mo`); every part answered
  ESME_ROK: ``delivered`` (and a CDR leg ``out`` for that carrier). A permanent refusal fails
  over to the next route; a temporary one (or no answer) retries by ``delivery.retry``. A
  carrier with no receiver bound is waited for (the message parked, released when it binds)
  for ``delivery.carrier_hold``; after that the next route is tried, and when none is left
  the message waits for any of them to bind, until its validity runs out (expired).

Every step is written through the batch writer in grouped commits (:mod:`pipeline_store`);
the outcome's CDR and the receipt for the originating carrier are in the same transaction
as the final state. The life cycle is :mod:`gateway.lifecycle`'s table.

**At-least-once.** A message is marked ``sending`` when it goes out and settled when its
answer comes; its destination's next message goes out only once that outcome is committed.
If the process dies in between (after the app got it, before the outcome was committed),
the message is still ``sending`` in the store and is sent again after the restart: the one
window in which an app can receive a message twice, at most one message per destination
per crash. Nothing accepted is
lost: at start, the store's backlog (accepted, routed, sending) is read back, parked
destinations are held again, and forwarded messages wait for their receipts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from gateway.admission import Admission, Refused
from gateway.backlog import WaitingCounts
from gateway.config import Config
from gateway.lanes import LaneRules
from gateway.lifecycle import MessageEvent, MessageState, advance
from gateway.logs import about
from gateway.metrics import FORWARDED, SMPP_THROTTLED, delivery_latency, messages_ended
from gateway.pipeline_store import (
    ExpireForwardedOp,
    PeerReceiptOp,
    ReadOp,
    WriteOp,
    backlog_after,
    held_destinations,
    parked_counts,
    parked_of,
    pending_from_row,
    stage_final,
    stage_forwarded,
    stage_step,
    state_counts,
    waiting_counts,
)
from gateway.queue import DeliveryQueue, LineState, Pending
from gateway.routes import RoutingCache
from gateway.sip.accounts import AccountDirectory, SipAccount
from gateway.smpp.carriers import CarrierDirectory
from gateway.smpp.codec import SmppError
from gateway.smpp.constants import Status
from gateway.smpp.esme import Outgoing
from gateway.smpp.hops import PATH_TAG, UPSTREAM_TAG, check_path, extend, parse_path
from gateway.smpp.mo import TEMPORARY, mo_pdus
from gateway.smpp.outbox import Item, Report, stage_pdu
from gateway.smpp.receipt import Receipt
from gateway.smpp.text import TextError
from gateway.store.writer import Batch, BatchWriter, Op
from gateway.tasks import forever, guarded, report
from plugins import MessageView, OutcomeEvent, PluginFailure, PluginHost
from routing.router import Decision, Route

if TYPE_CHECKING:
    from gateway.sip.delivery import Outcome
    from gateway.smpp.client import SmppClient, SubmitResult

log = logging.getLogger("gateway.pipeline")

LINE_LOAD = 1000  # parked messages of one destination read back at a time
BACKLOG_LOAD = 5000  # backlog messages read back from the store at a time
SWEEP_SECONDS = 1.0  # how often held lines and forwarded messages are looked at
FORWARDED_SWEEP_EVERY = 10  # sweeps between two looks for forwarded messages past validity
COUNT_SWEEP_EVERY = 30  # sweeps between two counts of parked messages per number
SIP_LOOP = 482  # RFC 3261 §21.4.20 Loop Detected
SIP_TOO_MANY_HOPS = 483
OFFLINE_REASON = "waiting for account {account} to register"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Sip(Protocol):
    """What the pipeline needs of the SIP side."""

    def live_contacts(self, account: int, now: datetime) -> int: ...

    async def send_message(
        self, account: SipAccount, *, from_user: str, to_user: str, text: str
    ) -> Outcome: ...


class Connections(Protocol):
    """What the pipeline needs of the outbound SMPP connections."""

    def client(self, connection_id: int) -> SmppClient | None: ...


class Outboxes(Protocol):
    def queued(self, item: Item) -> None: ...

    def receiving(self, carrier_id: int) -> bool: ...

    def unbound_since(self, carrier_id: int) -> datetime: ...

    def track(self, items: list[Item], report: Report) -> None: ...

    def withdraw(self, items: list[Item]) -> None: ...


CARRIER_ATTEMPT_SECONDS = 120.0  # an attempt to a bound carrier ends if not all parts answered


def sip_user(number: str, ton: int) -> str:
    """How an app sees a sender or recipient: +E.164 for numbers, the name for the rest."""
    return f"+{number}" if ton in (1, 2) and number.isdigit() else number


class Pipeline:
    """One node's delivery pipeline (event-loop side)."""

    def __init__(
        self,
        config: Config,
        writer: BatchWriter,
        routes: RoutingCache,
        accounts: AccountDirectory,
        carriers: CarrierDirectory,
        plugins: PluginHost | None = None,
    ) -> None:
        delivery = config.delivery
        self.config = config
        self.env = config.env
        self.writer = writer
        self.routes = routes
        self.accounts = accounts
        self.carriers = carriers
        self.plugins = plugins or PluginHost()
        self.sip: Sip | None = None
        self.connections: Connections | None = None
        self.outbox: Outboxes | None = None
        self.lanes = LaneRules.build(
            delivery.verification_senders,
            delivery.verification_keywords,
            delivery.verification_max_length,
        )
        self.schedule = delivery.retry
        self.max_in_flight = delivery.max_in_flight
        self.max_queued = delivery.max_queued
        self.max_hops = delivery.max_hops
        # parked messages per number (counted in the store now and then: the numbers with at
        # least half the limit, plus those parked since) and messages waiting per route (not
        # yet taken by the peer); a number or a route at its limit is refused
        self.parked = WaitingCounts(delivery.max_stored_per_destination)
        self.waiting = WaitingCounts(delivery.max_waiting_per_route)
        self.in_store: dict[str, int] = {}  # messages not ended yet, by state (counted, 30 s)
        self.queue = DeliveryQueue()
        self.in_flight: dict[int, Pending] = {}
        self.stats: Counter[str] = Counter()
        self._ops: list[Op] = []
        self._write: WriteOp | None = None
        self._flush_soon = False
        self._pump_soon = False
        self._loaded_upto = 0  # every message with a higher id that is due is in the store only
        self._store_backlog = True  # the backlog is being read back (at start, after overflow)
        self._backlog_loading = False
        self._more: set[str] = set()  # lines with more parked messages than were read back
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeps = 0
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: list[asyncio.Future[None]] = []
        self.attempts_settled = 0  # attempts that ended (delivered, failed, retry, forwarded)
        self.carrier_hold = delivery.carrier_hold
        self._for_carrier: dict[int, set[str]] = {}  # destinations waiting for a carrier's bind
        self._taken: dict[int, tuple[int, int]] = {}  # message -> (carrier, parts) it took

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Hold the destinations with parked messages, read the backlog back, start sweeping."""
        self._loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Any]] = self._loop.create_future()
        self._read(held_destinations, lambda rows, error: _settle(done, rows, error))
        self.flush()
        rows = await done
        await self._count_waiting()
        now = utcnow()
        for destination, due in rows:
            self.queue.hold(destination, due or now)
        for destination, _ in rows:
            account = self._account_of(destination)
            if account is not None and self._online(account, now):
                self._release(destination)
        self._load_backlog()
        self._spawn(forever("pipeline sweep", self._sweep_forever), name="pipeline-sweep")
        if rows:
            log.info("pipeline: %d destinations have parked messages", len(rows))

    @property
    def store_backlog(self) -> bool:
        """More messages are due in the store than memory holds (read back as it drains)."""
        return self._store_backlog

    def stop_sending(self) -> None:
        """Shutdown begins: no new attempt starts (what is queued stays in the store for the
        next start); the attempts in flight finish, :meth:`close` waits for them."""
        self._closing = True

    async def close(self, timeout: float = 10.0) -> None:
        """Stop sending; wait for the answers in flight; write what is pending."""
        self._closing = True
        for task in list(self._tasks):
            if task.get_name() == "pipeline-sweep":
                task.cancel()
        deadline = asyncio.get_running_loop().time() + timeout
        while self.in_flight and asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(TimeoutError):
                left = max(0.0, deadline - asyncio.get_running_loop().time())
                await asyncio.wait_for(self.changed(), left)
        if self.in_flight:
            log.warning(
                "pipeline: %d messages still in flight at shutdown; sent again after the restart",
                len(self.in_flight),
            )
        for task in list(self._tasks):
            task.cancel()
        self.flush()

    def _spawn(self, coro: Any, name: str | None = None) -> asyncio.Task[Any]:
        assert self._loop is not None
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def changed(self) -> asyncio.Future[None]:
        """A future resolved when the next attempt ends (registered at once, so an attempt
        ending before the caller awaits it is not missed); for tests and shutdown."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._changed.append(waiter)
        return waiter

    def _notify_changed(self) -> None:
        self.attempts_settled += 1
        waiters, self._changed = self._changed, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- admission (before the message is stored) ---------------------------------------------
    def admit(
        self,
        *,
        origin: str,
        sender: str,
        source: str,
        destination: str,
        text: str | None,
        priority: int,
        validity_until: datetime,
        path: tuple[str, ...] = (),
        upstream: str | None = None,
        now: datetime,
    ) -> Admission:
        """How to store a new message, or Refused (with its SMPP and SIP answers)."""
        try:
            check_path(path, self.env, self.max_hops)
        except SmppError as exc:
            sip = SIP_LOOP if exc.status == 0x400 else SIP_TOO_MANY_HOPS
            raise Refused(exc.reason, status=exc.status, sip=sip) from None
        rewrite: dict[str, str] = {}
        view = MessageView(origin, sender, source, destination, text, priority)
        try:
            if self.plugins.has("on_accept"):
                changed, refusal = self.plugins.accept(view)
                if refusal is not None:
                    raise Refused(refusal, status=0x66, sip=403)  # ESME_RX_R_APPN
                for name in ("source", "destination", "text"):
                    if getattr(changed, name) != getattr(view, name):
                        rewrite[name] = getattr(changed, name)
                view = changed
            decision = self._decide(view)
        except PluginFailure as exc:  # its policy is closed: nothing goes through unchecked
            raise Refused(str(exc), status=exc.status, sip=exc.sip) from None
        if decision.kind == "reject":
            raise Refused(decision.reason)
        lane = self.lanes.lane(source=view.source, text=view.text, priority=priority)
        route_path = ",".join(path) if path else None
        rewrite = rewrite or None
        if decision.kind == "forward":
            keys = [r.key for r in decision.routes if not r.carrier]
            if keys and self.waiting.full(keys):
                raise Refused(
                    f"{self.waiting.limit} messages are already waiting for the peer of"
                    f" {keys[0][5:]!r}",
                    status=Status.ESME_RMSGQFUL,
                    sip=503,
                )
            route = decision.routes[0].key
            offline = None
        else:
            assert decision.local is not None
            route = f"sip:{decision.local.account_id}"
            offline = OFFLINE_REASON.format(account=decision.local.account_id)
            if self._online(decision.local.account, now):
                offline = None
        destination = view.destination
        line = self.queue.state(destination)
        if offline is not None and line in (LineState.OPEN, LineState.HELD):
            self._hold(destination, validity_until, reason=offline)  # until a REGISTER
            line = LineState.HELD
        if line is not LineState.HELD and (destination not in self._more or lane == "priority"):
            self._admitted(decision, route)
            return Admission(
                "routed", lane, route, path=route_path, upstream=upstream, rewrite=rewrite
            )
        if self.parked.full([destination]):
            raise Refused(
                f"{self.parked.limit} messages are already waiting for {destination}",
                status=Status.ESME_RMSGQFUL,
                sip=486,
            )
        self.parked.added(destination)
        self._admitted(decision, route)
        if offline is not None:
            due = validity_until
        else:  # behind a retry wait, or behind parked messages still being read back
            due = self._held_until(destination) if line is LineState.HELD else now
        return Admission(
            "retry-wait",
            lane,
            route,
            reason=offline or "waiting behind earlier messages to the same number",
            next_attempt_at=due,
            path=route_path,
            upstream=upstream,
            rewrite=rewrite,
        )

    def _admitted(self, decision: Decision, route: str) -> None:
        """A message for a peer is admitted: it waits for the route until taken or ended."""
        if decision.kind == "forward" and route.startswith("smpp:"):
            self.waiting.added(route)

    async def _count_waiting(self) -> None:
        """Count in the store the parked messages per number (numbers near the limit only),
        the messages waiting per route, and the messages not ended yet by state. On a
        connection of its own, off the writer: with a backlog of a million messages these
        counts take most of a second on SQLite (bench/README.md), which must not hold the
        commits back. Like any count, it may be off by what happened meanwhile; the next one
        corrects it."""
        assert self._loop is not None
        queries: list[tuple[Callable[[dict[str, int]], None], Any, str]] = [
            (self.parked.recounted, parked_counts(max(1, self.parked.limit // 2)), "parked"),
            (self.waiting.recounted, waiting_counts, "messages waiting for peers"),
            (self._by_state, state_counts, "messages by state"),
        ]
        for keep, query, what in queries:
            try:
                rows = await self._loop.run_in_executor(None, self._count, query)
            except SQLAlchemyError as exc:
                log.warning("counting %s failed: %s", what, exc)
                continue
            keep({key: int(n) for key, n in rows})

    def _count(self, query: Callable[[Any], list[Any]]) -> list[Any]:
        with self.writer.engine.connect() as conn:
            return query(conn)

    def _by_state(self, counts: dict[str, int]) -> None:
        self.in_store = counts

    def _decide(self, view: MessageView) -> Decision:
        decision = self.routes.table.resolve(view.destination)
        if self.plugins.has("on_route"):
            decision = self.plugins.route(view, decision)
        return decision

    def _online(self, account: int, now: datetime) -> bool:
        return self.sip is not None and self.sip.live_contacts(account, now) > 0

    def _account_of(self, destination: str) -> int | None:
        found = self.accounts.by_did(destination)
        return None if found is None else found.id

    # -- after the commit ---------------------------------------------------------------------
    def accepted(self, row: dict[str, Any], *, concatenated: bool = False) -> None:
        """A message row was committed (submit_sm, assembled parts, an app's MESSAGE, an MO)."""
        p = pending_from_row(row, concatenated=concatenated or None, stored=False)
        self.stats["accepted"] += 1
        state = row["state"]
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "message %d: accepted from %s %s for %s, %s, route %s, lane %s", p.id, p.origin,
                row.get("carrier_id") or row.get("account_id") or row.get("connection_id"),
                p.destination, state, p.route, p.lane, extra=about(p.id),
            )  # fmt: skip
        if state in ("delivered", "failed", "expired", "rejected", "deleted"):
            self._final(p, state, row["reason"], None)  # e.g. parts that never all arrived
            return
        if state == "retry-wait":
            self._waiting(p)
            return
        if p.id <= self._loaded_upto:
            return  # read back from the store already
        if state == "accepted":  # not admitted before it was stored (assembled parts)
            p.lane = self.lanes.lane(source=p.source, text=p.text, priority=p.priority)
        if self._store_backlog or len(self.queue) >= self.max_queued:
            if not self._store_backlog:
                log.warning(
                    "pipeline: %d messages queued; the rest wait in the store", len(self.queue)
                )
                self._store_backlog = True
                self._load_backlog()
            return
        self._enqueue(p)

    def _enqueue(self, p: Pending) -> None:
        self._loaded_upto = max(self._loaded_upto, p.id)
        if self.queue.admit(p.destination) == "park":
            self._park([p], self._held_until(p.destination), reason=None)
            return
        if p.destination in self._more and p.lane != "priority":  # it waits behind the parked
            self._park([p], p.validity_until, reason=None)
            return
        self.queue.push(p)
        self._pump_later()

    def _held_until(self, destination: str) -> datetime:
        line = self.queue.line(destination)
        assert line is not None and line.held_until is not None
        return line.held_until

    def registered(self, account: SipAccount) -> None:
        """An app registered: its destinations' parked messages go out now, in order."""
        for did in account.dids:
            self._release(did)

    def withdraw(self, message_id: int, carrier_id: int | None = None) -> Pending | bool | None:
        """Take a queued message out for cancel_sm: the message, None when it is not in memory
        (or is another carrier's: left where it is), False when it is being sent right now
        (cannot be cancelled)."""
        sending = self.in_flight.get(message_id)
        if sending is not None:
            return False if carrier_id in (None, sending.carrier_id) else None
        queued = self.queue.get(message_id)
        if queued is None or carrier_id not in (None, queued.carrier_id):
            return None
        return self.queue.remove(message_id)

    def restore(self, p: Pending) -> None:
        """A withdrawn message whose cancel failed goes back in line."""
        self.queue.push(p)
        self._pump_later()

    # -- sending ------------------------------------------------------------------------------
    def _pump_later(self) -> None:
        if not self._pump_soon and self._loop is not None:
            self._pump_soon = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_soon = False
        if self._closing:
            return
        now = utcnow()
        while len(self.in_flight) < self.max_in_flight:
            p = self.queue.pop()
            if p is None:
                break
            try:
                self._start(p, now)
            except Exception as exc:  # noqa: BLE001 - a bug: reported, the message recovered
                report("pipeline start", exc, p.id)
                self._recover(p, exc)
        if self._store_backlog and len(self.queue) < self.max_queued // 2:
            self._load_backlog()

    def _start(self, p: Pending, now: datetime) -> None:
        if p.unreadable is not None:  # read back from the store under another key file
            self._final(p, "failed", p.unreadable, None)
            self.queue.done(p.destination)
            return
        if now >= p.validity_until:
            self._final(p, "expired", "the validity ran out before delivery", None)
            self.queue.done(p.destination)
            return
        view = MessageView(p.origin, "", p.source, p.destination, p.text, p.priority)
        try:
            decision = self._decide(view)
        except PluginFailure as exc:  # the plugin's policy is closed: not sent unchecked
            log.warning("message %d: %s; tried again later", p.id, exc, extra=about(p.id))
            p.attempts += 1  # counts as an attempt: the retries back off, then it expires
            self._attempt_failed(p, True, str(exc), None)
            return
        if decision.kind == "reject":
            self._final(p, "rejected", decision.reason, None)
            self.queue.done(p.destination)
        elif decision.kind == "local":
            assert decision.local is not None
            account = self.accounts.by_id(decision.local.account)
            if account is None or self.sip is None:
                self._final(p, "rejected", f"account of {p.destination} is gone", None)
                self.queue.done(p.destination)
                return
            p.route = f"sip:{account.account_id}"
            if not self._online(account.id, now):
                self._park_line(p, OFFLINE_REASON.format(account=account.account_id))
                return
            if p.text is None:
                self._final(p, "failed", "binary content cannot be delivered as SIP text", None)
                self.queue.done(p.destination)
                return
            self._send(p)
            self._spawn(self._guarded("sip delivery", p, self._deliver_sip(p, account)))
        else:
            self._send(p)
            self._spawn(self._guarded("smpp forward", p, self._forward(p, decision)))

    def _guarded(self, task: str, p: Pending, work: Any) -> Any:
        """``work`` (a message's delivery) whose unexpected error recovers the message."""
        return guarded(task, work, lambda exc: self._recover(p, exc, sent=True), message_id=p.id)

    def _recover(self, p: Pending, exc: BaseException, sent: bool = False) -> None:
        """An attempt ended with an unexpected error (already reported): it counts as a
        failed attempt, retried by ``delivery.retry`` and expired when its validity ends, so
        its destination is not blocked. Nothing to do when the message was settled before
        the error (``sent``: the error came from its delivery task, after it went out)."""
        line = self.queue.line(p.destination)
        started = p.id in self.in_flight
        if not started and (sent or line is None or line.state is not LineState.BUSY):
            return  # settled (or parked) before the error: its line moved on
        if not started:  # failed before it went out: still an attempt
            p.attempts += 1
        reason = f"internal error: {type(exc).__name__}: {str(exc)[:160]}"
        self._attempt_failed(p, True, reason, None)

    def _send(self, p: Pending) -> None:
        p.attempts += 1
        self.in_flight[p.id] = p
        if log.isEnabledFor(logging.DEBUG):
            log.debug("message %d: attempt %d via %s", p.id, p.attempts, p.route, extra=about(p.id))
        self.stage(lambda batch: stage_step(batch, p, "sending"))

    async def _deliver_sip(self, p: Pending, account: SipAccount) -> None:
        assert self.sip is not None and p.text is not None
        try:
            outcome = await self.sip.send_message(
                account,
                from_user=sip_user(p.source, p.source_ton),
                to_user=f"+{p.destination}",
                text=p.text,
            )
        except Exception as exc:  # noqa: BLE001 - reported (a traceback once per kind), retried
            report("sip delivery", exc, p.id)
            self._attempt_failed(p, True, f"SIP delivery failed: {exc}", None)
            return
        if outcome.kind == "delivered":
            answer = f"the app answered {outcome.status} {outcome.reason}"
            self._settled(p, "delivered", None, None, detail=answer)
        elif outcome.kind == "permanent":
            self._settled(
                p, "failed", f"the app answered {outcome.status} {outcome.reason}", outcome.status
            )
        elif not self._online(account.id, utcnow()):
            # no contact left (none registered, or its connection closed: issue 16): parked
            # until the app registers again, not retried on a timer
            del self.in_flight[p.id]
            self._park_line(p, OFFLINE_REASON.format(account=account.account_id))
            self._notify_changed()
        else:
            self._attempt_failed(
                p, True, f"the app answered {outcome.status} {outcome.reason}", outcome.status
            )
            if outcome.retry_now:  # the app registered again elsewhere: send there at once
                self._release(p.destination)

    async def _forward(self, p: Pending, decision: Decision) -> None:
        path = parse_path(p.path)
        try:
            out_path = extend(path, self.env)
            if len(path) + 1 >= self.max_hops:
                raise SmppError(
                    0x401,
                    f"{len(path) + 1} environments passed, at most {self.max_hops - 1} may forward",
                )
        except SmppError as exc:
            self._settled(p, "failed", exc.reason, int(exc.status))
            return
        message = Outgoing(
            message_id=p.id,
            source=p.source,
            source_ton=p.source_ton,
            destination=p.destination,
            text=p.text,
            body=p.body if p.text is None else None,
            data_coding=None if p.text is not None else p.data_coding,
            registered_delivery=1,  # we need the peer's receipt to know the outcome
            priority=min(p.priority, 3),
            tlvs={PATH_TAG: out_path.encode("ascii"), UPSTREAM_TAG: str(p.id).encode("ascii")},
        )
        refusals: list[tuple[str, SubmitResult]] = []
        down: list[str] = []
        wait: list[Route] = []  # carriers not bound, waited for
        refused: list[tuple[str, int]] = []  # carriers' permanent refusals (reason, status)
        for route in decision.routes:
            if route.carrier:
                verdict = await self._to_carrier(p, route, wait, refused)
                if verdict == "done":
                    return
                if verdict == "stop":
                    break
                down.append(f"carrier {route.name}")
                continue
            client = None if self.connections is None else self.connections.client(route.connection)
            if client is None or not client.bound:
                down.append(route.name)
                continue
            p.route = f"smpp:{route.name}"
            result = await client.submit(message)
            if result.ok:
                self._forwarded(p, route.connection, result.peer_message_ids)
                return
            log.info(
                "message %d: connection %r: %s", p.id, route.name, result.reason, extra=about(p.id)
            )
            if result.status == Status.ESME_RTHROTTLED:
                SMPP_THROTTLED.labels("out", route.name).inc()
            refusals.append((route.name, result))
        if p.id not in self.in_flight:
            return  # settled by a carrier's answer
        if wait:
            self._wait_for_carriers(p, wait, refused)
            return
        if refused and not refusals:
            self._settled(p, "failed", refused[0][0], refused[0][1])
            return
        if not refusals:
            names = ", ".join(repr(n) for n in down)
            self._attempt_failed(p, True, f"no connection is up ({names})", None)
            return
        temporary = [(n, r) for n, r in refusals if r.temporary]
        name, result = (temporary or refusals)[0]
        reason = f"connection {name!r}: {result.reason}"
        self._attempt_failed(p, bool(temporary), reason, int(result.status))

    # -- carriers bound to us (policy --carrier) ---------------------------------------------
    async def _to_carrier(
        self, p: Pending, route: Route, wait: list[Route], refused: list[tuple[str, int]]
    ) -> str:
        """One carrier route of an attempt: "done" (settled or retried), "stop" (wait for
        this carrier: within its hold), "next" (not bound past its hold, or a permanent
        refusal already noted: try the next route)."""
        assert self.outbox is not None
        carrier = self.carriers.by_id(route.connection)
        if carrier is None:
            return "next"
        now = utcnow()
        if not self.outbox.receiving(carrier.id):
            wait.append(route)
            since = self.outbox.unbound_since(carrier.id)
            return "stop" if now - since < self.carrier_hold else "next"
        p.route = route.key
        try:
            pdus = mo_pdus(
                message_id=p.id, source=p.source, destination=p.destination, text=p.text,
                body=p.body, data_coding=p.data_coding, alphabet=carrier.alphabet,
                concat=carrier.concat,
            )  # fmt: skip
        except TextError as exc:
            self._settled(p, "failed", f"carrier {route.name!r}: {exc.reason}", int(exc.status))
            return "done"
        status, why = await self._deliver_parts(p, carrier.id, pdus)
        if status == Status.ESME_ROK:
            self._taken[p.id] = (carrier.id, len(pdus))
            detail = f"carrier {route.name!r} answered ESME_ROK to {len(pdus)} deliver_sm"
            self._settled(p, "delivered", None, None, detail=detail)
            return "done"
        reason = f"carrier {route.name!r}: {why}"
        log.info("message %d: %s", p.id, reason, extra=about(p.id))
        if status is None or status in TEMPORARY:
            if status == Status.ESME_RTHROTTLED:
                SMPP_THROTTLED.labels("out", route.name).inc()
            self._attempt_failed(p, True, reason, status)
            return "done"
        refused.append((reason, status))  # a permanent refusal: the next route is tried
        return "next"

    async def _deliver_parts(
        self, p: Pending, carrier_id: int, pdus: list[Any]
    ) -> tuple[int | None, str]:
        """Store the parts in the outbox (with the attempt), send them, wait for every answer:
        (ESME_ROK, "") or the first other answer (None: unanswered, unsent)."""
        assert self._loop is not None and self.outbox is not None
        outbox = self.outbox
        result: asyncio.Future[tuple[int | None, str]] = self._loop.create_future()
        items: list[Item] = []
        left = [len(pdus)]

        def report(item: Item, status: int | None, why: str) -> None:
            if result.done():
                return
            if status == Status.ESME_ROK:
                left[0] -= 1
                if left[0] == 0:
                    result.set_result((status, ""))
            else:
                result.set_result((status, why))

        def stage(batch: Batch) -> None:
            items.clear()  # staged again when a batch is retried op by op
            for part, pdu in enumerate(pdus, start=1):
                items.append(stage_pdu(batch, carrier_id, pdu, p.id, part=part))

        def done(error: BaseException | None) -> None:
            if error is not None:
                if not result.done():
                    result.set_result((None, f"parts not stored: {error}"))
                return
            outbox.track(list(items), report)

        self.stage(stage, done)
        try:
            answer = await asyncio.wait_for(asyncio.shield(result), CARRIER_ATTEMPT_SECONDS)
        except TimeoutError:
            answer = (None, f"not every part answered within {CARRIER_ATTEMPT_SECONDS:.0f}s")
        if answer[0] != Status.ESME_ROK:
            outbox.withdraw(items)
        return answer

    def _wait_for_carriers(
        self, p: Pending, wait: list[Route], refused: list[tuple[str, int]]
    ) -> None:
        """No target took the message and carriers are not bound: it waits for a bind (each
        such carrier's bind releases it), retried by ``delivery.retry`` meanwhile, sooner
        when a carrier's hold ends (the next route is tried then)."""
        assert self.outbox is not None
        now = utcnow()
        names = ", ".join(repr(r.name) for r in wait)
        retry_at = None
        for route in wait:
            self._for_carrier.setdefault(route.connection, set()).add(p.destination)
            ends = self.outbox.unbound_since(route.connection) + self.carrier_hold
            if ends > now:  # then the next route may be tried
                retry_at = ends if retry_at is None else min(retry_at, ends)
        reason = f"waiting for carrier {names} to bind"
        if refused:
            reason = f"{reason}; {refused[0][0]}"
        self._attempt_failed(p, True, reason, None, retry_at=retry_at)

    def carrier_bound(self, carrier_id: int) -> None:
        """A carrier's receiver bound: the destinations waiting for it go out now."""
        for destination in self._for_carrier.pop(carrier_id, ()):
            self._release(destination)

    def _forwarded(self, p: Pending, connection: int, peer_ids: tuple[str, ...]) -> None:
        self.in_flight.pop(p.id, None)
        self._left_waiting(p)
        self.stats["forwarded"] += 1
        now = utcnow()
        if p.route is not None:
            FORWARDED.labels(p.route.removeprefix("smpp:")).inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "message %d: forwarded via %s, peer ids %s", p.id, p.route, ",".join(peer_ids),
                extra=about(p.id),
            )  # fmt: skip
        delivery_latency("smpp").observe(max((now - p.accepted_at).total_seconds(), 0.0))
        self.stage(
            lambda batch: stage_forwarded(batch, p, connection, peer_ids, now),
            lambda error: self._line_done(p.destination),  # the next one once this is stored
        )
        self._notify_changed()

    def _settled(
        self,
        p: Pending,
        state: str,
        reason: str | None,
        error: int | None,
        detail: str | None = None,
    ) -> None:
        """A final answer for a message in flight."""
        self.in_flight.pop(p.id, None)
        # the destination's next message goes out once this outcome is committed: a crash
        # can then make an app receive at most one message twice (the one being sent)
        self._final(
            p, state, reason, error, then=lambda: self._line_done(p.destination), detail=detail
        )
        self._notify_changed()

    def _attempt_failed(
        self,
        p: Pending,
        temporary: bool,
        reason: str,
        error: int | None,
        retry_at: datetime | None = None,
    ) -> None:
        self.in_flight.pop(p.id, None)
        now = utcnow()
        if not temporary:
            self._settled(p, "failed", reason, error)
            return
        step = advance(
            MessageState.SENDING,
            MessageEvent.TEMPORARY,
            now=now,
            validity_until=p.validity_until,
            attempts=p.attempts,
            schedule=self.schedule,
        )
        if step.state is MessageState.EXPIRED:
            self._settled(p, "expired", f"the validity ran out; last attempt: {reason}", error)
            return
        assert step.next_attempt_at is not None
        if retry_at is not None and retry_at < step.next_attempt_at:
            step = dataclasses.replace(step, next_attempt_at=retry_at)
        self.stats["retries"] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "message %d: retry at %s (%s)", p.id, step.next_attempt_at.isoformat(), reason,
                extra=about(p.id),
            )  # fmt: skip
        others = self.queue.hold(p.destination, step.next_attempt_at)
        self.stage(
            lambda batch: stage_step(
                batch, p, "retry-wait", reason=reason, error_code=error,
                next_attempt_at=step.next_attempt_at,
            )
        )  # fmt: skip
        self._park(others, step.next_attempt_at, reason=f"waiting behind message {p.id}")
        self._pump_later()
        self._notify_changed()

    def _line_done(self, destination: str) -> None:
        self.queue.done(destination)
        self._pump_later()
        if destination in self._more:
            line = self.queue.line(destination)
            if line is None or not len(line):  # what was read back went out: read on
                self._more.discard(destination)
                self._hold(destination, utcnow(), reason=None)
                self._release(destination)

    # -- parking ------------------------------------------------------------------------------
    def _park_line(self, p: Pending, reason: str) -> None:
        """``p``'s app is offline: it and everything queued for its destination wait for a
        registration (or their validity)."""
        due = p.validity_until
        others = self.queue.hold(p.destination, due)
        self._park([p, *others], None, reason=reason)
        self._waiting(p)
        self._pump_later()

    def _hold(self, destination: str, due: datetime, reason: str | None) -> None:
        """Hold a destination that is not sending right now (its messages in memory, if any,
        are parked)."""
        self._park(self.queue.hold(destination, due), None, reason=reason)

    def _park(self, parked: list[Pending], due: datetime | None, reason: str | None) -> None:
        """Write ``parked`` as retry-wait, each due at ``due`` or else its own validity."""
        if not parked:
            return
        self.stats["parked"] += len(parked)

        def stage(batch: Batch) -> None:
            for m in parked:
                stage_step(
                    batch, m, "retry-wait",
                    reason=reason or "waiting for the destination",
                    next_attempt_at=due or m.validity_until,
                )  # fmt: skip

        self.stage(stage)

    def _waiting(self, p: Pending) -> None:
        self.stats["waiting"] += 1
        if self.plugins.has("on_waiting"):
            self.plugins.notify(self._event("waiting", p, "retry-wait", None, None))

    def _release(self, destination: str, at: datetime | None = None) -> None:
        """Read a held line's parked messages back (``at``: the time the release is for;
        those whose validity ended by then are expired)."""
        if not self.queue.release(destination):
            return
        self.stats["releases"] += 1

        def done(rows: list[Any], error: BaseException | None) -> None:
            if error is not None:
                log.error("reading the parked messages of %s failed: %s", destination, error)
                self.queue.released(destination, [])
                self.queue.hold(destination, utcnow())  # try again at the next sweep
                return
            now = max(utcnow(), at) if at is not None else utcnow()
            loaded: list[Pending] = []
            for row in rows:
                p = pending_from_row(row)
                if now >= p.validity_until:
                    self._final(
                        p, "expired", row["reason"] or "the validity ran out", row["error_code"]
                    )
                else:
                    loaded.append(p)
            if len(rows) >= LINE_LOAD:
                self._more.add(destination)
            else:
                self._more.discard(destination)
            self.queue.released(destination, loaded)
            self._pump_later()

        self._read(parked_of(destination, LINE_LOAD), done)
        self.flush()

    def _load_backlog(self) -> None:
        if self._backlog_loading:
            return
        self._backlog_loading = True
        after = self._loaded_upto

        def done(rows: list[Any], error: BaseException | None) -> None:
            self._backlog_loading = False
            if error is not None:
                log.error("reading the backlog failed: %s", error)
                return
            for row in rows:
                p = pending_from_row(row)
                if row["state"] == "sending":
                    p.attempts = max(p.attempts - 1, 0)  # recovered: that attempt's answer was lost
                self._enqueue(p)
                self._loaded_upto = max(self._loaded_upto, p.id)
            if rows:
                log.info("pipeline: %d messages read back from the store", len(rows))
            if len(rows) < BACKLOG_LOAD:
                self._store_backlog = False
            elif len(self.queue) < self.max_queued // 2:
                self._load_backlog()

        self._read(backlog_after(after, BACKLOG_LOAD), done)
        self.flush()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            self.sweep(utcnow())

    def sweep(self, now: datetime) -> None:
        """Release held lines whose time came; now and then expire forwarded messages whose
        receipt never came."""
        for destination in self.queue.due(now):
            self._release(destination, now)
        self._sweeps += 1
        if self._sweeps % COUNT_SWEEP_EVERY == 0:
            self._spawn(guarded("pipeline count", self._count_waiting()))
        if self._sweeps % FORWARDED_SWEEP_EVERY == 0:
            self._ops_append(ExpireForwardedOp(now, self._id_style, after=self._expired_forwarded))
            self.flush()

    def _expired_forwarded(self, op: ExpireForwardedOp, error: BaseException | None) -> None:
        if error is not None:
            log.error("expiring forwarded messages failed: %s", error)
            return
        self._committed_items(op.items)
        for p in op.expired:
            self._outcome(p, "expired", "no receipt from the peer within the validity", None)

    # -- receipts from peers --------------------------------------------------------------------
    async def peer_receipt(self, connection_id: int, peer_id: str, receipt: Receipt) -> int:
        """A connection's peer sent a receipt: recorded (and the message settled) before the
        answer; returns the deliver_sm_resp status."""
        assert self._loop is not None
        done: asyncio.Future[PeerReceiptOp] = self._loop.create_future()

        def after(op: PeerReceiptOp, error: BaseException | None) -> None:
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(op)

        self._ops_append(
            PeerReceiptOp(
                connection_id, peer_id, receipt.stat, receipt.err, utcnow(), self._id_style, after
            )
        )
        self.flush()
        try:
            op = await done
        except Exception as exc:  # noqa: BLE001 - the store's error: logged, the peer retries
            log.error("receipt %s not recorded: %s", peer_id, exc)
            return 0x64  # ESME_RX_T_APPN: the peer sends it again
        if not op.known:
            self.stats["unknown_receipts"] += 1
            log.info("connection %d: receipt for unknown message id %s", connection_id, peer_id)
        if op.settled is not None and op.state is not None:
            log.info(
                "message %d %s (the receipt of connection %d, peer id %s)",
                op.settled.id,
                op.state,
                connection_id,
                peer_id,
                extra=about(op.settled.id),
            )
            self._committed_items(op.items)
            self._outcome(op.settled, op.state, None, None)
        return 0

    # -- writing ------------------------------------------------------------------------------
    def stage(
        self,
        stager: Callable[[Batch], None],
        done: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        """Queue a write; every write of one loop iteration goes in one operation, in order."""
        if self._write is None:
            self._write = WriteOp()
            self._ops.append(self._write)
        self._write.stagers.append(stager)
        if done is not None:
            self._write.done.append(done)
        self._flush_later()

    def _ops_append(self, op: Op) -> None:
        self._write = None  # later writes come after this operation
        self._ops.append(op)
        self._flush_later()

    def _read(
        self,
        query: Callable[..., list[Any]],
        done: Callable[[list[Any], BaseException | None], None],
    ) -> None:
        self._ops_append(ReadOp(query, done))

    def _flush_later(self) -> None:
        if not self._flush_soon and self._loop is not None:
            self._flush_soon = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_soon = False
        ops, self._ops, self._write = self._ops, [], None
        for op in ops:
            try:
                self.writer.submit(op)
            except RuntimeError:  # the writer is closed: shutting down, the store keeps the state
                log.warning("pipeline: writer closed, %d operations not written", len(ops))
                return

    def _final(
        self,
        p: Pending,
        state: str,
        reason: str | None,
        error: int | None,
        then: Callable[[], None] | None = None,
        detail: str | None = None,
    ) -> None:
        """Write the final state, CDR and receipts; ``then`` runs after the commit (or its
        failure: the line must not stay blocked; the store still says sending, so the
        message is sent again after a restart)."""
        now = utcnow()
        items: list[Item] = []
        self.stats[state] += 1
        self._left_waiting(p)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("message %d: %s (%s)", p.id, state, reason or "-", extra=about(p.id))

        taken = self._taken.pop(p.id, None)  # a carrier took it: a CDR leg out for it

        def stage(batch: Batch) -> None:
            items.clear()  # staged again when a batch is retried op by op
            stage_final(
                batch, p, state, reason=reason, error_code=error, now=now,
                id_style=self._id_style, items=items, detail=detail, taken=taken,
            )  # fmt: skip

        def done(error_: BaseException | None) -> None:
            if error_ is None:
                self._committed_items(items)
                self._outcome(p, state, reason, error)
            if then is not None:
                then()

        self.stage(stage, done)

    def _left_waiting(self, p: Pending) -> None:
        """``p`` no longer waits for a peer (taken by it, or ended before it was)."""
        if p.route is not None and p.route.startswith("smpp:"):
            self.waiting.left(p.route)

    def _committed_items(self, items: list[Item]) -> None:
        if self.outbox is not None:
            for item in items:
                self.outbox.queued(item)

    def _outcome(self, p: Pending, state: str, reason: str | None, error: int | None) -> None:
        """A final state is committed (here, by a peer's receipt, or expired unanswered)."""
        messages_ended(state).inc()
        if state == "delivered" and p.route is not None and p.route.startswith("sip:"):
            latency = (utcnow() - p.accepted_at).total_seconds()
            delivery_latency("sip").observe(max(latency, 0.0))
        if self.plugins.has("on_outcome"):
            self.plugins.notify(self._event("outcome", p, state, reason, error))

    def _event(
        self, kind: str, p: Pending, state: str, reason: str | None, error: int | None
    ) -> OutcomeEvent:
        return OutcomeEvent(
            kind, p.id, state, p.source, p.destination, p.route, reason, error, utcnow()
        )

    def _id_style(self, carrier_id: int) -> str | None:
        carrier = self.carriers.by_id(carrier_id)
        return None if carrier is None else carrier.receipt_id


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
