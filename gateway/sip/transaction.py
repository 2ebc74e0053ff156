# SIP non-INVITE transactions, sans-IO (RFC 3261 §17.1.2, §17.2.2, matching §17.1.3, §17.2.3).
"""Non-INVITE client and server transactions as state machines: messages and ``now`` in,
actions out, one deadline exposed. No I/O, no clock (docs/architecture.md rules 1-3).

Each machine has ONE transition table, ``CLIENT_TABLE`` and ``SERVER_TABLE``, mapping
(state, event) to (next state, steps). A pair missing from a table raises ``NoTransition``
(a ``SipError`` 500); the pairs left out are exactly the timers that are never armed in that
state, so no input from the wire can reach one.

Decisions:

* Timers are deadlines (``datetime``); ``on_timer(now)`` fires every due timer, earliest
  first, so a late call never loses a timeout. A retransmission timer is re-armed from
  ``now`` (a late tick sends one copy, not a burst). Timers due at ``now`` also fire at the
  end of ``on_response``/``respond``, which is how K=0 and J=0 on reliable transports end
  the transaction at once.
* Client: a provisional response does not reset the pending timer E (§17.1.2.2 only says
  that E, *when it fires* in PROCEEDING, is reset to T2), so doubling stops and later copies
  go out every T2.
* A transport error ends the transaction with ``TransportFailed`` (the TU treats it as 503,
  §8.1.3.1 / §17.2.4); after the final outcome it is absorbed.
* Entering TERMINATED always emits ``Terminated`` once and cancels every timer.
* Only non-INVITE methods: INVITE and ACK are refused with ``ValueError`` (the dispatcher
  must route them elsewhere; ACK only appears in ``server_key`` mapped to INVITE).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Generic, TypeVar

from gateway.sip.message import Request, Response, SipError

MAGIC_COOKIE = "z9hG4bK"
DEFAULT_MAX_TRANSACTIONS = 10_000


@dataclass(frozen=True)
class Timers:
    """RFC 3261 §17 timer base values (Table 4); tests and config may change them."""

    t1: timedelta = timedelta(seconds=0.5)
    """RTT estimate: first retransmission interval (timer E starts here)."""
    t2: timedelta = timedelta(seconds=4)
    """Cap on the non-INVITE retransmission interval."""
    t4: timedelta = timedelta(seconds=5)
    """How long a message may stay in the network: timer K on unreliable transports."""

    @property
    def f(self) -> timedelta:
        """Timer F: the client gives up after 64*T1."""
        return 64 * self.t1

    def k(self, reliable: bool) -> timedelta:
        """Timer K: client COMPLETED absorbs response retransmissions (T4 on UDP, 0 else)."""
        return timedelta(0) if reliable else self.t4

    def j(self, reliable: bool) -> timedelta:
        """Timer J: server COMPLETED absorbs request retransmissions (64*T1 on UDP, 0 else)."""
        return timedelta(0) if reliable else 64 * self.t1


DEFAULT_TIMERS = Timers()


class NoTransition(SipError):
    """A (state, event) pair missing from a transition table: a bug, answered as 500."""

    def __init__(self, machine: str, state: State, event: str) -> None:
        self.machine = machine
        self.state = state
        self.event = event
        super().__init__(500, "Server Internal Error")
        self.args = (f"{machine} transaction: no transition for {event} in state {state}",)


class TableFull(SipError):
    """The transaction table is at its bound: the new request is answered 503."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(503, "Service Unavailable")


class State(StrEnum):
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    TERMINATED = "terminated"


class ClientEvent(StrEnum):
    PROVISIONAL = "provisional"  # 1xx received
    FINAL = "final"  # 2xx-6xx received
    TIMER_E = "timer_e"
    TIMER_F = "timer_f"
    TIMER_K = "timer_k"
    TRANSPORT_ERROR = "transport_error"


class ServerEvent(StrEnum):
    REQUEST = "request"  # a retransmission of the request
    PROVISIONAL = "provisional"  # the TU sends a 1xx
    FINAL = "final"  # the TU sends a 2xx-6xx
    TIMER_J = "timer_j"
    TRANSPORT_ERROR = "transport_error"


class Step(StrEnum):
    """What a transition does, besides changing state."""

    DELIVER = "deliver"  # client: pass the response to the TU
    RETRANSMIT = "retransmit"  # client: send the request again
    BACKOFF_E = "backoff_e"  # client: E = min(2 * E, T2)
    E_AT_T2 = "e_at_t2"  # client: E = T2
    STOP_RETRANSMIT = "stop_retransmit"  # client: cancel E and F
    ARM_K = "arm_k"
    TIMEOUT = "timeout"  # client: timer F fired, the TU reports 408
    REPORT_TRANSPORT_ERROR = "report_transport_error"
    SEND_RESPONSE = "send_response"  # server: send the TU's response and remember it
    RESEND_LAST = "resend_last"  # server: send the last response again
    ARM_J = "arm_j"


Transition = tuple[State, tuple[Step, ...]]
S, CE, SE, D = State, ClientEvent, ServerEvent, Step
_FINAL_STEPS = (D.DELIVER, D.STOP_RETRANSMIT, D.ARM_K)

# -- the transition tables ------------------------------------------------------------------
CLIENT_TABLE: dict[tuple[State, ClientEvent], Transition] = {
    (S.TRYING, CE.PROVISIONAL): (S.PROCEEDING, (D.DELIVER,)),
    (S.TRYING, CE.FINAL): (S.COMPLETED, _FINAL_STEPS),
    (S.TRYING, CE.TIMER_E): (S.TRYING, (D.RETRANSMIT, D.BACKOFF_E)),
    (S.TRYING, CE.TIMER_F): (S.TERMINATED, (D.TIMEOUT,)),
    (S.TRYING, CE.TRANSPORT_ERROR): (S.TERMINATED, (D.REPORT_TRANSPORT_ERROR,)),
    (S.PROCEEDING, CE.PROVISIONAL): (S.PROCEEDING, (D.DELIVER,)),
    (S.PROCEEDING, CE.FINAL): (S.COMPLETED, _FINAL_STEPS),
    (S.PROCEEDING, CE.TIMER_E): (S.PROCEEDING, (D.RETRANSMIT, D.E_AT_T2)),
    (S.PROCEEDING, CE.TIMER_F): (S.TERMINATED, (D.TIMEOUT,)),
    (S.PROCEEDING, CE.TRANSPORT_ERROR): (S.TERMINATED, (D.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, CE.PROVISIONAL): (S.COMPLETED, ()),  # late 1xx: absorbed
    (S.COMPLETED, CE.FINAL): (S.COMPLETED, ()),  # retransmitted final: absorbed
    (S.COMPLETED, CE.TIMER_K): (S.TERMINATED, ()),
    (S.COMPLETED, CE.TRANSPORT_ERROR): (S.COMPLETED, ()),  # outcome already delivered
    (S.TERMINATED, CE.PROVISIONAL): (S.TERMINATED, ()),
    (S.TERMINATED, CE.FINAL): (S.TERMINATED, ()),
    (S.TERMINATED, CE.TRANSPORT_ERROR): (S.TERMINATED, ()),
}
# Left out on purpose: E and F outside TRYING/PROCEEDING, K outside COMPLETED (never armed).

SERVER_TABLE: dict[tuple[State, ServerEvent], Transition] = {
    (S.TRYING, SE.REQUEST): (S.TRYING, ()),  # nothing sent yet: absorbed
    (S.TRYING, SE.PROVISIONAL): (S.PROCEEDING, (D.SEND_RESPONSE,)),
    (S.TRYING, SE.FINAL): (S.COMPLETED, (D.SEND_RESPONSE, D.ARM_J)),
    (S.TRYING, SE.TRANSPORT_ERROR): (S.TERMINATED, (D.REPORT_TRANSPORT_ERROR,)),
    (S.PROCEEDING, SE.REQUEST): (S.PROCEEDING, (D.RESEND_LAST,)),
    (S.PROCEEDING, SE.PROVISIONAL): (S.PROCEEDING, (D.SEND_RESPONSE,)),
    (S.PROCEEDING, SE.FINAL): (S.COMPLETED, (D.SEND_RESPONSE, D.ARM_J)),
    (S.PROCEEDING, SE.TRANSPORT_ERROR): (S.TERMINATED, (D.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, SE.REQUEST): (S.COMPLETED, (D.RESEND_LAST,)),
    (S.COMPLETED, SE.PROVISIONAL): (S.COMPLETED, ()),  # §17.2.2: discarded
    (S.COMPLETED, SE.FINAL): (S.COMPLETED, ()),  # §17.2.2: discarded
    (S.COMPLETED, SE.TIMER_J): (S.TERMINATED, ()),
    (S.COMPLETED, SE.TRANSPORT_ERROR): (S.TERMINATED, (D.REPORT_TRANSPORT_ERROR,)),
    (S.TERMINATED, SE.REQUEST): (S.TERMINATED, ()),
    (S.TERMINATED, SE.PROVISIONAL): (S.TERMINATED, ()),
    (S.TERMINATED, SE.FINAL): (S.TERMINATED, ()),
    (S.TERMINATED, SE.TRANSPORT_ERROR): (S.TERMINATED, ()),
}
# Left out on purpose: J outside COMPLETED (never armed).


# -- actions out ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    """Bytes for the transport (a request, its retransmission, or a response)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Deliver:
    """A response for the transaction user (provisional or the one final)."""

    response: Response


@dataclass(frozen=True, slots=True)
class Timeout:
    """Timer F fired: the TU reports 408 Request Timeout (§8.1.3.1)."""


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport could not send: the TU treats it as 503 (§8.1.3.1, §17.2.4)."""


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction is over; remove it from the table."""


Action = Send | Deliver | Timeout | TransportFailed | Terminated


# -- matching -------------------------------------------------------------------------------
def client_key(response: Response) -> tuple[str, ...]:
    """Top Via branch + CSeq method (§17.1.3); also the key of the request that sent it."""
    vias = response.vias()
    if not vias:
        raise SipError(400, "Missing Via")
    return ("client", vias[0].branch or "", response.cseq().method)


def server_key(request: Request) -> tuple[str | int | None, ...]:
    """§17.2.3: branch + sent-by + method (ACK -> INVITE) when the branch has the magic
    cookie; else the RFC 2543 key (Request-URI, To tag, From tag, Call-ID, CSeq, top Via)."""
    vias = request.vias()
    if not vias:
        raise SipError(400, "Missing Via")
    top = vias[0]
    method = "INVITE" if request.method == "ACK" else request.method
    branch = top.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return ("3261", branch, top.host.lower(), top.port, method)
    cseq = request.cseq()
    return (
        "2543",
        str(request.uri),
        request.to_header().tag,
        request.from_header().tag,
        request.call_id(),
        cseq.number,
        method,
        str(top),
    )


def _check_method(method: str) -> None:
    if method in ("INVITE", "ACK"):
        raise ValueError(f"{method} is not handled by a non-INVITE transaction")


# -- the machines ---------------------------------------------------------------------------
E = TypeVar("E", ClientEvent, ServerEvent)


class _Machine(Generic[E]):
    """Shared plumbing: state, armed timers as deadlines, dispatch through a table."""

    _name: str
    _table: dict[tuple[State, E], Transition]

    def __init__(self, reliable: bool, now: datetime, timers: Timers) -> None:
        self.reliable = reliable
        self.timers = timers
        self.state = State.TRYING
        self._deadlines: dict[E, datetime] = {}
        self._created = now

    def next_deadline(self) -> datetime | None:
        """When ``on_timer`` must next be called; None when no timer is armed."""
        return min(self._deadlines.values(), default=None)

    def on_timer(self, now: datetime) -> list[Action]:
        """Fire every timer due at ``now``, earliest first."""
        actions: list[Action] = []
        while self._deadlines:
            event, deadline = min(self._deadlines.items(), key=lambda item: item[1])
            if deadline > now:
                break
            del self._deadlines[event]
            actions += self._dispatch(event, now)
        return actions

    def _dispatch(self, event: E, now: datetime) -> list[Action]:
        try:
            next_state, steps = self._table[(self.state, event)]
        except KeyError:
            raise NoTransition(self._name, self.state, event) from None
        actions: list[Action] = []
        for step in steps:
            self._do(step, now, actions)
        if next_state is State.TERMINATED and self.state is not State.TERMINATED:
            self._deadlines.clear()
            actions.append(Terminated())
        self.state = next_state
        return actions

    def _do(self, step: Step, now: datetime, actions: list[Action]) -> None:
        raise NotImplementedError


class ClientTransaction(_Machine[ClientEvent]):
    """A non-INVITE client transaction (§17.1.2): send ``start()``'s bytes, then feed
    matched responses, timer ticks and transport errors."""

    _name = "client"
    _table = CLIENT_TABLE

    def __init__(
        self,
        request: Request,
        reliable: bool,
        now: datetime,
        timers: Timers = DEFAULT_TIMERS,
        *,
        branch: str | None = None,
    ) -> None:
        """``branch``: the top Via branch when the caller built the request itself and knows
        it (its CSeq method is then the request's method), which saves parsing them back."""
        _check_method(request.method)
        super().__init__(reliable, now, timers)
        self.request = request
        if branch is None:
            self.key = ("client", request.vias()[0].branch or "", request.cseq().method)
        else:
            self.key = ("client", branch, request.method)
        if not self.key[1].startswith(MAGIC_COOKIE):
            raise ValueError("a client transaction needs a z9hG4bK branch (§8.1.1.7)")
        self._data = request.to_bytes()
        self._interval = timers.t1
        self._started = False
        self._response: Response | None = None

    def start(self) -> list[Action]:
        """Send the request; arms E (unreliable only) and F from the creation time."""
        if self._started:
            raise RuntimeError("client transaction already started")
        self._started = True
        if not self.reliable:
            self._deadlines[ClientEvent.TIMER_E] = self._created + self._interval
        self._deadlines[ClientEvent.TIMER_F] = self._created + self.timers.f
        return [Send(self._data)]

    def on_response(self, response: Response, now: datetime) -> list[Action]:
        """A response matched to this transaction by ``client_key``."""
        if not 100 <= response.status <= 699:
            raise ValueError(f"status {response.status} is not a SIP status code")
        event = ClientEvent.PROVISIONAL if response.status < 200 else ClientEvent.FINAL
        self._response = response
        return self._dispatch(event, now) + self.on_timer(now)

    def on_transport_error(self, now: datetime) -> list[Action]:
        """The transport failed to send the request."""
        return self._dispatch(ClientEvent.TRANSPORT_ERROR, now)

    def _do(self, step: Step, now: datetime, actions: list[Action]) -> None:
        match step:
            case Step.DELIVER if self._response is not None:
                actions.append(Deliver(self._response))
            case Step.RETRANSMIT:
                actions.append(Send(self._data))
            case Step.BACKOFF_E:
                self._interval = min(2 * self._interval, self.timers.t2)
                self._deadlines[ClientEvent.TIMER_E] = now + self._interval
            case Step.E_AT_T2:
                self._interval = self.timers.t2
                self._deadlines[ClientEvent.TIMER_E] = now + self._interval
            case Step.STOP_RETRANSMIT:
                self._deadlines.pop(ClientEvent.TIMER_E, None)
                self._deadlines.pop(ClientEvent.TIMER_F, None)
                self._data = b""  # never sent again: do not hold it through timer K
            case Step.ARM_K:
                self._deadlines[ClientEvent.TIMER_K] = now + self.timers.k(self.reliable)
            case Step.TIMEOUT:
                actions.append(Timeout())
            case Step.REPORT_TRANSPORT_ERROR:
                actions.append(TransportFailed())
            case _:
                raise ValueError(f"step {step} is not one of a {self._name} transaction")


class ServerTransaction(_Machine[ServerEvent]):
    """A non-INVITE server transaction (§17.2.2), created from the request that opened it."""

    _name = "server"
    _table = SERVER_TABLE

    def __init__(
        self, request: Request, reliable: bool, now: datetime, timers: Timers = DEFAULT_TIMERS
    ) -> None:
        _check_method(request.method)
        super().__init__(reliable, now, timers)
        self.request = request
        self.key = server_key(request)
        self._pending: bytes = b""
        self.last_response: bytes | None = None

    def on_request(self, retransmission: Request, now: datetime) -> list[Action]:
        """A retransmission matched by ``server_key``: absorbed, the last response resent."""
        return self._dispatch(ServerEvent.REQUEST, now)

    def respond(self, response: Response, now: datetime) -> list[Action]:
        """The TU's provisional or final response; after the final, further ones are dropped."""
        if not 100 <= response.status <= 699:
            raise ValueError(f"status {response.status} is not a SIP status code")
        event = ServerEvent.PROVISIONAL if response.status < 200 else ServerEvent.FINAL
        self._pending = response.to_bytes()
        return self._dispatch(event, now) + self.on_timer(now)

    def on_transport_error(self, now: datetime) -> list[Action]:
        """The transport failed to send a response."""
        return self._dispatch(ServerEvent.TRANSPORT_ERROR, now)

    def _do(self, step: Step, now: datetime, actions: list[Action]) -> None:
        match step:
            case Step.SEND_RESPONSE:
                self.last_response = self._pending
                actions.append(Send(self._pending))
            case Step.RESEND_LAST:
                if self.last_response is not None:
                    actions.append(Send(self.last_response))
            case Step.ARM_J:
                self._deadlines[ServerEvent.TIMER_J] = now + self.timers.j(self.reliable)
            case Step.REPORT_TRANSPORT_ERROR:
                actions.append(TransportFailed())
            case _:
                raise ValueError(f"step {step} is not one of a {self._name} transaction")


Transaction = ClientTransaction | ServerTransaction


# -- the table of live transactions ---------------------------------------------------------
class TransactionTable:
    """Live transactions by key, bounded; one heap of deadlines over all of them.

    Drive transactions through the table's methods (or call ``settle`` with the actions) so
    a transaction leaves on ``Terminated`` and its new deadline enters the heap.
    """

    def __init__(self, limit: int = DEFAULT_MAX_TRANSACTIONS) -> None:
        self.limit = limit
        self._live: dict[tuple[object, ...], Transaction] = {}
        self._heap: list[tuple[datetime, int, Transaction]] = []
        self._queued: dict[tuple[object, ...], datetime] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def add(self, transaction: Transaction) -> None:
        """Admit a new transaction; ``TableFull`` (503) at the bound, ValueError if the key
        is already live."""
        if len(self._live) >= self.limit:
            raise TableFull(self.limit)
        if transaction.key in self._live:
            raise ValueError(f"transaction {transaction.key!r} already exists")
        self._live[transaction.key] = transaction
        self._schedule(transaction)

    def start(self, transaction: ClientTransaction) -> list[Action]:
        """Admit a client transaction and return its first send."""
        self.add(transaction)
        return self.settle(transaction, transaction.start())

    def get(self, key: tuple[object, ...]) -> Transaction | None:
        return self._live.get(key)

    def match_response(self, response: Response) -> ClientTransaction | None:
        found = self._live.get(client_key(response))
        return found if isinstance(found, ClientTransaction) else None

    def match_request(self, request: Request) -> ServerTransaction | None:
        found = self._live.get(server_key(request))
        return found if isinstance(found, ServerTransaction) else None

    def on_response(self, response: Response, now: datetime) -> list[Action] | None:
        """Feed a response to its client transaction; None when none matches (§18.1.2:
        the caller discards it)."""
        transaction = self.match_response(response)
        if transaction is None:
            return None
        return self.settle(transaction, transaction.on_response(response, now))

    def on_request(self, request: Request, now: datetime) -> list[Action] | None:
        """Feed a retransmitted request to its server transaction; None when the request is
        new (the caller creates a ``ServerTransaction`` and ``add``s it)."""
        transaction = self.match_request(request)
        if transaction is None:
            return None
        return self.settle(transaction, transaction.on_request(request, now))

    def respond(
        self, transaction: ServerTransaction, response: Response, now: datetime
    ) -> list[Action]:
        return self.settle(transaction, transaction.respond(response, now))

    def on_transport_error(self, transaction: Transaction, now: datetime) -> list[Action]:
        return self.settle(transaction, transaction.on_transport_error(now))

    def settle(self, transaction: Transaction, actions: list[Action]) -> list[Action]:
        """Account for what a transaction just did: drop it when terminated, else queue its
        new deadline. Returns ``actions`` unchanged."""
        key = transaction.key
        if self._live.get(key) is not transaction:
            return actions
        if transaction.state is State.TERMINATED:
            del self._live[key]
            self._queued.pop(key, None)
        else:
            self._schedule(transaction)
        return actions

    def next_deadline(self) -> datetime | None:
        """The earliest deadline over all live transactions."""
        while self._heap:
            deadline, _, transaction = self._heap[0]
            if self._current(transaction, deadline):
                return deadline
            heapq.heappop(self._heap)
            self._requeue(transaction)
        return None

    def expire(self, now: datetime) -> list[tuple[Transaction, list[Action]]]:
        """Fire every due timer; returns what each transaction did (terminated ones are
        already removed)."""
        fired: list[tuple[Transaction, list[Action]]] = []
        while self._heap and self._heap[0][0] <= now:
            deadline, _, transaction = heapq.heappop(self._heap)
            if not self._current(transaction, deadline):
                self._requeue(transaction)
                continue
            del self._queued[transaction.key]
            actions = self.settle(transaction, transaction.on_timer(now))
            if actions:
                fired.append((transaction, actions))
        return fired

    def _current(self, transaction: Transaction, deadline: datetime) -> bool:
        key = transaction.key
        return (
            self._live.get(key) is transaction
            and self._queued.get(key) == deadline
            and transaction.next_deadline() == deadline
        )

    def _requeue(self, transaction: Transaction) -> None:
        # A stale entry popped: if its transaction lives on, make sure its deadline is queued.
        if self._live.get(transaction.key) is transaction:
            self._schedule(transaction)

    def _schedule(self, transaction: Transaction) -> None:
        key = transaction.key
        deadline = transaction.next_deadline()
        if deadline is None:
            self._queued.pop(key, None)
            return
        if self._queued.get(key) == deadline:
            return
        self._queued[key] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), transaction))
        if len(self._heap) > 2 * len(self._live) + 64:  # bound the stale entries
            self._heap = [entry for entry in self._heap if self._current(entry[2], entry[0])]
            heapq.heapify(self._heap)
