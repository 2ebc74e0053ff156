# The ESME-side SMPP session: transition table, window, timers (fake clock), parts, receipts.
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smpp.codec import Framer, Pdu, SmppError, decode, encode
from gateway.smpp.constants import CommandId, Status, Tag
from gateway.smpp.esme import (
    TABLE,
    Backoff,
    BindRefused,
    Bound,
    Closed,
    Esme,
    Limits,
    Outgoing,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    SessionError,
    State,
    WindowFull,
    is_receipt,
    read_receipt,
    submit_parts,
)
from gateway.smpp.receipt import Receipt, ReceiptError, format_receipt
from gateway.smpp.text import decode_text, parse_udh

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
C = CommandId
PARAMS = {"source_addr": "AsiaCell", "destination_addr": "964111222333", "short_message": b"hi"}


def sent(esme: Esme) -> list[Pdu]:
    return [decode(f) for f in Framer().feed(esme.data_to_send())]


def resp(pdu: Pdu, status: int = 0, **params: object) -> bytes:
    return encode(Pdu(pdu.command_id | 0x80000000, pdu.sequence, status, dict(params)))


def bound(bind_type: str = "trx", limits: Limits | None = None) -> Esme:
    esme = Esme(T0, limits or Limits())
    esme.bind(bind_type, "GW-ENV1", "secret", "", T0)
    [bind] = sent(esme)
    [event] = esme.receive_data(resp(bind, system_id="PEER"), T0)
    assert event == Bound("PEER")
    return esme


def deliver(seq: int, esm_class: int = 0, text: bytes = b"hello") -> bytes:
    params = {
        "source_addr_ton": 1,
        "source_addr": "964111222333",
        "destination_addr": "4477",
        "esm_class": esm_class,
        "short_message": text,
    }
    return encode(Pdu(C.DELIVER_SM, seq, 0, params))


def test_bind_sends_our_credentials_and_enters_the_bound_state() -> None:
    for kind, command, state in (
        ("trx", C.BIND_TRANSCEIVER, State.BOUND_TRX),
        ("tx", C.BIND_TRANSMITTER, State.BOUND_TX),
        ("rx", C.BIND_RECEIVER, State.BOUND_RX),
    ):
        esme = Esme(T0)
        esme.bind(kind, "GW-ENV1", "secret", "VMA", T0)
        [bind] = sent(esme)
        assert bind.command_id == command and esme.state is State.BINDING
        assert bind.params["system_id"] == "GW-ENV1" and bind.params["password"] == "secret"
        assert bind.params["system_type"] == "VMA" and bind.params["interface_version"] == 0x34
        assert esme.receive_data(resp(bind, system_id="P"), T0) == [Bound("P")]
        assert esme.state is state and esme.peer_system_id == "P"


@pytest.mark.parametrize("status", [Status.ESME_RINVPASWD, Status.ESME_RBINDFAIL])
def test_refused_bind_closes(status) -> None:
    esme = Esme(T0)
    esme.bind("trx", "GW", "bad", "", T0)
    [bind] = sent(esme)
    refused, closed = esme.receive_data(resp(bind, status), T0)
    assert isinstance(refused, BindRefused) and refused.status == status
    assert isinstance(closed, Closed) and esme.state is State.CLOSED


def test_generic_nack_to_the_bind_is_a_refusal_and_bind_fields_are_checked() -> None:
    esme = Esme(T0)
    esme.bind("tx", "GW", "pw", "", T0)
    [bind] = sent(esme)
    nack = encode(Pdu(C.GENERIC_NACK, bind.sequence, Status.ESME_RINVCMDID))
    refused, _ = esme.receive_data(nack, T0)
    assert refused.status == Status.ESME_RINVCMDID
    with pytest.raises(SmppError) as too_long:
        Esme(T0).bind("tx", "GW", "password-too-long", "", T0)
    assert too_long.value.status == Status.ESME_RINVPASWD
    with pytest.raises(SessionError):
        bound().bind("tx", "GW", "pw", "", T0)


def test_bind_unanswered_closes_at_the_response_timeout() -> None:
    esme = Esme(T0, Limits(response_timeout=timedelta(seconds=5)))
    esme.bind("trx", "GW", "pw", "", T0)
    assert esme.next_deadline() == T0 + timedelta(seconds=5)
    assert esme.on_timer(T0 + timedelta(seconds=4)) == []
    assert esme.on_timer(T0 + timedelta(seconds=5)) == [Closed("bind unanswered")]


def test_every_state_has_a_table_row() -> None:
    assert set(TABLE) == set(State)


@pytest.mark.parametrize(
    ("bind_type", "frame", "answer"),
    [
        ("tx", deliver(7), (C.DELIVER_SM_RESP, Status.ESME_RINVBNDSTS)),  # not a receiver
        ("trx", encode(Pdu(C.SUBMIT_SM, 7, 0, PARAMS)), (C.SUBMIT_SM_RESP, Status.ESME_RINVBNDSTS)),
        ("trx", encode(Pdu(C.BIND_TRANSCEIVER, 7, 0, {})), (C.BIND_TRANSCEIVER_RESP, 4)),
        ("rx", encode(Pdu(C.OUTBIND, 7, 0, {})), (C.GENERIC_NACK, Status.ESME_RINVBNDSTS)),
    ],
)
def test_requests_missing_from_the_table_are_answered_and_counted(bind_type, frame, answer) -> None:
    esme = bound(bind_type)
    [event] = esme.receive_data(frame, T0)
    assert isinstance(event, ProtocolError) and esme.errors == 1
    [reply] = sent(esme)
    assert (reply.command_id, reply.status, reply.sequence) == (*answer, 7)


def test_unknown_command_gets_generic_nack_and_stray_responses_are_counted() -> None:
    esme = bound()
    unknown = (
        (16).to_bytes(4, "big") + (0x77).to_bytes(4, "big") + bytes(4) + (9).to_bytes(4, "big")
    )
    [event] = esme.receive_data(unknown, T0)
    assert event.status == Status.ESME_RINVCMDID
    [nack] = sent(esme)
    assert (nack.command_id, nack.status, nack.sequence) == (C.GENERIC_NACK, 3, 9)
    stray = encode(Pdu(C.SUBMIT_SM_RESP, 555, 0, {"message_id": "1"}))
    [event] = esme.receive_data(stray, T0)
    assert isinstance(event, ProtocolError) and sent(esme) == []  # a response is not answered


def test_unframeable_input_is_nacked_and_closes() -> None:
    esme = bound()
    events = esme.receive_data(deliver(3) + (8).to_bytes(4, "big") + bytes(12), T0)
    assert isinstance(events[0], RequestReceived) and isinstance(events[-1], Closed)
    assert sent(esme)[-1].command_id == C.GENERIC_NACK


def test_window_limits_our_submits_and_answers_free_it() -> None:
    esme = bound(limits=Limits(window=2))
    first = esme.submit(PARAMS, [], T0, context="a")
    esme.submit(PARAMS, [(Tag.user_message_reference, b"\x00\x01")], T0, context="b")
    assert not esme.can_submit() and esme.in_flight == 2
    with pytest.raises(WindowFull):
        esme.submit(PARAMS, [], T0)
    pdus = sent(esme)
    assert [p.command_id for p in pdus] == [C.SUBMIT_SM] * 2
    assert pdus[1].tlv_int(Tag.user_message_reference) == 1
    [answer] = esme.receive_data(resp(pdus[0], message_id="P-1"), T0)
    assert isinstance(answer, ResponseReceived) and answer.context == "a"
    assert answer.response.params["message_id"] == "P-1" and answer.request.sequence == first
    assert esme.can_submit() and esme.in_flight == 1
    [nack] = esme.receive_data(encode(Pdu(C.GENERIC_NACK, pdus[1].sequence, 0x58)), T0)
    assert nack.context == "b" and nack.response.status == Status.ESME_RTHROTTLED


def test_a_field_that_does_not_fit_sends_nothing() -> None:
    esme = bound()
    with pytest.raises(SmppError) as error:
        esme.submit({**PARAMS, "source_addr": "x" * 30}, [], T0)
    assert error.value.status == Status.ESME_RINVSRCADR
    assert esme.in_flight == 0 and esme.outstanding == 0 and sent(esme) == []


def test_receiver_cannot_submit() -> None:
    esme = bound("rx")
    assert not esme.can_submit()
    with pytest.raises(SessionError):
        esme.submit(PARAMS, [], T0)


def test_response_timeout_fails_the_submit_and_frees_the_window() -> None:
    esme = bound(limits=Limits(window=1, response_timeout=timedelta(seconds=10)))
    esme.submit(PARAMS, [], T0 + timedelta(seconds=1), context="m1")
    [pdu] = sent(esme)
    assert esme.next_deadline() == T0 + timedelta(seconds=11)
    [timed_out] = esme.on_timer(T0 + timedelta(seconds=11))
    assert isinstance(timed_out, ResponseTimedOut) and timed_out.context == "m1"
    assert esme.can_submit()
    [probe] = sent(esme)  # the link is suspect: probed at once
    assert probe.command_id == C.ENQUIRE_LINK
    [late] = esme.receive_data(resp(pdu, message_id="9"), T0 + timedelta(seconds=12))
    assert isinstance(late, ProtocolError)  # counted, nothing else
    assert esme.receive_data(resp(probe), T0 + timedelta(seconds=12)) == []
    assert esme.state is State.BOUND_TRX  # a peer that lost one resp stays bound


def test_a_peer_that_stops_answering_is_let_go_within_two_response_timeouts() -> None:
    limits = Limits(
        window=3, response_timeout=timedelta(seconds=10), enquire_link_interval=timedelta(hours=1)
    )
    esme = bound(limits=limits)
    for i in range(3):
        esme.submit(PARAMS, [], T0, context=f"m{i}")
    sent(esme)
    events = esme.on_timer(T0 + timedelta(seconds=10))
    assert [type(e) for e in events] == [ResponseTimedOut] * 3
    [probe] = sent(esme)
    assert probe.command_id == C.ENQUIRE_LINK
    esme.submit(PARAMS, [], T0 + timedelta(seconds=11), context="m3")  # still bound meanwhile
    [closed] = [e for e in esme.on_timer(T0 + timedelta(seconds=20)) if isinstance(e, Closed)]
    assert closed.reason == "enquire_link unanswered" and esme.state is State.CLOSED
    assert esme.abandon_requests() == ["m3"]  # the client fails it over


def test_idle_link_is_probed_and_closed_when_the_probe_is_unanswered() -> None:
    limits = Limits(
        enquire_link_interval=timedelta(seconds=30), response_timeout=timedelta(seconds=10)
    )
    esme = bound(limits=limits)
    assert esme.next_deadline() == T0 + timedelta(seconds=30)
    assert esme.on_timer(T0 + timedelta(seconds=29)) == [] and sent(esme) == []
    assert esme.on_timer(T0 + timedelta(seconds=30)) == []
    [probe] = sent(esme)
    assert probe.command_id == C.ENQUIRE_LINK
    assert esme.receive_data(resp(probe), T0 + timedelta(seconds=31)) == []  # answered: silent
    assert esme.next_deadline() == T0 + timedelta(seconds=61)
    esme.on_timer(T0 + timedelta(seconds=61))
    [probe] = sent(esme)
    assert esme.on_timer(T0 + timedelta(days=1)) == [Closed("enquire_link unanswered")]


def test_traffic_postpones_the_probe_and_peer_probes_are_answered() -> None:
    esme = bound(limits=Limits(enquire_link_interval=timedelta(seconds=30)))
    assert esme.receive_data(encode(Pdu(C.ENQUIRE_LINK, 5)), T0 + timedelta(seconds=20)) == []
    [answer] = sent(esme)
    assert (answer.command_id, answer.sequence) == (C.ENQUIRE_LINK_RESP, 5)
    assert esme.next_deadline() == T0 + timedelta(seconds=50)


def test_deliver_sm_is_handed_over_and_answered_with_the_applications_status() -> None:
    esme = bound(limits=Limits(window_in=2))
    events = esme.receive_data(deliver(10) + deliver(11) + deliver(12), T0)
    assert [type(e) for e in events] == [RequestReceived, RequestReceived, ProtocolError]
    [throttled] = sent(esme)
    assert (throttled.sequence, throttled.status) == (12, Status.ESME_RTHROTTLED)
    esme.respond(events[0].pdu, Status.ESME_RX_T_APPN)
    esme.respond(events[1].pdu)
    answers = sent(esme)
    assert [(a.command_id, a.sequence, a.status) for a in answers] == [
        (C.DELIVER_SM_RESP, 10, Status.ESME_RX_T_APPN),
        (C.DELIVER_SM_RESP, 11, 0),
    ]
    with pytest.raises(SessionError):
        esme.respond(events[0].pdu)


def test_peer_unbind_waits_for_our_answers_then_closes() -> None:
    esme = bound()
    [mo] = esme.receive_data(deliver(3), T0)
    assert esme.receive_data(encode(Pdu(C.UNBIND, 4)), T0) == []
    assert esme.state is State.UNBOUND and sent(esme) == []
    assert esme.respond(mo.pdu) == [Closed("unbound by peer")]
    assert [(p.command_id, p.sequence) for p in sent(esme)] == [
        (C.DELIVER_SM_RESP, 3),
        (C.UNBIND_RESP, 4),
    ]


def test_peer_unbind_with_an_answer_never_ready_closes_at_the_timeout() -> None:
    esme = bound(limits=Limits(response_timeout=timedelta(seconds=5)))
    esme.receive_data(deliver(3), T0)
    esme.receive_data(encode(Pdu(C.UNBIND, 4)), T0)
    [closed] = esme.on_timer(T0 + timedelta(seconds=5))
    assert isinstance(closed, Closed) and esme.state is State.CLOSED


def test_our_unbind_refuses_crossing_deliveries_and_ends_on_unbind_resp() -> None:
    esme = bound()
    esme.unbind(T0)
    [unbind] = sent(esme)
    assert unbind.command_id == C.UNBIND and esme.state is State.UNBINDING
    assert not esme.can_submit()
    assert esme.receive_data(deliver(20), T0) == []  # not the peer's fault: not counted
    [crossed] = sent(esme)
    assert (crossed.sequence, crossed.status) == (20, Status.ESME_RTHROTTLED)
    assert esme.receive_data(resp(unbind), T0) == [Closed("unbound")]


def test_unanswered_unbind_closes() -> None:
    esme = bound(limits=Limits(response_timeout=timedelta(seconds=3)))
    esme.unbind(T0)
    assert esme.on_timer(T0 + timedelta(seconds=3)) == [Closed("unbind unanswered")]


def test_abandoned_requests_hand_back_their_contexts() -> None:
    esme = bound(limits=Limits(response_timeout=timedelta(seconds=60)))
    esme.submit(PARAMS, [], T0, context="x")
    esme.on_timer(T0 + timedelta(seconds=30))  # a probe (no context) is outstanding too
    assert esme.outstanding == 2
    assert esme.abandon_requests() == ["x"] and esme.in_flight == 0


def test_too_many_protocol_errors_close() -> None:
    esme = bound(limits=Limits(max_errors=2))
    stray = b"".join(encode(Pdu(C.SUBMIT_SM_RESP, n, 0, {"message_id": ""})) for n in (90, 91, 92))
    events = esme.receive_data(stray, T0)
    assert isinstance(events[-1], Closed) and esme.state is State.CLOSED


# Property: whatever the peer sends, in any order and at any time, only our events come out,
# every request it made is answered once (directly or through respond()), nothing raises.
PEER = st.sampled_from(
    [
        lambda s: deliver(s),
        lambda s: deliver(s, 0x04, b"id:1 stat:DELIVRD"),
        lambda s: encode(Pdu(C.ENQUIRE_LINK, s)),
        lambda s: encode(Pdu(C.UNBIND, s)),
        lambda s: encode(Pdu(C.SUBMIT_SM_RESP, s, 0, {"message_id": "7"})),
        lambda s: encode(Pdu(C.BIND_TRANSCEIVER_RESP, 1, 0, {"system_id": "P"})),
        lambda s: encode(Pdu(C.UNBIND_RESP, s)),
        lambda s: encode(Pdu(C.GENERIC_NACK, s, 3)),
        lambda s: encode(Pdu(C.SUBMIT_SM, s, 0, PARAMS)),
        lambda s: (
            (16).to_bytes(4, "big") + (0x77).to_bytes(4, "big") + bytes(4) + s.to_bytes(4, "big")
        ),
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(PEER, st.integers(0, 40), st.booleans()), max_size=40))
def test_any_peer_sequence_keeps_the_session_consistent(steps) -> None:
    esme = Esme(T0, Limits(max_errors=1000, window=3))
    esme.bind("trx", "GW", "pw", "", T0)
    now = T0
    requests = answers = 0
    for i, (make, advance, submit) in enumerate(steps, start=1000):
        now += timedelta(seconds=advance)
        deadline = esme.next_deadline()
        events = esme.on_timer(now) if deadline and now >= deadline else []
        if submit and esme.can_submit():
            esme.submit(PARAMS, [], now)
        if esme.state is State.CLOSED:
            break
        frame = make(i)
        requests += not int.from_bytes(frame[4:8], "big") & 0x80000000
        events += esme.receive_data(frame, now)
        for event in events:
            assert isinstance(
                event,
                Bound
                | BindRefused
                | RequestReceived
                | ResponseReceived
                | ResponseTimedOut
                | ProtocolError
                | Closed,
            )
            if isinstance(event, RequestReceived):
                esme.respond(event.pdu)
        assert 0 <= esme.in_flight <= 3
        for pdu in sent(esme):
            answers += pdu.sequence == i and pdu.command_id & 0x80000000 != 0
        if esme.state is State.CLOSED:
            break
    else:
        assert answers == requests


# -- reconnecting -----------------------------------------------------------------------
def test_backoff_doubles_to_the_maximum_and_resets_after_a_bind() -> None:
    backoff = Backoff(1.0, 10.0)
    assert [backoff.failed() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.reset()
    assert backoff.failed() == 1.0
    assert backoff.refused() == 10.0 and backoff.failed() == 10.0  # stays slow
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


# -- parts --------------------------------------------------------------------------------
def outgoing(text: str | None = "Hello", **changes: object) -> Outgoing:
    values: dict = {
        "message_id": 42,
        "source": "AsiaCell",
        "source_ton": 5,
        "destination": "964111222333",
        "text": text,
        "body": None,
        "data_coding": None,
        "registered_delivery": 1,
        "priority": 0,
        "tlvs": {},
    }
    values.update(changes)
    return Outgoing(**values)


def test_a_short_gsm_text_is_one_part() -> None:
    [(params, tlvs)] = submit_parts(outgoing("Hello €", tlvs={0x1401: b"env1"}), ref=7)
    assert params["data_coding"] == 0 and params["esm_class"] == 0
    assert decode_text(params["short_message"], 0) == "Hello €"
    assert (params["source_addr_ton"], params["source_addr_npi"]) == (5, 0)
    assert (params["dest_addr_ton"], params["dest_addr_npi"]) == (1, 1)
    assert params["destination_addr"] == "964111222333" and params["registered_delivery"] == 1
    assert tlvs == [(0x1401, b"env1")]
    encode(Pdu(C.SUBMIT_SM, 1, 0, params, tlvs))  # fits


def test_a_long_arabic_text_is_split_with_one_reference() -> None:
    text = "مرحبا بكم في خدمة الرسائل القصيرة " * 5
    parts = submit_parts(outgoing(text, source="9647701234567", source_ton=1), ref=200)
    assert len(parts) == 3
    payload = b""
    for seq, (params, _) in enumerate(parts, start=1):
        assert params["data_coding"] == 8 and params["esm_class"] == 0x40
        assert params["source_addr_npi"] == 1
        udh, chunk = parse_udh(params["short_message"])
        assert udh.concat == (200, 3, seq)
        payload += chunk
    assert decode_text(payload, 8) == text


def test_binary_body_explicit_coding_and_refusals() -> None:
    [(params, _)] = submit_parts(outgoing(None, body=b"\x00\xff"), ref=1)
    assert params["data_coding"] == 4 and params["short_message"] == b"\x00\xff"
    [(params, _)] = submit_parts(outgoing("café", data_coding=3), ref=1)
    assert params["data_coding"] == 3 and params["short_message"] == "café".encode("latin-1")
    for bad, status in (
        (outgoing(None), Status.ESME_RSUBMITFAIL),
        (outgoing(priority=4), Status.ESME_RINVPRTFLG),
        (outgoing("x" * 70_000), Status.ESME_RINVMSGLEN),
        (outgoing("مرحبا", data_coding=0), Status.ESME_RSUBMITFAIL),
    ):
        with pytest.raises(SmppError) as error:
            submit_parts(bad, ref=1)
        assert error.value.status == status


# -- receipts -------------------------------------------------------------------------------
def receipt_deliver(text: str, esm_class: int = 0x04, **tlvs: bytes) -> Pdu:
    pdu = decode(deliver(1, esm_class, text.encode("latin-1")))
    for name, value in tlvs.items():
        pdu.set_tlv(Tag[name], value)
    return pdu


def test_receipt_text_is_read_and_tlvs_win() -> None:
    text = format_receipt(Receipt("a1b2", 1, 1, T0, T0, "DELIVRD", 0, "Hello"))
    pdu = receipt_deliver(text)
    assert is_receipt(pdu) and not is_receipt(decode(deliver(1)))
    receipt = read_receipt(pdu, T0)
    assert (receipt.message_id, receipt.stat, receipt.done_date) == ("a1b2", "DELIVRD", T0)
    pdu = receipt_deliver(text, receipted_message_id=b"A1B2\0", message_state=b"\x05")
    receipt = read_receipt(pdu, T0)
    assert (receipt.message_id, receipt.stat) == ("A1B2", "UNDELIV")


def test_receipt_from_tlvs_alone_and_unreadable_receipts() -> None:
    pdu = receipt_deliver(
        "", receipted_message_id=b"77\0", message_state=b"\x03", network_error_code=b"\x03\x00\x0b"
    )
    receipt = read_receipt(pdu, T0)
    assert (receipt.message_id, receipt.stat, receipt.err) == ("77", "EXPIRED", 11)
    for bad in (receipt_deliver("hello"), receipt_deliver("", receipted_message_id=b"7\0")):
        with pytest.raises(ReceiptError) as error:
            read_receipt(bad, T0)
        assert error.value.status == Status.ESME_RX_P_APPN
    with pytest.raises(ReceiptError):
        read_receipt(receipt_deliver("id:1 stat:DELIVRD", message_state=b"\x00"), T0)
