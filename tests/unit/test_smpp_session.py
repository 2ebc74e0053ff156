# The SMSC-side SMPP session: transition table, windows, unbind order, timers (fake clock).
from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smpp.codec import Framer, Pdu, decode, encode
from gateway.smpp.constants import CommandId, Status, Tag
from gateway.smpp.session import (
    TABLE,
    BindRequested,
    Closed,
    Limits,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    Session,
    SessionError,
    State,
    WindowFull,
)

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def sent(session: Session) -> list[Pdu]:
    framer = Framer()
    return [decode(f) for f in framer.feed(session.data_to_send())]


def bind(kind: int = CommandId.BIND_TRANSCEIVER, seq: int = 1) -> bytes:
    return encode(
        Pdu(
            kind,
            seq,
            0,
            {
                "system_id": "TATA",
                "password": "pw",
                "system_type": "",
                "interface_version": 0x34,
                "addr_ton": 0,
                "addr_npi": 0,
                "address_range": "",
            },
        )
    )


def submit(seq: int, text: bytes = b"hello") -> bytes:
    return encode(
        Pdu(
            CommandId.SUBMIT_SM,
            seq,
            0,
            {
                "service_type": "",
                "source_addr_ton": 5,
                "source_addr_npi": 0,
                "source_addr": "AsiaCell",
                "dest_addr_ton": 1,
                "dest_addr_npi": 1,
                "destination_addr": "964111222333",
                "esm_class": 0,
                "protocol_id": 0,
                "priority_flag": 0,
                "schedule_delivery_time": "",
                "validity_period": "",
                "registered_delivery": 1,
                "replace_if_present_flag": 0,
                "data_coding": 0,
                "sm_default_msg_id": 0,
                "short_message": text,
            },
        )
    )


def bound(kind: int = CommandId.BIND_TRANSCEIVER, limits: Limits | None = None) -> Session:
    session = Session(T0, limits or Limits())
    [event] = session.receive_data(bind(kind), T0)
    assert isinstance(event, BindRequested)
    session.accept_bind(event.pdu, "GW-ENV1", T0)
    sent(session)
    return session


def test_bind_accepted_answers_with_our_system_id_and_version() -> None:
    session = Session(T0)
    [event] = session.receive_data(bind(), T0)
    assert isinstance(event, BindRequested) and event.bind_type == "trx"
    assert session.state is State.OPEN
    session.accept_bind(event.pdu, "GW-ENV1", T0)
    [resp] = sent(session)
    assert resp.command_id == CommandId.BIND_TRANSCEIVER_RESP and resp.status == 0
    assert resp.sequence == 1 and resp.params["system_id"] == "GW-ENV1"
    assert resp.tlv_int(Tag.sc_interface_version) == 0x34
    assert session.state is State.BOUND_TRX and session.system_id == "TATA"


def test_bind_rejected_stays_open_and_can_retry() -> None:
    session = Session(T0)
    [event] = session.receive_data(bind(CommandId.BIND_TRANSMITTER), T0)
    session.reject_bind(event.pdu, Status.ESME_RINVPASWD, "GW-ENV1")
    [resp] = sent(session)
    assert resp.command_id == CommandId.BIND_TRANSMITTER_RESP
    assert resp.status == Status.ESME_RINVPASWD
    assert session.state is State.OPEN
    [again] = session.receive_data(bind(CommandId.BIND_TRANSMITTER, 2), T0)
    assert isinstance(again, BindRequested)


@pytest.mark.parametrize(
    ("kind", "command", "expected"),
    [
        (None, submit(5), Status.ESME_RINVBNDSTS),  # not bound yet
        (CommandId.BIND_RECEIVER, submit(5), Status.ESME_RINVBNDSTS),  # a receiver cannot submit
        (CommandId.BIND_TRANSMITTER, bind(seq=5), Status.ESME_RALYBND),
    ],
)
def test_requests_in_the_wrong_state_get_their_resp_with_the_right_status(
    kind, command, expected
) -> None:
    session = Session(T0) if kind is None else bound(kind)
    events = session.receive_data(command, T0)
    assert [type(e) for e in events] == [ProtocolError]
    [resp] = sent(session)
    assert resp.sequence == 5 and resp.status == expected
    assert resp.command_id == decode(command).command_id | 0x80000000


def test_unknown_command_gets_generic_nack_invcmdid() -> None:
    session = bound()
    frame = (
        (16).to_bytes(4, "big")
        + (0x00000099).to_bytes(4, "big")
        + bytes(4)
        + (7).to_bytes(4, "big")
    )
    [event] = session.receive_data(frame, T0)
    assert isinstance(event, ProtocolError)
    [nack] = sent(session)
    assert (nack.command_id, nack.status, nack.sequence) == (
        CommandId.GENERIC_NACK,
        Status.ESME_RINVCMDID,
        7,
    )
    assert session.state is State.BOUND_TRX  # the session goes on


def test_unframeable_length_is_nacked_and_closes_after_answering_what_came_before() -> None:
    session = bound()
    events = session.receive_data(
        encode(Pdu(CommandId.ENQUIRE_LINK, 3)) + b"\xff\xff\xff\xff" + bytes(12), T0
    )
    assert isinstance(events[-1], Closed) and session.state is State.CLOSED
    link, nack = sent(session)
    assert link.command_id == CommandId.ENQUIRE_LINK_RESP and link.sequence == 3
    assert nack.command_id == CommandId.GENERIC_NACK and nack.status == Status.ESME_RINVCMDLEN


def test_submit_is_handed_over_and_answered_byte_by_byte() -> None:
    session = bound(CommandId.BIND_TRANSMITTER)
    data = submit(9, "مرحبا".encode("utf-16-be"))
    events = []
    for i in range(len(data)):
        events += session.receive_data(data[i : i + 1], T0)
    [event] = events
    assert (
        isinstance(event, RequestReceived)
        and event.pdu.params["destination_addr"] == "964111222333"
    )
    assert session.unanswered == 1
    assert session.respond(event.pdu, message_id="1a2b") == []
    [resp] = sent(session)
    assert (resp.command_id, resp.sequence, resp.params["message_id"]) == (
        CommandId.SUBMIT_SM_RESP,
        9,
        "1a2b",
    )
    with pytest.raises(SessionError):
        session.respond(event.pdu)


def test_inbound_window_full_is_throttled() -> None:
    session = bound(limits=Limits(window_in=2))
    events = session.receive_data(submit(1) + submit(2) + submit(3), T0)
    assert [type(e) for e in events] == [RequestReceived, RequestReceived, ProtocolError]
    [resp] = sent(session)
    assert resp.sequence == 3 and resp.status == Status.ESME_RTHROTTLED
    session.respond(events[0].pdu, message_id="1")
    [event] = session.receive_data(submit(4), T0)
    assert isinstance(event, RequestReceived)


def test_unbind_waits_for_answers_to_earlier_submits() -> None:
    session = bound()
    [request] = session.receive_data(submit(1), T0)
    unbind = encode(Pdu(CommandId.UNBIND, 2))
    assert session.receive_data(unbind, T0) == []
    assert sent(session) == []  # no unbind_resp before the submit is answered
    assert session.state is State.UNBOUND
    # no new request is taken while unbinding
    session.receive_data(submit(3), T0)
    [refused] = sent(session)
    assert refused.sequence == 3 and refused.status == Status.ESME_RINVBNDSTS
    events = session.respond(request.pdu, message_id="77")
    assert [type(e) for e in events] == [Closed]
    resp, unbind_resp = sent(session)
    assert resp.command_id == CommandId.SUBMIT_SM_RESP and resp.params["message_id"] == "77"
    assert unbind_resp.command_id == CommandId.UNBIND_RESP and unbind_resp.sequence == 2


def test_deliver_sm_window_responses_and_timeouts() -> None:
    session = bound(limits=Limits(window_out=2, response_timeout=timedelta(seconds=10)))
    params = {
        "source_addr": "964111222333",
        "destination_addr": "AsiaCell",
        "esm_class": 4,
        "short_message": b"id:1 stat:DELIVRD",
    }
    first = session.send_request(CommandId.DELIVER_SM, params, T0, context="receipt-1")
    second = session.send_request(CommandId.DELIVER_SM, params, T0, context="receipt-2")
    assert not session.can_send(CommandId.DELIVER_SM)
    with pytest.raises(WindowFull):
        session.send_request(CommandId.DELIVER_SM, params, T0)
    assert [p.sequence for p in sent(session)] == [first, second]
    [event] = session.receive_data(
        encode(Pdu(CommandId.DELIVER_SM_RESP, first, 0, {"message_id": ""})), T0
    )
    assert isinstance(event, ResponseReceived) and event.context == "receipt-1"
    assert session.next_deadline() == T0 + timedelta(seconds=10)
    [timeout] = session.on_timer(T0 + timedelta(seconds=10))
    assert isinstance(timeout, ResponseTimedOut) and timeout.context == "receipt-2"
    assert session.outstanding == 0


def test_transmitter_cannot_be_sent_deliver_sm() -> None:
    session = bound(CommandId.BIND_TRANSMITTER)
    with pytest.raises(SessionError):
        session.send_request(CommandId.DELIVER_SM, {}, T0)


def test_bind_timeout_closes_an_idle_open_session() -> None:
    session = Session(T0, Limits(bind_timeout=timedelta(seconds=5)))
    assert session.next_deadline() == T0 + timedelta(seconds=5)
    assert session.on_timer(T0 + timedelta(seconds=4)) == []
    [closed] = session.on_timer(T0 + timedelta(seconds=5))
    assert isinstance(closed, Closed) and "bind" in closed.reason


def test_idle_link_is_probed_and_closed_when_the_probe_is_unanswered() -> None:
    limits = Limits(
        enquire_link_interval=timedelta(seconds=30),
        response_timeout=timedelta(seconds=10),
        inactivity_timeout=timedelta(seconds=300),
    )
    session = bound(limits=limits)
    at = T0 + timedelta(seconds=30)
    assert session.next_deadline() == at
    assert session.on_timer(at) == []
    [probe] = sent(session)
    assert probe.command_id == CommandId.ENQUIRE_LINK
    # answered: the link is fine and nothing reaches the application
    assert session.receive_data(encode(Pdu(CommandId.ENQUIRE_LINK_RESP, probe.sequence)), at) == []
    at2 = at + timedelta(seconds=30)
    session.on_timer(at2)
    [probe2] = sent(session)
    [closed] = session.on_timer(at2 + timedelta(seconds=10))
    assert isinstance(closed, Closed) and "enquire_link" in closed.reason
    assert probe2.sequence != probe.sequence


def test_enquire_link_from_carrier_is_answered_in_open_and_bound() -> None:
    for session in (Session(T0), bound()):
        assert session.receive_data(encode(Pdu(CommandId.ENQUIRE_LINK, 42)), T0) == []
        [resp] = sent(session)
        assert (resp.command_id, resp.sequence, resp.status) == (CommandId.ENQUIRE_LINK_RESP, 42, 0)


def test_too_many_protocol_errors_close_the_session() -> None:
    session = bound(limits=Limits(max_errors=3))
    events = session.receive_data(b"".join(bind(seq=i) for i in range(1, 6)), T0)
    assert isinstance(events[-1], Closed) and session.state is State.CLOSED


def test_every_state_has_a_table_row() -> None:
    assert set(TABLE) == set(State)


# Property: whatever a peer sends, at any time, only our events come out, every request the
# peer made is answered exactly once (directly or through RequestReceived + respond()).
PEER_PDUS = st.sampled_from(
    [
        lambda s: bind(seq=s),
        lambda s: bind(CommandId.BIND_TRANSMITTER, s),
        lambda s: bind(CommandId.BIND_RECEIVER, s),
        submit,
        lambda s: encode(Pdu(CommandId.ENQUIRE_LINK, s)),
        lambda s: encode(Pdu(CommandId.UNBIND, s)),
        lambda s: encode(Pdu(CommandId.DELIVER_SM_RESP, s, 0, {"message_id": ""})),
        lambda s: encode(Pdu(CommandId.GENERIC_NACK, s, 3)),
        lambda s: (
            (16).to_bytes(4, "big") + (0x77).to_bytes(4, "big") + bytes(4) + s.to_bytes(4, "big")
        ),
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(PEER_PDUS, st.integers(0, 200), st.booleans()), max_size=40))
def test_any_peer_sequence_keeps_the_session_consistent(steps) -> None:
    session = Session(T0, Limits(max_errors=1000))
    now = T0
    requests = answers = 0
    for i, (make, advance, accept) in enumerate(steps, start=1):
        now += timedelta(seconds=advance)
        events = (
            session.on_timer(now)
            if session.next_deadline() and now >= session.next_deadline()
            else []
        )
        if session.state is State.CLOSED:
            break
        frame = make(i)
        is_request = not int.from_bytes(frame[4:8], "big") & 0x80000000
        requests += is_request
        events += session.receive_data(frame, now)
        for event in events:
            assert isinstance(
                event,
                BindRequested
                | RequestReceived
                | ResponseReceived
                | ResponseTimedOut
                | ProtocolError
                | Closed,
            )
            if isinstance(event, BindRequested):
                if accept:
                    session.accept_bind(event.pdu, "GW", now)
                else:
                    session.reject_bind(event.pdu, Status.ESME_RBINDFAIL, "GW")
            elif isinstance(event, RequestReceived):
                session.respond(event.pdu, message_id="1")
        for pdu in sent(session):
            answers += pdu.sequence == i and pdu.command_id & 0x80000000 != 0
        assert session.state in State
        if session.state is State.CLOSED:
            break
    else:
        assert answers == requests


def test_requests_crossing_our_unbind_are_refused_without_counting_as_errors() -> None:
    session = bound(limits=Limits(max_errors=3))
    session.unbind(T0)
    [unbind] = sent(session)
    assert unbind.command_id == CommandId.UNBIND and session.state is State.UNBINDING
    events = session.receive_data(b"".join(submit(i) for i in range(10, 20)), T0)
    assert events == [] and session.state is State.UNBINDING  # no error count, no close
    resps = sent(session)
    assert [r.status for r in resps] == [Status.ESME_RINVBNDSTS] * 10
    [closed] = session.receive_data(encode(Pdu(CommandId.UNBIND_RESP, unbind.sequence)), T0)
    assert isinstance(closed, Closed) and session.state is State.CLOSED


@pytest.mark.parametrize("command_id", [CommandId.OUTBIND, CommandId.ALERT_NOTIFICATION])
@pytest.mark.parametrize("state", ["open", "bound"])
def test_requests_without_a_resp_pdu_are_answered_generic_nack(command_id, state) -> None:
    """Found by the atheris run (tests/fuzz/README.md): an outbind or alert_notification from
    a carrier, valid or not, raised ValueError (no resp PDU to answer it with)."""
    session = Session(T0) if state == "open" else bound()
    outbind = encode(Pdu(CommandId.OUTBIND, 7, 0, {"system_id": "TATA", "password": "x"}))
    bad = struct.pack(">IIII", 16, command_id, 0, 8)  # too short for its mandatory fields
    events = session.receive_data(outbind if command_id == CommandId.OUTBIND else bad, T0)
    events += session.receive_data(bad, T0)
    assert all(isinstance(e, ProtocolError) for e in events)
    answers = sent(session)
    assert [a.command_id for a in answers] == [CommandId.GENERIC_NACK] * 2
    assert answers[-1].sequence == 8


def test_an_unbind_resp_nobody_asked_for_is_counted_not_an_end():
    session = bound(CommandId.BIND_TRANSCEIVER)
    [event] = session.receive_data(encode(Pdu(CommandId.UNBIND_RESP, 77)), T0)
    assert isinstance(event, ProtocolError) and "for no request of ours" in event.reason
    assert session.state is State.BOUND_TRX  # the carrier's bind goes on
