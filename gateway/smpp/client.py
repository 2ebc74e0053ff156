# SMPP client adapter (asyncio): one outbound connection as an ESME, bound and kept bound.
"""Moves bytes between a socket and an ``Esme`` state machine, and keeps the connection up:
connect (TCP or TLS), bind, reconnect with backoff, enquire_link and response timers (one
timer at the session's next deadline).

``submit`` sends a routed message (split into parts as needed), each part waiting for room
in the window and for the throughput limit; the message's result comes once every part is
answered. deliver_sm from the peer are receipts (handed to ``on_receipt``; answered ESME_ROK,
or, when it returns an awaitable, with the status it resolves to) or MO messages (``on_mo``
stores them; its status is the answer, sent only after it returns). Everything waiting is
bounded: the window, the line of submits waiting for it (``max_queued``; beyond it "queue
full"), the peer's unanswered deliver_sm.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from gateway.secrets import SecretBox
from gateway.smpp.codec import Pdu, SmppError, status_name
from gateway.smpp.constants import Status
from gateway.smpp.esme import (
    BOUND,
    CREDENTIALS,
    TEMPORARY,
    Backoff,
    BindRefused,
    Bound,
    Closed,
    Esme,
    Event,
    Limits,
    Outgoing,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    State,
    is_acknowledgement,
    is_receipt,
    read_receipt,
    submit_parts,
)
from gateway.smpp.guard import TokenBucket
from gateway.smpp.receipt import Receipt, ReceiptError

__all__ = ["ConnectionSettings", "Outgoing", "SmppClient", "SubmitResult"]

log = logging.getLogger("gateway.smpp.client")

LOGGED_ERRORS = 10  # protocol errors logged per connection; the rest are counted
MAX_QUEUED = 1000  # submits (parts) waiting for room in the window
CLOSE_TIMEOUT = 5.0  # close(): for our answers, the peer's answers, then unbind_resp
_ORDERLY = frozenset({"unbound", "unbound by peer"})  # Closed reasons that are no problem


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ConnectionSettings:
    """One row of ``connections``, the password decrypted, plus the timers."""

    id: int
    name: str
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    bind_type: str  # trx | tx | rx
    window: int
    throughput: int | None  # message parts per second
    tls: bool
    enquire_link: float = 30.0
    response_timeout: float = 30.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    system_type: str = ""

    def __post_init__(self) -> None:
        if self.bind_type not in ("trx", "tx", "rx"):
            raise ValueError(f"bind_type {self.bind_type!r} is not trx, tx or rx")
        if not 1 <= self.port <= 65535 or self.window < 1:
            raise ValueError(f"port {self.port} or window {self.window} out of range")
        if self.throughput is not None and self.throughput <= 0:
            raise ValueError(f"throughput {self.throughput} is not a positive rate")
        if min(self.enquire_link, self.response_timeout) <= 0:
            raise ValueError("enquire_link and response_timeout must be positive")
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError("need 0 < reconnect_min <= reconnect_max")

    @classmethod
    def from_row(cls, row: Mapping[str, Any], box: SecretBox, **timers: Any) -> ConnectionSettings:
        """Settings of a ``connections`` row; ``timers`` override enquire_link, ...."""
        return cls(
            id=row["id"],
            name=row["name"],
            host=row["host"],
            port=row["port"],
            system_id=row["system_id"],
            password=box.decrypt(row["password_enc"], field=f"connection {row['name']}"),
            bind_type=row["bind_type"],
            window=row["window"],
            throughput=row["throughput"],
            tls=bool(row["tls"]),
            **timers,
        )


@dataclass(frozen=True)
class SubmitResult:
    """What became of one message: ``ok`` only if every part was accepted."""

    ok: bool
    status: int  # the first failing part's command_status (ESME_ROK when ok)
    peer_message_ids: tuple[str, ...]  # one per part, in order (those accepted)
    reason: str
    temporary: bool  # worth a retry later (throttled, queue full, timeout, link lost)


def _failed(status: int, reason: str, temporary: bool, ids: tuple[str, ...] = ()) -> SubmitResult:
    return SubmitResult(False, status, ids, reason, temporary)


OnReceipt = Callable[[str, Receipt, Pdu], Awaitable[int] | None]
OnMo = Callable[[Pdu], Awaitable[int]]


class SmppClient:
    """One enabled connection: bound while started, reconnecting until closed.

    ``on_state`` hears: connecting, binding, bound, refused (bind refused; ``retry_delay``
    says when it tries again), disconnected (unreachable or link ended; ditto), unbinding,
    closed."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        on_receipt: OnReceipt,
        on_mo: OnMo,
        on_state: Callable[[str], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.settings = settings
        self.on_receipt = on_receipt
        self.on_mo = on_mo
        self.on_state = on_state
        self.limits = Limits(
            enquire_link_interval=timedelta(seconds=settings.enquire_link),
            response_timeout=timedelta(seconds=settings.response_timeout),
            window=settings.window,
        )
        self.backoff = Backoff(settings.reconnect_min, settings.reconnect_max)
        self.state = "idle"
        self.retry_delay: float | None = None  # before the next attempt, once one failed
        self.max_queued = max_queued
        self._ssl = ssl_context
        self._link: _Link | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._closing = False
        self._space: deque[asyncio.Future[None]] = deque()  # submits waiting for the window
        self._bucket = TokenBucket(settings.throughput) if settings.throughput else None
        self._ref = secrets.randbelow(256)
        self._last_problem: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- life cycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Start connecting, binding and reconnecting in a task of its own."""
        if self._task is None:
            name = f"smpp-client {self.settings.name}"
            self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Unbind politely (after the answers in flight, each way) and stop reconnecting."""
        if self._closing:
            return
        self._closing = True
        self._wake(all_=True)
        link = self._link
        if link is not None and link.bound:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(link.quiet(), timeout)
            link.unbind()
            self._set_state("unbinding")
            try:
                await asyncio.wait_for(asyncio.shield(link.finished), timeout)
            except TimeoutError:
                log.warning("connection %s: no unbind_resp in time", self.settings.name)
        if link is not None:
            link.abort()
        self._stop.set()
        for task in [t for t in (self._task, *self._tasks) if t is not None]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_state("closed")

    @property
    def bound(self) -> bool:
        return self._link is not None and self._link.bound and not self._closing

    @property
    def queued(self) -> int:
        """Submits waiting for room in the window."""
        return len(self._space)

    async def _run(self) -> None:
        while not self._closing:
            refused = await self._attempt()
            if self._closing:
                return
            self.retry_delay = self.backoff.refused() if refused else self.backoff.failed()
            self._set_state("refused" if refused else "disconnected")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.retry_delay)

    async def _attempt(self) -> bool:
        """Connect, bind and stay until the link ends; True when the bind was refused for
        its credentials."""
        s = self.settings
        loop = asyncio.get_running_loop()
        self._set_state("connecting")
        context = None
        if s.tls:
            context = self._ssl
            if context is None:
                context = ssl.create_default_context()
                context.minimum_version = ssl.TLSVersion.TLSv1_2
        link = _Link(self, loop.create_future())
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: link,
                    s.host,
                    s.port,
                    ssl=context,
                    server_hostname=s.host if s.tls else None,
                ),
                s.response_timeout,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            self._problem(f"cannot connect to {s.host}:{s.port}: {str(exc) or type(exc).__name__}")
            return False
        try:
            await asyncio.shield(link.finished)
        finally:
            link.abort()  # cancelled (close): nothing else will end it
            if self._link is link:
                self._link = None
            self._wake(all_=True)  # submits waiting for this link's window fail now
        return link.refusal in CREDENTIALS

    # -- what the link reports --------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        self.state = state
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:
                log.exception("connection %s: on_state(%r) failed", self.settings.name, state)

    def _problem(self, text: str) -> None:
        """A failure to bind: WARNING when it differs from the last one, else DEBUG."""
        level = logging.DEBUG if text == self._last_problem else logging.WARNING
        self._last_problem = text
        log.log(level, "connection %s: %s", self.settings.name, text)

    def _bound(self, peer: str) -> None:
        s = self.settings
        self.backoff.reset()
        self.retry_delay = None
        self._last_problem = None
        log.info(
            "connection %s bound %s to %s:%d (%s)%s",
            s.name, s.bind_type, s.host, s.port, peer, " over TLS" if s.tls else "",
        )  # fmt: skip
        self._set_state("bound")
        self._wake(all_=True)

    def _wake(self, all_: bool = False) -> None:
        """Room in the window (or the link changed): the first waiting submit (or all) looks."""
        while self._space:
            waiter = self._space.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not all_:
                    return

    # -- submissions ------------------------------------------------------------------------
    async def submit(self, message: Outgoing) -> SubmitResult:
        """Send ``message`` (all its parts) and wait for the peer's answers."""
        link = self._link
        if self._closing or link is None or not link.bound:
            return _failed(Status.ESME_RSYSERR, "not bound", True)
        if self.settings.bind_type == "rx":
            return _failed(Status.ESME_RINVBNDSTS, "a receiver connection cannot submit", False)
        self._ref = (self._ref + 1) % 256
        try:
            parts = submit_parts(message, self._ref)
        except SmppError as exc:
            return _failed(exc.status, str(exc), False)
        answers: list[asyncio.Future[_Answer]] = []
        failure: _Answer | None = None
        for params, tlvs in parts:
            problem = await self._room(link)
            if problem is not None:
                failure = _Answer(problem[0], "", problem[1], True)
                break
            answer: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
            try:
                link.submit(params, tlvs, answer)
            except SmppError as exc:
                failure = _Answer(exc.status, "", str(exc), False)
                break
            answers.append(answer)
        results = [await a for a in answers]
        if failure is not None:
            results.append(failure)
        ids = tuple(r.peer_id for r in results if r.status == Status.ESME_ROK)
        bad = [r for r in results if r.status != Status.ESME_ROK]
        if not bad:
            return SubmitResult(True, Status.ESME_ROK, ids, "", False)
        first = next((r for r in bad if not r.temporary), bad[0])  # permanent wins
        return _failed(first.status, first.reason, first.temporary, ids)

    async def _room(self, link: _Link) -> tuple[int, str] | None:
        """Wait for room in ``link``'s window and a throughput token; else why not. Waiting
        submits are served in order: a newcomer queues behind them, a woken one goes first."""
        loop = asyncio.get_running_loop()
        woken = False
        while True:
            if self._closing:
                return Status.ESME_RSYSERR, "connection closing"
            if self._link is not link or not link.bound:
                return Status.ESME_RSYSERR, "connection lost"
            if (woken or not self._space) and link.can_submit():
                if self._bucket is None or self._bucket.take(1, loop.time()):
                    return None
                await asyncio.sleep(max(self._bucket.wait_time(1, loop.time()), 0.001))
                continue
            if len(self._space) >= self.max_queued:
                return Status.ESME_RMSGQFUL, "queue full"
            waiter: asyncio.Future[None] = loop.create_future()
            self._space.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._space:
                    self._space.remove(waiter)
                elif not waiter.cancelled():
                    self._wake()  # woken, then cancelled: the next in line gets the room
                raise
            woken = True

    # -- the peer's deliver_sm -------------------------------------------------------------
    def _incoming(self, link: _Link, pdu: Pdu) -> None:
        if is_acknowledgement(pdu):  # an SME acknowledgement: nothing for us to do with it
            log.debug("connection %s: SME acknowledgement answered", self.settings.name)
            link.respond(pdu, Status.ESME_ROK)
            return
        if not is_receipt(pdu):
            task = asyncio.get_running_loop().create_task(self._mo(link, pdu))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        try:
            receipt = read_receipt(pdu, utcnow())
        except ReceiptError as exc:
            log.warning("connection %s: unreadable receipt: %s", self.settings.name, exc)
            link.respond(pdu, exc.status)
            return
        try:
            result = self.on_receipt(receipt.message_id, receipt, pdu)
        except Exception:
            log.exception("connection %s: on_receipt failed", self.settings.name)
            link.respond(pdu, Status.ESME_RX_T_APPN)
            return
        if inspect.isawaitable(result):  # recorded first, then answered (like an MO)
            task = asyncio.get_running_loop().create_task(self._answer_after(link, pdu, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        link.respond(pdu, Status.ESME_ROK)

    async def _answer_after(self, link: _Link, pdu: Pdu, result: Awaitable[int]) -> None:
        try:
            status = int(await result)
        except Exception:
            log.exception("connection %s: on_receipt failed", self.settings.name)
            status = Status.ESME_RX_T_APPN
        link.respond(pdu, status)

    async def _mo(self, link: _Link, pdu: Pdu) -> None:
        try:
            status = int(await self.on_mo(pdu))
        except Exception:
            log.exception("connection %s: on_mo failed", self.settings.name)
            status = Status.ESME_RX_T_APPN
        link.respond(pdu, status)


@dataclass(slots=True)
class _Answer:
    status: int
    peer_id: str
    reason: str
    temporary: bool


class _Link(asyncio.Protocol):
    """One TCP/TLS connection of the client: an Esme plus the I/O and its timer."""

    def __init__(self, client: SmppClient, finished: asyncio.Future[None]) -> None:
        self.client = client
        self.finished = finished
        self.esme = Esme(utcnow(), client.limits)
        self.refusal: int | None = None
        self.close_reason: str | None = None
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: datetime | None = None
        self._flush_soon = False
        self._errors_logged = 0
        self._quiet: list[asyncio.Future[None]] = []

    @property
    def bound(self) -> bool:
        return self.esme.state in BOUND

    def can_submit(self) -> bool:
        return self.esme.can_submit()

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check
        self.transport = cast(asyncio.Transport, transport)
        s = self.client.settings
        now = utcnow()
        self.esme = Esme(now, self.client.limits)
        try:
            self.esme.bind(s.bind_type, s.system_id, s.password, s.system_type, now)
        except SmppError as exc:
            self.refusal = exc.status
            self.client._problem(f"bind not sent: {exc}")
            self.transport.close()
            return
        self.client._link = self  # before any answer can arrive
        self.client._set_state("binding")
        self._flush()
        self._arm()

    def data_received(self, data: bytes) -> None:
        now = utcnow()
        self._handle(self.esme.receive_data(data, now))
        self._flush()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        was_bound = self.bound
        if self.esme.state is not State.CLOSED:
            self.esme.close("connection lost")
        for answer in self.esme.abandon_requests():
            if isinstance(answer, asyncio.Future) and not answer.done():
                answer.set_result(_Answer(Status.ESME_RSYSERR, "", "connection lost", True))
        self._set_quiet()
        if was_bound and not self.client._closing:  # not closed on purpose by either side
            log.warning("connection %s lost: %s", self.client.settings.name, exc or "closed")
        if not self.finished.done():
            self.finished.set_result(None)

    # -- events ----------------------------------------------------------------------
    def _handle(self, events: list[Event]) -> None:
        client = self.client
        for event in events:
            if isinstance(event, ResponseReceived | ResponseTimedOut):
                self._answered(event)
            elif isinstance(event, RequestReceived):
                client._incoming(self, event.pdu)
            elif isinstance(event, Bound):
                client._bound(event.system_id)
            elif isinstance(event, BindRefused):
                self.refusal = event.status
                client._problem(event.reason)
            elif isinstance(event, ProtocolError):
                self._errors_logged += 1
                if self._errors_logged <= LOGGED_ERRORS:  # garbage cannot flood the log
                    log.info("connection %s: %s", client.settings.name, event.reason)
            elif isinstance(event, Closed):
                self.close_reason = event.reason
                level = (
                    logging.DEBUG  # the refusal itself was reported (once per change)
                    if self.refusal
                    else logging.INFO
                    if event.reason in _ORDERLY
                    else logging.WARNING
                )
                log.log(level, "connection %s closing: %s", client.settings.name, event.reason)
                self._flush()
                if self.transport is not None:
                    self.transport.close()

    def _answered(self, event: ResponseReceived | ResponseTimedOut) -> None:
        answer = event.context
        if isinstance(answer, asyncio.Future) and not answer.done():
            if isinstance(event, ResponseTimedOut):
                result = _Answer(Status.ESME_RSYSERR, "", "no submit_sm_resp in time", True)
            else:
                resp = event.response
                status = resp.status
                reason = "" if status == Status.ESME_ROK else f"peer answered {status_name(status)}"
                peer_id = str(resp.params.get("message_id", ""))
                result = _Answer(status, peer_id, reason, status in TEMPORARY)
            answer.set_result(result)
        self.client._wake()
        self._set_quiet()

    # -- the client's calls ------------------------------------------------------------------
    def submit(
        self, params: dict[str, Any], tlvs: list[tuple[int, bytes]], answer: asyncio.Future[Any]
    ) -> None:
        self.esme.submit(params, tlvs, utcnow(), context=answer)
        self._flush_later()

    def respond(self, pdu: Pdu, status: int) -> None:
        if self.esme.state is State.CLOSED:  # the peer will deliver it again
            log.info("connection %s: %s not answered, link gone", self.client.settings.name, pdu)
            return
        self._handle(self.esme.respond(pdu, status))
        self._set_quiet()
        self._flush_later()

    async def quiet(self) -> None:
        """Return once nothing is in flight either way (our submits, the peer's requests)."""
        while self.esme.state in BOUND and (self.esme.in_flight or self.esme.unanswered):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._quiet.append(waiter)
            await waiter

    def _set_quiet(self) -> None:
        waiters, self._quiet = self._quiet, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def unbind(self) -> None:
        self.esme.unbind(utcnow())
        self._flush()
        self._arm()

    def abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    # -- bytes and time ------------------------------------------------------------------
    def _flush(self) -> None:
        data = self.esme.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _flush_later(self) -> None:
        """Several submits or answers in one loop iteration leave in one write."""
        if not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._deferred_flush)

    def _deferred_flush(self) -> None:
        self._flush_soon = False
        self._flush()
        self._arm()

    def _arm(self) -> None:
        deadline = self.esme.next_deadline()
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
        self._handle(self.esme.on_timer(utcnow()))
        self._flush()
        self._arm()
