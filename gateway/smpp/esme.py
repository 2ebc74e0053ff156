# SMPP 3.4 session, ESME side (sans-IO): bind, submit window, enquire_link, unbind (§2.2-2.9, §4).
"""Our outbound connection to a peer SMSC as a state machine: bytes and ``now`` in, events and
bytes out.

The transition table ``TABLE`` maps (state, command id) to what a received PDU does; a pair
missing from it is answered on the wire (the request's resp with ESME_RINVBNDSTS, generic_nack
ESME_RINVCMDID for an unknown command) or, for an unexpected response, counted; never ignored
silently. The adapter (``client.py``) calls ``bind`` once connected, feeds received bytes,
hands events to the application, sends ``data_to_send()`` and arms one timer at
``next_deadline()``. Also here, pure as well: the reconnect ``Backoff``, the submit_sm parts
of an ``Outgoing`` message and the reading of a peer's delivery receipt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from gateway.smpp.codec import (
    FrameError,
    Framer,
    Pdu,
    PduError,
    SmppError,
    decode,
    encode,
    generic_nack,
    response,
)
from gateway.smpp.constants import CommandId, Status, Tag, resp_of
from gateway.smpp.receipt import MESSAGE_STATE, Receipt, ReceiptError, parse_receipt
from gateway.smpp.text import choose_coding, split

MAX_SEQUENCE = 0x7FFFFFFF
SMPP_VERSION = 0x34
C = CommandId


class State(StrEnum):
    OPEN = "open"  # connected, bind not sent yet
    BINDING = "binding"  # bind sent, waiting for its resp
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"  # we sent unbind, waiting for unbind_resp
    UNBOUND = "unbound"  # the peer sent unbind: our last answers go out, then unbind_resp
    CLOSED = "closed"


BIND_COMMAND = {"tx": C.BIND_TRANSMITTER, "rx": C.BIND_RECEIVER, "trx": C.BIND_TRANSCEIVER}
BOUND_STATE = {"tx": State.BOUND_TX, "rx": State.BOUND_RX, "trx": State.BOUND_TRX}
BOUND = frozenset(BOUND_STATE.values())
SUBMITTING = frozenset({State.BOUND_TX, State.BOUND_TRX})

# -- the transition table ---------------------------------------------------------------
# What a received PDU does in each state. Actions:
#   bind_resp      -> our bind's answer (generic_nack too): Bound, or BindRefused + Closed
#   response       -> matched to our outstanding request: ResponseReceived (probe: silent)
#   request        -> RequestReceived (deliver_sm/data_sm); the application answers respond()
#   enquire_link   -> answered here
#   unbind         -> state UNBOUND; unbind_resp once our answers are out, then Closed
#   unbind_resp    -> Closed
#   crossed_unbind -> deliver_sm sent before the peer saw our unbind: ESME_RTHROTTLED (the
#                     peer retries it later, on the next bind), not counted as its error
#   ignore         -> alert_notification: no resp exists, nothing to do
_RESPONSES = {C.ENQUIRE_LINK_RESP: "response", C.GENERIC_NACK: "response"}
_BOUND_COMMON = {C.ENQUIRE_LINK: "enquire_link", C.UNBIND: "unbind", **_RESPONSES}
_TRANSMIT = {C.SUBMIT_SM_RESP: "response"}  # answers to what a transmitter sends
_RECEIVE = {  # what the SMSC sends a receiver
    C.DELIVER_SM: "request",
    C.DATA_SM: "request",
    C.ALERT_NOTIFICATION: "ignore",
}
TABLE: dict[State, dict[int, str]] = {
    State.OPEN: {},
    State.BINDING: {
        C.BIND_TRANSMITTER_RESP: "bind_resp",
        C.BIND_RECEIVER_RESP: "bind_resp",
        C.BIND_TRANSCEIVER_RESP: "bind_resp",
        C.GENERIC_NACK: "bind_resp",
        C.ENQUIRE_LINK: "enquire_link",
    },
    State.BOUND_TX: {**_BOUND_COMMON, **_TRANSMIT},
    State.BOUND_RX: {**_BOUND_COMMON, **_RECEIVE},
    State.BOUND_TRX: {**_BOUND_COMMON, **_TRANSMIT, **_RECEIVE},
    State.UNBINDING: {
        **_RESPONSES,
        **_TRANSMIT,
        C.UNBIND_RESP: "unbind_resp",
        C.UNBIND: "unbind",  # both sides unbound at once
        C.ENQUIRE_LINK: "enquire_link",
        C.DELIVER_SM: "crossed_unbind",
        C.DATA_SM: "crossed_unbind",
        C.ALERT_NOTIFICATION: "ignore",
    },
    State.UNBOUND: {**_RESPONSES, **_TRANSMIT, C.ENQUIRE_LINK: "enquire_link"},
    State.CLOSED: {},
}


# -- events out ------------------------------------------------------------------------
@dataclass(slots=True)
class Bound:
    system_id: str  # the peer's, from the bind_resp


@dataclass(slots=True)
class BindRefused:
    status: int
    reason: str


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
    Bound
    | BindRefused
    | RequestReceived
    | ResponseReceived
    | ResponseTimedOut
    | ProtocolError
    | Closed
)


class SessionError(Exception):
    """A local call the session cannot honour in its state (a bug or a race in the caller)."""


class WindowFull(SessionError):
    """``window`` of our submit_sm are unanswered; wait for a response."""


@dataclass(frozen=True)
class Limits:
    """Timers and bounds of one outbound session."""

    enquire_link_interval: timedelta = timedelta(seconds=30)  # idle time before we probe
    response_timeout: timedelta = timedelta(seconds=30)  # our request unanswered (bind too)
    window: int = 10  # our submit_sm the peer has not answered yet
    window_in: int = 100  # the peer's deliver_sm we have not answered yet
    max_errors: int = 20  # protocol errors tolerated before closing
    max_pdu: int = 65536


@dataclass(slots=True)
class _Outstanding:
    request: Pdu
    deadline: datetime
    context: Any


@dataclass
class Esme:
    """The ESME side of one SMPP connection to a peer."""

    now: datetime
    limits: Limits = field(default_factory=Limits)
    state: State = State.OPEN
    peer_system_id: str | None = None  # once bound
    errors: int = 0

    def __post_init__(self) -> None:
        self._framer = Framer(self.limits.max_pdu)
        self._out: deque[bytes] = deque()
        self._sequence = 0
        self._outstanding: dict[int, _Outstanding] = {}
        self._unanswered: dict[int, Pdu] = {}  # peer requests awaiting our respond()
        self._bind_type = "trx"
        self._bind_sequence: int | None = None
        self._probe_sequence: int | None = None
        self._unbind_sequence: int | None = None
        self._unbind_request: Pdu | None = None
        self._unbind_deadline: datetime | None = None
        self._opened = self.now
        self._last_received = self.now
        self._last_sent = self.now
        self.in_flight = 0  # our submit_sm unanswered

    # -- local calls ---------------------------------------------------------------------
    def bind(
        self, bind_type: str, system_id: str, password: str, system_type: str, now: datetime
    ) -> None:
        """Send the bind; PduError (ESME_RINVSYSID/RINVPASWD...) if a field does not fit."""
        if self.state is not State.OPEN:
            raise SessionError(f"cannot bind in state {self.state}")
        params = {
            "system_id": system_id,
            "password": password,
            "system_type": system_type,
            "interface_version": SMPP_VERSION,
            "addr_ton": 0,
            "addr_npi": 0,
            "address_range": "",
        }
        pdu = Pdu(BIND_COMMAND[bind_type], self._next_sequence(), 0, params)
        self._send(pdu, now, None)
        self._bind_type, self._bind_sequence = bind_type, pdu.sequence
        self.state = State.BINDING

    def can_submit(self) -> bool:
        return self.state in SUBMITTING and self.in_flight < self.limits.window

    def submit(
        self,
        params: dict[str, Any],
        tlvs: list[tuple[int, bytes]],
        now: datetime,
        context: Any = None,
    ) -> int:
        """Send one submit_sm; returns its sequence. Its answer (or timeout) carries
        ``context``. WindowFull/SessionError when it may not be sent, PduError when a field
        does not fit (nothing is sent then)."""
        if self.state not in SUBMITTING:
            raise SessionError(f"cannot submit in state {self.state}")
        if self.in_flight >= self.limits.window:
            raise WindowFull(f"{self.in_flight} submit_sm unanswered")
        pdu = Pdu(C.SUBMIT_SM, self._next_sequence(), 0, params, list(tlvs))
        self._send(pdu, now, context)
        self.in_flight += 1
        return pdu.sequence

    def respond(self, request: Pdu, status: int = Status.ESME_ROK, **params: Any) -> list[Event]:
        """Answer a RequestReceived (deliver_sm_resp). Returns [Closed] when this was the last
        answer an unbinding peer waited for."""
        if self._unanswered.pop(request.sequence, None) is None:
            raise SessionError(f"no unanswered request with sequence {request.sequence}")
        if self.state is State.CLOSED:
            return []
        self._queue(response(request, status, **params))
        return self._finish_unbind()

    def unbind(self, now: datetime) -> None:
        """Begin a polite end: send unbind; no more submits."""
        if self.state in BOUND:
            pdu = Pdu(C.UNBIND, self._next_sequence(), 0, {}, [])
            self._send(pdu, now, None)
            self._unbind_sequence = pdu.sequence
            self.state = State.UNBINDING

    def close(self, reason: str = "closed locally") -> Closed:
        return self._close(reason)

    def abandon_requests(self) -> list[Any]:
        """The contexts of our requests still unanswered, forgotten (the link is gone)."""
        contexts = [o.context for o in self._outstanding.values() if o.context is not None]
        self._outstanding.clear()
        self.in_flight = 0
        return contexts

    @property
    def unanswered(self) -> int:
        return len(self._unanswered)

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    # -- bytes in --------------------------------------------------------------------
    def receive_data(self, data: bytes, now: datetime) -> list[Event]:
        """Feed bytes from the socket; returns what the application must act on."""
        if self.state is State.CLOSED:
            return []
        events: list[Event] = []
        broken: FrameError | None = None
        try:
            frames = self._framer.feed(data)
        except FrameError as exc:  # whole PDUs before the bad header are still handled
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
        if not command_id & 0x80000000:  # a response is never answered
            try:
                self._queue(response(Pdu(command_id, sequence), status))
            except ValueError:  # unknown, or a request without a resp (outbind)
                self._queue(generic_nack(sequence, status))
        return self._count(ProtocolError(reason, status))

    def _count(self, event: ProtocolError) -> list[Event]:
        self.errors += 1
        if self.errors > self.limits.max_errors:
            return [event, self._close("too many protocol errors")]
        return [event]

    # -- actions of the table ----------------------------------------------------------
    def _on_bind_resp(self, pdu: Pdu, now: datetime) -> list[Event]:
        pending = self._outstanding.get(pdu.sequence)
        if pending is None or pdu.sequence != self._bind_sequence:
            return self._count(ProtocolError(f"{pdu.name} for no bind of ours", 0))
        expected = resp_of(pending.request.command_id)
        if pdu.command_id not in (expected, C.GENERIC_NACK):
            return self._count(ProtocolError(f"{pdu.name} answers our {pending.request.name}", 0))
        del self._outstanding[pdu.sequence]
        self._bind_sequence = None
        if pdu.status == Status.ESME_ROK and pdu.command_id == expected:
            self.state = BOUND_STATE[self._bind_type]
            self.peer_system_id = str(pdu.params.get("system_id", ""))
            return [Bound(self.peer_system_id)]
        status = pdu.status or Status.ESME_RBINDFAIL
        reason = f"bind refused: {getattr(status, 'name', f'0x{status:08x}')}"
        return [BindRefused(status, reason), self._close(reason)]

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
        self._queue(response(pdu, Status.ESME_RTHROTTLED))
        return []

    def _on_ignore(self, pdu: Pdu, now: datetime) -> list[Event]:
        return []

    def _on_enquire_link(self, pdu: Pdu, now: datetime) -> list[Event]:
        self._queue(response(pdu))
        return []

    def _on_unbind(self, pdu: Pdu, now: datetime) -> list[Event]:
        """The peer ends the session: our answers to its deliver_sm go out first (an MO
        we store is acknowledged), then unbind_resp; bounded by the response timeout."""
        self.state = State.UNBOUND
        self._unbind_request = pdu
        self._unbind_deadline = now + self.limits.response_timeout
        return self._finish_unbind()

    def _finish_unbind(self) -> list[Event]:
        if self._unbind_request is None or self._unanswered:
            return []
        self._queue(response(self._unbind_request))
        self._unbind_request = None
        return [self._close("unbound by peer")]

    def _on_unbind_resp(self, pdu: Pdu, now: datetime) -> list[Event]:
        if pdu.sequence != self._unbind_sequence:
            return self._count(ProtocolError("unbind_resp for no unbind of ours", 0))
        self._outstanding.pop(pdu.sequence, None)
        return [self._close("unbound")]

    def _on_response(self, pdu: Pdu, now: datetime) -> list[Event]:
        pending = self._outstanding.get(pdu.sequence)
        if pending is None:
            return self._count(ProtocolError(f"{pdu.name} for no request of ours", 0))
        if pdu.command_id not in (resp_of(pending.request.command_id), C.GENERIC_NACK):
            return self._count(ProtocolError(f"{pdu.name} answers our {pending.request.name}", 0))
        del self._outstanding[pdu.sequence]
        if pdu.sequence == self._probe_sequence:
            self._probe_sequence = None
            return []
        if pdu.sequence == self._unbind_sequence:  # generic_nack to our unbind
            return [self._close("unbind refused")]
        self.in_flight -= 1
        return [ResponseReceived(pending.request, pdu, pending.context)]

    # -- time ------------------------------------------------------------------------
    def next_deadline(self) -> datetime | None:
        if self.state is State.CLOSED:
            return None
        deadlines = [o.deadline for o in self._outstanding.values()]
        if self.state is State.OPEN:
            deadlines.append(self._opened + self.limits.response_timeout)
        elif self.state in BOUND and self._probe_sequence is None:
            idle_since = max(self._last_received, self._last_sent)
            deadlines.append(idle_since + self.limits.enquire_link_interval)
        if self._unbind_deadline is not None and self.state is State.UNBOUND:
            deadlines.append(self._unbind_deadline)
        return min(deadlines, default=None)

    def on_timer(self, now: datetime) -> list[Event]:
        """Fire whatever is due at ``now``."""
        if self.state is State.CLOSED:
            return []
        limits = self.limits
        if self.state is State.OPEN and now >= self._opened + limits.response_timeout:
            return [self._close("no bind sent")]
        if self.state is State.UNBOUND and self._unbind_deadline and now >= self._unbind_deadline:
            return [self._close("unbound by peer; our answers were not ready in time")]
        events: list[Event] = []
        suspect = False  # a request went unanswered: is the peer still there?
        for sequence, pending in list(self._outstanding.items()):
            if now < pending.deadline:
                continue
            del self._outstanding[sequence]
            if sequence == self._probe_sequence:
                return [*events, self._close("enquire_link unanswered")]
            if sequence == self._bind_sequence:
                return [*events, self._close("bind unanswered")]
            if sequence == self._unbind_sequence:
                return [*events, self._close("unbind unanswered")]
            self.in_flight -= 1
            suspect = True
            events.append(ResponseTimedOut(pending.request, pending.context))
        idle_since = max(self._last_received, self._last_sent)
        if (
            self.state in BOUND
            and self._probe_sequence is None
            and (suspect or now >= idle_since + limits.enquire_link_interval)
        ):
            # probed when idle, and at once when a submit went unanswered: a peer that
            # stopped answering (hung, or a silent network) is let go within two response
            # timeouts, so its traffic fails over, instead of a bind kept busy forever by the
            # submits that keep timing out; a peer that lost one resp answers and stays bound
            probe = Pdu(C.ENQUIRE_LINK, self._next_sequence(), 0, {}, [])
            self._send(probe, now, None)
            self._probe_sequence = probe.sequence
        return events

    # -- bytes out -------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        data = b"".join(self._out)
        self._out.clear()
        return data

    def _send(self, pdu: Pdu, now: datetime, context: Any) -> None:
        data = encode(pdu)  # a field that does not fit raises before anything is recorded
        self._outstanding[pdu.sequence] = _Outstanding(
            pdu, now + self.limits.response_timeout, context
        )
        self._out.append(data)
        self._last_sent = now

    def _queue(self, pdu: Pdu) -> None:
        self._out.append(encode(pdu))

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % MAX_SEQUENCE + 1
        return self._sequence

    def _close(self, reason: str) -> Closed:
        self.state = State.CLOSED
        return Closed(reason)


# -- reconnecting ----------------------------------------------------------------------
class Backoff:
    """Delays between connection attempts: ``minimum``, doubling up to ``maximum``; back to
    ``minimum`` after a successful bind. A bind refused for its credentials waits ``maximum``
    (retrying faster cannot help and would look like password guessing)."""

    def __init__(self, minimum: float, maximum: float) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError(f"need 0 < minimum <= maximum, got {minimum} and {maximum}")
        self.minimum, self.maximum = minimum, maximum
        self._next = minimum

    def failed(self) -> float:
        """The delay after a failed attempt (unreachable, lost, refused for another reason)."""
        delay = self._next
        self._next = min(self.maximum, delay * 2)
        return delay

    def refused(self) -> float:
        """The delay after a bind refused for its credentials (CREDENTIALS)."""
        self._next = self.maximum
        return self.maximum

    def reset(self) -> None:
        self._next = self.minimum


# -- messages out: submit_sm parts -------------------------------------------------------
TEMPORARY = frozenset(
    {Status.ESME_RTHROTTLED, Status.ESME_RMSGQFUL, Status.ESME_RSYSERR, Status.ESME_RX_T_APPN}
)
"""submit_sm_resp statuses worth a retry later; every other error is permanent."""
CREDENTIALS = frozenset({Status.ESME_RINVPASWD, Status.ESME_RINVSYSID, Status.ESME_RBINDFAIL})
"""Bind refusals retried at the slow pace: credentials, and ESME_RBINDFAIL, which is how a
peer that hides why (this gateway among them) answers a wrong system_id or password."""
ESM_UDHI = 0x40
BINARY_CODING = 0x04


@dataclass(frozen=True)
class Outgoing:
    """A routed message to send on a connection (the pipeline's view of it)."""

    message_id: int  # ours
    source: str  # E.164 digits, a short code or an alphanumeric sender
    source_ton: int
    destination: str  # E.164 digits
    text: str | None
    body: bytes | None  # binary payload when ``text`` is None
    data_coding: int | None  # None: GSM 03.38 when it holds the text, else UCS-2
    registered_delivery: int
    priority: int
    tlvs: dict[int, bytes] = field(default_factory=dict)  # extra TLVs, on every part


def _npi(ton: int) -> int:
    return 1 if ton in (1, 2) else 0  # international/national numbers are E.164 (ISDN)


Part = tuple[dict[str, Any], list[tuple[int, bytes]]]
"""One submit_sm to send: its mandatory params and TLVs."""


def submit_parts(message: Outgoing, ref: int) -> list[Part]:
    """The (params, tlvs) of each submit_sm carrying ``message``; long text is split with an
    8-bit-ref concatenation UDH (``ref``). SmppError (with its status) when it cannot be sent."""
    if not 0 <= message.priority <= 3:
        raise SmppError(Status.ESME_RINVPRTFLG, f"priority {message.priority} is not 0-3")
    if message.text is not None:
        coding = choose_coding(message.text) if message.data_coding is None else message.data_coding
        parts = split(message.text, coding, ref=ref)
    elif message.body is not None:
        coding = BINARY_CODING if message.data_coding is None else message.data_coding
        parts = split(message.body, coding, ref=ref)
    else:
        raise SmppError(Status.ESME_RSUBMITFAIL, f"message {message.message_id} has no content")
    common = {
        "service_type": "",
        "source_addr_ton": message.source_ton,
        "source_addr_npi": _npi(message.source_ton),
        "source_addr": message.source,
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": message.destination,
        "esm_class": ESM_UDHI if len(parts) > 1 else 0,
        "protocol_id": 0,
        "priority_flag": message.priority,
        "schedule_delivery_time": "",
        "validity_period": "",
        "registered_delivery": message.registered_delivery & 0xFF,
        "replace_if_present_flag": 0,
        "data_coding": coding,
        "sm_default_msg_id": 0,
    }
    tlvs = list(message.tlvs.items())
    return [({**common, "short_message": part}, list(tlvs)) for part in parts]


# -- messages in: receipts ------------------------------------------------------------------
RECEIPT_TYPES = frozenset({0x04, 0x20})  # esm_class bits 2-5: SMSC receipt, intermediate notice
ACKNOWLEDGEMENT_TYPES = frozenset({0x08, 0x10})  # SME delivery / manual-user acknowledgement
_STATE_NAMES = {value: name for name, value in MESSAGE_STATE.items()}


def is_receipt(pdu: Pdu) -> bool:
    """A deliver_sm/data_sm carrying a delivery receipt (esm_class message type), not an MO."""
    return (int(pdu.params.get("esm_class", 0)) & 0x3C) in RECEIPT_TYPES


def is_acknowledgement(pdu: Pdu) -> bool:
    """An SME delivery or manual/user acknowledgement (esm_class 0x08, 0x10): neither a
    receipt nor an MO; answered and let go."""
    return (int(pdu.params.get("esm_class", 0)) & 0x3C) in ACKNOWLEDGEMENT_TYPES


def read_receipt(pdu: Pdu, now: datetime) -> Receipt:
    """The receipt a peer sent: its text (short_message or message_payload) read by
    ``parse_receipt``; the receipted_message_id and message_state TLVs, when present, win
    over the text, and suffice without one. ReceiptError (ESME_RX_P_APPN) when unreadable."""
    data = pdu.tlv(Tag.message_payload) or bytes(pdu.params.get("short_message", b""))
    codec = "utf-16-be" if pdu.params.get("data_coding") == 8 else "latin-1"
    text = data.decode(codec, errors="replace")
    tlv_id = pdu.tlv_str(Tag.receipted_message_id)
    tlv_state = pdu.tlv_int(Tag.message_state)
    stat = _STATE_NAMES.get(tlv_state) if tlv_state is not None else None
    if tlv_state is not None and stat is None:
        raise ReceiptError(f"message_state {tlv_state} is not a final or known state")
    try:
        receipt = parse_receipt(text, now)
    except ReceiptError:
        if not tlv_id or stat is None:
            raise
        error = pdu.tlv(Tag.network_error_code)
        err = int.from_bytes(error[1:], "big") if error and len(error) == 3 else 0
        try:
            return Receipt(tlv_id, 0, 0, now, now, stat, err, "")
        except ValueError as exc:
            raise ReceiptError(str(exc)) from None
    try:
        return replace(receipt, message_id=tlv_id or receipt.message_id, stat=stat or receipt.stat)
    except ValueError as exc:
        raise ReceiptError(str(exc)) from None
