# SMPP 3.4 session, SMSC side (sans-IO): bind states, sequences, windows, timers (§2.2-2.9, §4).
"""One carrier connection as a state machine: bytes and ``now`` in, events and bytes out.

The transition table ``TABLE`` maps (state, command id) to what happens; a pair missing from
it is answered on the wire (ESME_RINVBNDSTS for a known request in the wrong state,
generic_nack ESME_RINVCMDID for an unknown one) and counted, never ignored silently.
The adapter (``server.py``) feeds received bytes, hands events to the application, sends
``data_to_send()`` and arms one timer at ``next_deadline()``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from gateway.smpp.codec import (
    FrameError,
    Framer,
    Pdu,
    PduError,
    decode,
    encode,
    generic_nack,
    response,
)
from gateway.smpp.constants import CommandId, Status, Tag

MAX_SEQUENCE = 0x7FFFFFFF
# requests that have a response PDU of their own; others (outbind, alert_notification, unknown
# ids) are answered with generic_nack (found by fuzzing: an outbind from a carrier raised)
_ANSWERABLE = frozenset(
    c for c in CommandId if not c & 0x80000000 and (c | 0x80000000) in set(CommandId)
)
SMPP_VERSION = 0x34


class State(StrEnum):
    OPEN = "open"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"  # we sent unbind, waiting for unbind_resp
    UNBOUND = "unbound"
    CLOSED = "closed"


BIND_TYPE = {
    CommandId.BIND_TRANSMITTER: "tx",
    CommandId.BIND_RECEIVER: "rx",
    CommandId.BIND_TRANSCEIVER: "trx",
}
BOUND_STATE = {"tx": State.BOUND_TX, "rx": State.BOUND_RX, "trx": State.BOUND_TRX}

# -- the transition table ---------------------------------------------------------------
# What a received PDU does in each state. Actions:
#   bind          -> BindRequested event; the application accepts or rejects it
#   request       -> RequestReceived event; the application answers with respond()
#   enquire_link  -> answered here
#   unbind        -> unbind_resp, state UNBOUND, Closed event
#   already_bound -> the bind's resp with ESME_RALYBND
#   response      -> matched to our outstanding request: ResponseReceived
#   unbind_resp   -> state UNBOUND, Closed event
#   crossed_unbind -> a request sent before the peer saw our unbind: ESME_RINVBNDSTS, not
#                     counted as the peer's error
_ANY_RESPONSE = {
    CommandId.ENQUIRE_LINK_RESP: "response",
    CommandId.GENERIC_NACK: "response",
}
_BOUND_COMMON = {
    CommandId.ENQUIRE_LINK: "enquire_link",
    CommandId.UNBIND: "unbind",
    # bound, we have sent no unbind: an unbind_resp answers nothing of ours (counted); only
    # UNBINDING takes one as the end of the session
    CommandId.UNBIND_RESP: "response",
    CommandId.BIND_TRANSMITTER: "already_bound",
    CommandId.BIND_RECEIVER: "already_bound",
    CommandId.BIND_TRANSCEIVER: "already_bound",
    **_ANY_RESPONSE,
}
_TRANSMIT = {  # what a transmitter may ask of the SMSC
    CommandId.SUBMIT_SM: "request",
    CommandId.DATA_SM: "request",
    CommandId.QUERY_SM: "request",
    CommandId.CANCEL_SM: "request",
    CommandId.REPLACE_SM: "request",
    CommandId.SUBMIT_MULTI: "request",
}
_RECEIVE = {  # answers to what the SMSC sends a receiver
    CommandId.DELIVER_SM_RESP: "response",
    CommandId.DATA_SM_RESP: "response",
    CommandId.ALERT_NOTIFICATION: "request",  # never valid from an ESME; answered as a request
}
TABLE: dict[State, dict[int, str]] = {
    State.OPEN: {
        CommandId.BIND_TRANSMITTER: "bind",
        CommandId.BIND_RECEIVER: "bind",
        CommandId.BIND_TRANSCEIVER: "bind",
        CommandId.ENQUIRE_LINK: "enquire_link",
        CommandId.GENERIC_NACK: "response",
    },
    State.BOUND_TX: {**_BOUND_COMMON, **_TRANSMIT},
    State.BOUND_RX: {**_BOUND_COMMON, **_RECEIVE},
    State.BOUND_TRX: {**_BOUND_COMMON, **_TRANSMIT, **_RECEIVE},
    State.UNBINDING: {
        **{command: "crossed_unbind" for command in _TRANSMIT},
        CommandId.ENQUIRE_LINK: "enquire_link",
        CommandId.UNBIND_RESP: "unbind_resp",
        CommandId.UNBIND: "unbind",
        CommandId.DELIVER_SM_RESP: "response",
        CommandId.DATA_SM_RESP: "response",
        **_ANY_RESPONSE,
    },
    State.UNBOUND: {},
    State.CLOSED: {},
}
# alert_notification is SMSC->ESME only: arriving from a carrier it is in no table as a
# request it may make, so drop it from the receive set's requests.
for _state in (State.BOUND_RX, State.BOUND_TRX):
    TABLE[_state].pop(CommandId.ALERT_NOTIFICATION, None)

# What the SMSC side may send in each state.
MAY_SEND: dict[State, frozenset[int]] = {
    State.OPEN: frozenset(),
    State.BOUND_TX: frozenset({CommandId.ENQUIRE_LINK, CommandId.UNBIND}),
    State.BOUND_RX: frozenset(
        {CommandId.ENQUIRE_LINK, CommandId.UNBIND, CommandId.DELIVER_SM, CommandId.DATA_SM}
    ),
    State.BOUND_TRX: frozenset(
        {CommandId.ENQUIRE_LINK, CommandId.UNBIND, CommandId.DELIVER_SM, CommandId.DATA_SM}
    ),
    State.UNBINDING: frozenset(),
    State.UNBOUND: frozenset(),
    State.CLOSED: frozenset(),
}


# -- events out ------------------------------------------------------------------------
@dataclass(slots=True)
class BindRequested:
    pdu: Pdu
    bind_type: str  # tx | rx | trx


@dataclass(slots=True)
class RequestReceived:
    pdu: Pdu


@dataclass(slots=True)
class ResponseReceived:
    request: Pdu
    response: Pdu
    context: Any


@dataclass(slots=True)
class ResponseTimedOut:
    request: Pdu
    context: Any


@dataclass(slots=True)
class ProtocolError:
    """Something the peer sent was refused; counted by ``reason`` (answered already)."""

    reason: str
    status: int


@dataclass(slots=True)
class Closed:
    """The adapter must close the connection once ``data_to_send()`` is flushed."""

    reason: str


Event = (
    BindRequested | RequestReceived | ResponseReceived | ResponseTimedOut | ProtocolError | Closed
)


class SessionError(Exception):
    """A local call the session cannot honour in its state (a bug or a race in the caller)."""


class WindowFull(SessionError):
    """The peer has ``window`` of our requests unanswered; wait for a response."""


@dataclass(frozen=True)
class Limits:
    """Timers and bounds of one session (defaults suit carrier binds)."""

    bind_timeout: timedelta = timedelta(seconds=30)  # OPEN without a bind
    enquire_link_interval: timedelta = timedelta(seconds=30)  # idle time before we probe
    inactivity_timeout: timedelta = timedelta(seconds=120)  # nothing received: close
    response_timeout: timedelta = timedelta(seconds=30)  # our request unanswered
    window_in: int = 100  # carrier requests we have not answered yet
    window_out: int = 10  # our requests the carrier has not answered yet
    max_errors: int = 20  # protocol errors tolerated before closing
    max_pdu: int = 65536


@dataclass(slots=True)
class _Outstanding:
    request: Pdu
    deadline: datetime
    context: Any


@dataclass
class Session:
    """The SMSC side of one SMPP connection."""

    now: datetime
    limits: Limits = field(default_factory=Limits)
    state: State = State.OPEN
    system_id: str | None = None  # the carrier's, once bound
    errors: int = 0

    def __post_init__(self) -> None:
        self._framer = Framer(self.limits.max_pdu)
        self._out: deque[bytes] = deque()
        self._sequence = 0
        self._outstanding: dict[int, _Outstanding] = {}
        self._unanswered: dict[int, Pdu] = {}  # carrier requests awaiting our respond()
        self._bind_pending = False
        self._opened = self.now
        self._last_received = self.now
        self._last_sent = self.now
        self._probe_sequence: int | None = None
        self._unbind_request: Pdu | None = None

    # -- bytes in --------------------------------------------------------------------
    def receive_data(self, data: bytes, now: datetime) -> list[Event]:
        """Feed bytes from the socket; returns what the application must act on."""
        if self.state is State.CLOSED:
            return []
        events: list[Event] = []
        broken: FrameError | None = None
        try:
            frames = self._framer.feed(data)
        except FrameError as exc:  # whole PDUs before the bad header are still answered
            broken, frames = exc, exc.frames
        for frame in frames:
            self._last_received = now
            events.extend(self._receive_frame(frame, now))
            if self.state is State.CLOSED:
                return events
        if broken is not None:
            self._queue(generic_nack(0, broken.status))
            events += [ProtocolError(str(broken), broken.status), self._close("unframeable input")]
        return events

    def _receive_frame(self, frame: bytes, now: datetime) -> list[Event]:
        try:
            pdu = decode(frame)
        except PduError as exc:
            return self._refuse(exc.command_id, exc.sequence, exc.status, str(exc))
        action = TABLE[self.state].get(pdu.command_id)
        if action is None:
            if pdu.command_id & 0x80000000:
                return self._count(ProtocolError(f"unexpected {pdu.name} in {self.state}", 0))
            return self._refuse(
                pdu.command_id,
                pdu.sequence,
                Status.ESME_RINVBNDSTS,
                f"{pdu.name} not allowed in state {self.state}",
            )
        return getattr(self, f"_on_{action}")(pdu, now)

    def _refuse(self, command_id: int, sequence: int, status: int, reason: str) -> list[Event]:
        """Answer a bad request with its own resp (or generic_nack) and count it."""
        if command_id & 0x80000000:
            pass  # a response is never answered
        elif command_id in _ANSWERABLE:
            self._queue(response(Pdu(command_id, sequence), status))
        else:
            self._queue(generic_nack(sequence, status))
        return self._count(ProtocolError(reason, status))

    def _count(self, event: ProtocolError) -> list[Event]:
        self.errors += 1
        if self.errors > self.limits.max_errors:
            return [event, self._close("too many protocol errors")]
        return [event]

    # -- actions of the table ----------------------------------------------------------
    def _on_bind(self, pdu: Pdu, now: datetime) -> list[Event]:
        if self._bind_pending:
            self._queue(response(pdu, Status.ESME_RALYBND))
            return self._count(
                ProtocolError("second bind while one is pending", Status.ESME_RALYBND)
            )
        self._bind_pending = True
        return [BindRequested(pdu, BIND_TYPE[CommandId(pdu.command_id)])]

    def _on_already_bound(self, pdu: Pdu, now: datetime) -> list[Event]:
        self._queue(response(pdu, Status.ESME_RALYBND))
        return self._count(ProtocolError("bind on a bound session", Status.ESME_RALYBND))

    def _on_request(self, pdu: Pdu, now: datetime) -> list[Event]:
        if len(self._unanswered) >= self.limits.window_in:
            self._queue(response(pdu, Status.ESME_RTHROTTLED))
            return [ProtocolError("window full", Status.ESME_RTHROTTLED)]
        if pdu.sequence in self._unanswered:
            return self._refuse(
                pdu.command_id,
                pdu.sequence,
                Status.ESME_RSYSERR,
                f"sequence {pdu.sequence} reused while unanswered",
            )
        self._unanswered[pdu.sequence] = pdu
        return [RequestReceived(pdu)]

    def _on_crossed_unbind(self, pdu: Pdu, now: datetime) -> list[Event]:
        self._queue(response(pdu, Status.ESME_RINVBNDSTS))
        return []

    def _on_enquire_link(self, pdu: Pdu, now: datetime) -> list[Event]:
        self._queue(response(pdu))
        return []

    def _on_unbind(self, pdu: Pdu, now: datetime) -> list[Event]:
        """The peer ends the session: no new requests; the unbind_resp goes out only after
        every request it made was answered, so no accepted message loses its resp."""
        self.state = State.UNBOUND
        self._unbind_request = pdu
        return self._finish_unbind()

    def _finish_unbind(self) -> list[Event]:
        if self._unbind_request is None or self._unanswered:
            return []
        self._queue(response(self._unbind_request))
        self._unbind_request = None
        return [self._close("unbound by peer")]

    def _on_unbind_resp(self, pdu: Pdu, now: datetime) -> list[Event]:
        self._outstanding.pop(pdu.sequence, None)
        self.state = State.UNBOUND
        return [self._close("unbound")]

    def _on_response(self, pdu: Pdu, now: datetime) -> list[Event]:
        pending = self._outstanding.pop(pdu.sequence, None)
        if pending is None:
            return self._count(ProtocolError(f"{pdu.name} for no request of ours", 0))
        if pdu.sequence == self._probe_sequence:
            self._probe_sequence = None
            return []
        return [ResponseReceived(pending.request, pdu, pending.context)]

    # -- the application's answers --------------------------------------------------------
    def accept_bind(self, request: Pdu, our_system_id: str, now: datetime) -> None:
        """Bind succeeded: answer ESME_ROK with our system_id and enter the bound state."""
        self._finish_bind(request)
        self.state = BOUND_STATE[BIND_TYPE[CommandId(request.command_id)]]
        self.system_id = str(request.params.get("system_id", ""))
        answer = response(request, Status.ESME_ROK, system_id=our_system_id)
        answer.set_tlv(Tag.sc_interface_version, bytes([SMPP_VERSION]))
        self._queue(answer)

    def reject_bind(self, request: Pdu, status: int, our_system_id: str) -> None:
        """Bind refused (credentials, address, limits): answer with ``status``, stay OPEN."""
        self._finish_bind(request)
        self._queue(response(request, status, system_id=our_system_id))

    def _finish_bind(self, request: Pdu) -> None:
        if not self._bind_pending or self.state is not State.OPEN:
            raise SessionError("no bind is pending")
        self._bind_pending = False

    def respond(self, request: Pdu, status: int = Status.ESME_ROK, **params: Any) -> list[Event]:
        """Answer a RequestReceived (submit_sm_resp with the message id, or an error).

        Returns [Closed] when this was the last answer an unbinding peer waited for."""
        if self._unanswered.pop(request.sequence, None) is None:
            raise SessionError(f"no unanswered request with sequence {request.sequence}")
        if self.state is State.CLOSED:
            return []
        self._queue(response(request, status, **params))
        return self._finish_unbind()

    def can_send(self, command_id: int) -> bool:
        return (
            command_id in MAY_SEND[self.state] and len(self._outstanding) < self.limits.window_out
        )

    def send_request(
        self,
        command_id: int,
        params: dict[str, Any],
        now: datetime,
        tlvs: list[tuple[int, bytes]] | None = None,
        context: Any = None,
    ) -> int:
        """Send deliver_sm (a receipt or MO) and the like; returns the sequence number."""
        if command_id not in MAY_SEND[self.state]:
            raise SessionError(f"cannot send {CommandId(command_id).name} in state {self.state}")
        if len(self._outstanding) >= self.limits.window_out:
            raise WindowFull(f"{len(self._outstanding)} requests unanswered")
        pdu = Pdu(command_id, self._next_sequence(), 0, params, list(tlvs or []))
        self._outstanding[pdu.sequence] = _Outstanding(
            pdu, now + self.limits.response_timeout, context
        )
        self._queue(pdu, now)
        return pdu.sequence

    def unbind(self, now: datetime) -> None:
        """Begin a graceful end: send unbind, accept no more requests."""
        if self.state in (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX):
            pdu = Pdu(CommandId.UNBIND, self._next_sequence(), 0, {}, [])
            self._outstanding[pdu.sequence] = _Outstanding(
                pdu, now + self.limits.response_timeout, None
            )
            self._queue(pdu, now)
            self.state = State.UNBINDING

    # -- time ------------------------------------------------------------------------
    def next_deadline(self) -> datetime | None:
        if self.state is State.CLOSED:
            return None
        limits = self.limits
        deadlines = [self._last_received + limits.inactivity_timeout]
        if self.state is State.OPEN:
            deadlines.append(self._opened + limits.bind_timeout)
        elif self._probe_sequence is None and self.state is not State.UNBINDING:
            deadlines.append(
                max(self._last_received, self._last_sent) + limits.enquire_link_interval
            )
        deadlines.extend(o.deadline for o in self._outstanding.values())
        return min(deadlines)

    def on_timer(self, now: datetime) -> list[Event]:
        """Fire whatever is due at ``now``."""
        if self.state is State.CLOSED:
            return []
        limits = self.limits
        if now >= self._last_received + limits.inactivity_timeout:
            return [self._close("inactivity timeout")]
        if self.state is State.OPEN and now >= self._opened + limits.bind_timeout:
            return [self._close("no bind within the bind timeout")]
        events: list[Event] = []
        for sequence, pending in list(self._outstanding.items()):
            if now >= pending.deadline:
                del self._outstanding[sequence]
                if sequence == self._probe_sequence:
                    return [self._close("enquire_link unanswered")]
                if pending.request.command_id == CommandId.UNBIND:
                    return [self._close("unbind unanswered")]
                events.append(ResponseTimedOut(pending.request, pending.context))
        idle_since = max(self._last_received, self._last_sent)
        bound = self.state in (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX)
        if (
            bound
            and self._probe_sequence is None
            and now >= idle_since + limits.enquire_link_interval
        ):
            probe = Pdu(CommandId.ENQUIRE_LINK, self._next_sequence(), 0, {}, [])
            self._probe_sequence = probe.sequence
            self._outstanding[probe.sequence] = _Outstanding(
                probe, now + limits.response_timeout, None
            )
            self._queue(probe, now)
        return events

    # -- bytes out -------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        data = b"".join(self._out)
        self._out.clear()
        return data

    def close(self, reason: str = "closed locally") -> Closed:
        return self._close(reason)

    def abandon_requests(self) -> list[Any]:
        """The contexts of our requests still unanswered, forgotten (the link is gone)."""
        contexts = [o.context for o in self._outstanding.values() if o.context is not None]
        self._outstanding.clear()
        return contexts

    @property
    def unanswered(self) -> int:
        return len(self._unanswered)

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    def _queue(self, pdu: Pdu, now: datetime | None = None) -> None:
        self._out.append(encode(pdu))
        if now is not None:
            self._last_sent = now

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % MAX_SEQUENCE + 1
        return self._sequence

    def _close(self, reason: str) -> Closed:
        self.state = State.CLOSED
        return Closed(reason)
