# Tests of gateway/smpp/codec.py: SMPP 3.4 vectors, framing, violations, smpplib cross-check.
"""Every PDU kind decodes, re-encodes byte for byte and frames from any chunking; every
malformed input is refused with its exact command_status and nothing but SmppError escapes."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta, timezone

import pytest
import smpplib.smpp
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.smpp.codec import (
    CSTR,
    DESTS,
    FIELDS,
    SM,
    TIME,
    U8,
    UNSUCCESS,
    FrameError,
    Framer,
    Pdu,
    PduError,
    SmppError,
    TimeFormatError,
    decode,
    encode,
    format_time,
    generic_nack,
    parse_time,
    response,
)
from gateway.smpp.constants import TLV_LENGTHS, CommandId, Status, Tag, is_response, resp_of

C = CommandId
S = Status


# -- wire builders, independent of the codec under test ---------------------------------
def c(text: str) -> bytes:
    return text.encode("latin-1") + b"\0"


def u8(*values: int) -> bytes:
    return bytes(values)


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


def wire(command_id: int, body: bytes = b"", status: int = 0, sequence: int = 1) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body


def check(frame: bytes, status: int) -> PduError:
    with pytest.raises(PduError) as info:
        decode(frame)
    assert info.value.status == status, info.value
    return info.value


SUBMIT_PARAMS = {
    "service_type": "CMT",
    "source_addr_ton": 1,
    "source_addr_npi": 1,
    "source_addr": "447700900123",
    "dest_addr_ton": 1,
    "dest_addr_npi": 1,
    "destination_addr": "33612345678",
    "esm_class": 0x40,
    "protocol_id": 0,
    "priority_flag": 1,
    "schedule_delivery_time": "",
    "validity_period": "000001000000000R",
    "registered_delivery": 1,
    "replace_if_present_flag": 0,
    "data_coding": 0,
    "sm_default_msg_id": 0,
    "short_message": b"\x05\x00\x03\x2a\x02\x01Hello",
}
SUBMIT_BODY = (
    c("CMT")
    + u8(1, 1)
    + c("447700900123")
    + u8(1, 1)
    + c("33612345678")
    + u8(0x40, 0, 1)
    + c("")
    + c("000001000000000R")
    + u8(1, 0, 0, 0, 11)
    + b"\x05\x00\x03\x2a\x02\x01Hello"
)
RECEIPT_TEXT = b"id:abc123 sub:001 dlvrd:001 submit date:2306151030 done date:2306151031 stat:DELIVRD err:000 text:"
BIND = {
    "system_id": "esme1",
    "password": "secret",
    "system_type": "VMA",
    "interface_version": 0x34,
    "addr_ton": 1,
    "addr_npi": 1,
    "address_range": "^44.*",
}
BIND_BODY = c("esme1") + c("secret") + c("VMA") + u8(0x34, 1, 1) + c("^44.*")
MAX_BIND = {
    "system_id": "s" * 15,
    "password": "p" * 8,
    "system_type": "",
    "interface_version": 0x34,
    "addr_ton": 0,
    "addr_npi": 0,
    "address_range": "a" * 40,
}
MAX_BIND_BODY = c("s" * 15) + c("p" * 8) + c("") + u8(0x34, 0, 0) + c("a" * 40)

# (label, wire bytes, the Pdu they are)
VECTORS: list[tuple[str, bytes, Pdu]] = [
    ("generic_nack", wire(C.GENERIC_NACK, status=3, sequence=9), Pdu(C.GENERIC_NACK, 9, 3)),
    ("bind_transmitter", wire(C.BIND_TRANSMITTER, BIND_BODY), Pdu(C.BIND_TRANSMITTER, 1, 0, BIND)),
    (
        "bind_receiver",
        wire(C.BIND_RECEIVER, BIND_BODY, sequence=2),
        Pdu(C.BIND_RECEIVER, 2, 0, BIND),
    ),
    (
        "bind_transceiver max lengths",
        wire(C.BIND_TRANSCEIVER, MAX_BIND_BODY),
        Pdu(C.BIND_TRANSCEIVER, 1, 0, MAX_BIND),
    ),
    (
        "bind_transmitter_resp",
        wire(C.BIND_TRANSMITTER_RESP, c("SMSC") + tlv(0x0210, b"\x34")),
        Pdu(C.BIND_TRANSMITTER_RESP, 1, 0, {"system_id": "SMSC"}, [(0x0210, b"\x34")]),
    ),
    (
        "bind_receiver_resp error, empty body",
        wire(C.BIND_RECEIVER_RESP, status=0x0E),
        Pdu(C.BIND_RECEIVER_RESP, 1, S.ESME_RINVPASWD),
    ),
    (
        "bind_transceiver_resp",
        wire(C.BIND_TRANSCEIVER_RESP, c("gw")),
        Pdu(C.BIND_TRANSCEIVER_RESP, 1, 0, {"system_id": "gw"}),
    ),
    (
        "outbind",
        wire(C.OUTBIND, c("smsc") + c("pw")),
        Pdu(C.OUTBIND, 1, 0, {"system_id": "smsc", "password": "pw"}),
    ),
    ("unbind", wire(C.UNBIND, sequence=4), Pdu(C.UNBIND, 4)),
    ("unbind_resp", wire(C.UNBIND_RESP, sequence=4), Pdu(C.UNBIND_RESP, 4)),
    ("enquire_link", wire(C.ENQUIRE_LINK, sequence=0x7FFFFFFF), Pdu(C.ENQUIRE_LINK, 0x7FFFFFFF)),
    ("enquire_link_resp", wire(C.ENQUIRE_LINK_RESP), Pdu(C.ENQUIRE_LINK_RESP, 1)),
    (
        "submit_sm with SAR and vendor TLVs",
        wire(
            C.SUBMIT_SM,
            SUBMIT_BODY
            + tlv(0x020C, b"\x12\x34")
            + tlv(0x020E, b"\x02")
            + tlv(0x020F, b"\x01")
            + tlv(0x1400, b"\x00\xffvendor\x00"),
            sequence=77,
        ),
        Pdu(
            C.SUBMIT_SM,
            77,
            0,
            SUBMIT_PARAMS,
            [
                (0x020C, b"\x12\x34"),
                (0x020E, b"\x02"),
                (0x020F, b"\x01"),
                (0x1400, b"\x00\xffvendor\x00"),
            ],
        ),
    ),
    (
        "submit_sm with message_payload",
        wire(
            C.SUBMIT_SM,
            SUBMIT_BODY[: -len(SUBMIT_PARAMS["short_message"]) - 1]
            + u8(0)
            + tlv(0x0424, b"x" * 300),
        ),
        Pdu(C.SUBMIT_SM, 1, 0, SUBMIT_PARAMS | {"short_message": b""}, [(0x0424, b"x" * 300)]),
    ),
    (
        "submit_sm_resp",
        wire(C.SUBMIT_SM_RESP, c("abc123"), sequence=77),
        Pdu(C.SUBMIT_SM_RESP, 77, 0, {"message_id": "abc123"}),
    ),
    (
        "submit_sm_resp throttled, empty body",
        wire(C.SUBMIT_SM_RESP, status=0x58),
        Pdu(C.SUBMIT_SM_RESP, 1, S.ESME_RTHROTTLED),
    ),
    (
        "deliver_sm receipt",
        wire(
            C.DELIVER_SM,
            c("")
            + u8(1, 1)
            + c("33612345678")
            + u8(1, 1)
            + c("447700900123")
            + u8(0x04, 0, 0)
            + c("")
            + c("")
            + u8(0, 0, 0, 0, len(RECEIPT_TEXT))
            + RECEIPT_TEXT
            + tlv(0x001E, b"abc123\0")
            + tlv(0x0427, b"\x02")
            + tlv(0x0423, b"\x03\x00\x00"),
        ),
        Pdu(
            C.DELIVER_SM,
            1,
            0,
            {
                "service_type": "",
                "source_addr_ton": 1,
                "source_addr_npi": 1,
                "source_addr": "33612345678",
                "dest_addr_ton": 1,
                "dest_addr_npi": 1,
                "destination_addr": "447700900123",
                "esm_class": 4,
                "protocol_id": 0,
                "priority_flag": 0,
                "schedule_delivery_time": "",
                "validity_period": "",
                "registered_delivery": 0,
                "replace_if_present_flag": 0,
                "data_coding": 0,
                "sm_default_msg_id": 0,
                "short_message": RECEIPT_TEXT,
            },
            [(0x001E, b"abc123\0"), (0x0427, b"\x02"), (0x0423, b"\x03\x00\x00")],
        ),
    ),
    (
        "deliver_sm_resp",
        wire(C.DELIVER_SM_RESP, c("")),
        Pdu(C.DELIVER_SM_RESP, 1, 0, {"message_id": ""}),
    ),
    ("deliver_sm_resp, empty body", wire(C.DELIVER_SM_RESP), Pdu(C.DELIVER_SM_RESP, 1)),
    (
        "data_sm with 64-char addresses and UCS-2 payload",
        wire(
            C.DATA_SM,
            c("WAP")
            + u8(5, 0)
            + c("S" * 64)
            + u8(1, 1)
            + c("9" * 64)
            + u8(0, 1, 8)
            + tlv(0x0424, "héllo".encode("utf-16-be")),
        ),
        Pdu(
            C.DATA_SM,
            1,
            0,
            {
                "service_type": "WAP",
                "source_addr_ton": 5,
                "source_addr_npi": 0,
                "source_addr": "S" * 64,
                "dest_addr_ton": 1,
                "dest_addr_npi": 1,
                "destination_addr": "9" * 64,
                "esm_class": 0,
                "registered_delivery": 1,
                "data_coding": 8,
            },
            [(0x0424, "héllo".encode("utf-16-be"))],
        ),
    ),
    (
        "data_sm_resp",
        wire(C.DATA_SM_RESP, c("m1") + tlv(0x0425, b"\x01")),
        Pdu(C.DATA_SM_RESP, 1, 0, {"message_id": "m1"}, [(0x0425, b"\x01")]),
    ),
    (
        "query_sm",
        wire(C.QUERY_SM, c("m1") + u8(1, 1) + c("447700900123")),
        Pdu(
            C.QUERY_SM,
            1,
            0,
            {
                "message_id": "m1",
                "source_addr_ton": 1,
                "source_addr_npi": 1,
                "source_addr": "447700900123",
            },
        ),
    ),
    (
        "query_sm_resp",
        wire(C.QUERY_SM_RESP, c("m1") + c("230615103000000+") + u8(2, 0)),
        Pdu(
            C.QUERY_SM_RESP,
            1,
            0,
            {
                "message_id": "m1",
                "final_date": "230615103000000+",
                "message_state": 2,
                "error_code": 0,
            },
        ),
    ),
    (
        "cancel_sm",
        wire(C.CANCEL_SM, c("") + c("m1") + u8(1, 1) + c("4477") + u8(1, 1) + c("3361")),
        Pdu(
            C.CANCEL_SM,
            1,
            0,
            {
                "service_type": "",
                "message_id": "m1",
                "source_addr_ton": 1,
                "source_addr_npi": 1,
                "source_addr": "4477",
                "dest_addr_ton": 1,
                "dest_addr_npi": 1,
                "destination_addr": "3361",
            },
        ),
    ),
    ("cancel_sm_resp", wire(C.CANCEL_SM_RESP), Pdu(C.CANCEL_SM_RESP, 1)),
    (
        "replace_sm",
        wire(
            C.REPLACE_SM,
            c("m1") + u8(1, 1) + c("4477") + c("") + c("000001000000000R") + u8(1, 0, 5) + b"hello",
        ),
        Pdu(
            C.REPLACE_SM,
            1,
            0,
            {
                "message_id": "m1",
                "source_addr_ton": 1,
                "source_addr_npi": 1,
                "source_addr": "4477",
                "schedule_delivery_time": "",
                "validity_period": "000001000000000R",
                "registered_delivery": 1,
                "sm_default_msg_id": 0,
                "short_message": b"hello",
            },
        ),
    ),
    ("replace_sm_resp", wire(C.REPLACE_SM_RESP), Pdu(C.REPLACE_SM_RESP, 1)),
    (
        "submit_multi",
        wire(
            C.SUBMIT_MULTI,
            c("")
            + u8(1, 1)
            + c("4477")
            + u8(2)
            + u8(1, 1, 1)
            + c("3361")
            + u8(2)
            + c("friends")
            + u8(0, 0, 0)
            + c("")
            + c("")
            + u8(0, 0, 0, 0, 2)
            + b"hi",
        ),
        Pdu(
            C.SUBMIT_MULTI,
            1,
            0,
            {
                "service_type": "",
                "source_addr_ton": 1,
                "source_addr_npi": 1,
                "source_addr": "4477",
                "dest_addresses": [
                    {
                        "dest_flag": 1,
                        "dest_addr_ton": 1,
                        "dest_addr_npi": 1,
                        "destination_addr": "3361",
                    },
                    {"dest_flag": 2, "dl_name": "friends"},
                ],
                "esm_class": 0,
                "protocol_id": 0,
                "priority_flag": 0,
                "schedule_delivery_time": "",
                "validity_period": "",
                "registered_delivery": 0,
                "replace_if_present_flag": 0,
                "data_coding": 0,
                "sm_default_msg_id": 0,
                "short_message": b"hi",
            },
        ),
    ),
    (
        "submit_multi_resp",
        wire(
            C.SUBMIT_MULTI_RESP, c("m9") + u8(1) + u8(1, 1) + c("3361") + (0x0B).to_bytes(4, "big")
        ),
        Pdu(
            C.SUBMIT_MULTI_RESP,
            1,
            0,
            {
                "message_id": "m9",
                "unsuccess_smes": [
                    {
                        "dest_addr_ton": 1,
                        "dest_addr_npi": 1,
                        "destination_addr": "3361",
                        "error_status_code": 0x0B,
                    }
                ],
            },
        ),
    ),
    (
        "alert_notification",
        wire(
            C.ALERT_NOTIFICATION, u8(1, 1) + c("4477") + u8(0, 0) + c("esme") + tlv(0x0422, b"\x00")
        ),
        Pdu(
            C.ALERT_NOTIFICATION,
            1,
            0,
            {
                "source_addr_ton": 1,
                "source_addr_npi": 1,
                "source_addr": "4477",
                "esme_addr_ton": 0,
                "esme_addr_npi": 0,
                "esme_addr": "esme",
            },
            [(0x0422, b"\x00")],
        ),
    ),
]
IDS = [label for label, _, _ in VECTORS]
NEXT = wire(C.ENQUIRE_LINK, sequence=12345)


def test_vectors_cover_every_command():
    assert {int(p.command_id) for _, _, p in VECTORS} == {int(c) for c in CommandId}
    assert set(FIELDS) == {int(c) for c in CommandId}


@pytest.mark.parametrize(("label", "frame", "pdu"), VECTORS, ids=IDS)
def test_vector_decodes_and_encodes_exactly(label, frame, pdu):
    decoded = decode(frame)
    assert decoded == pdu
    assert encode(pdu) == frame
    assert encode(decoded) == frame
    assert decode(encode(pdu)) == pdu
    assert decoded.name == CommandId(pdu.command_id).name.lower()


@pytest.mark.parametrize(("label", "frame", "pdu"), VECTORS, ids=IDS)
def test_vector_through_the_framer(label, frame, pdu):
    whole = Framer()
    assert whole.feed(frame) == [frame]
    assert whole.buffered == 0

    framer = Framer()
    got = []
    for i in range(len(frame)):
        got += framer.feed(frame[i : i + 1])
        assert framer.buffered == (i + 1) % len(frame)
    assert got == [frame]

    trailing = Framer()
    assert trailing.feed(frame + NEXT[:5]) == [frame]
    assert trailing.buffered == 5
    assert trailing.feed(NEXT[5:]) == [NEXT]
    assert [decode(f) for f in Framer().feed(frame + NEXT + frame)] == [pdu, decode(NEXT), pdu]


# -- smpplib, the reference ESME client, as a second opinion -----------------------------
class FakeClient:
    """What smpplib's PDU classes need from a client: a sequence counter."""

    sequence = 0

    def next_sequence(self):
        self.sequence += 1
        return self.sequence


def smpplib_bytes(name: str, sequence: int, **fields) -> bytes:
    made = smpplib.smpp.make_pdu(name, client=FakeClient(), **fields)
    made.sequence = sequence
    return made.generate()


def smpplib_parse(frame: bytes):
    return smpplib.smpp.parse_pdu(frame, client=FakeClient())


def test_smpplib_bind_transceiver_decodes():
    frame = smpplib_bytes(
        "bind_transceiver",
        5,
        system_id="esme1",
        password="secret",
        system_type="",
        addr_ton=1,
        addr_npi=1,
    )
    pdu = decode(frame)
    assert pdu.command_id == C.BIND_TRANSCEIVER and pdu.sequence == 5 and pdu.status == 0
    assert pdu.params == {
        "system_id": "esme1",
        "password": "secret",
        "system_type": "",
        "interface_version": 0x34,
        "addr_ton": 1,
        "addr_npi": 1,
        "address_range": "",
    }
    assert encode(pdu) == frame


def test_smpplib_submit_sm_with_sar_decodes():
    frame = smpplib_bytes(
        "submit_sm",
        31,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="447700900123",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="33612345678",
        registered_delivery=1,
        data_coding=8,
        short_message="part one".encode("utf-16-be"),
        sar_msg_ref_num=0x1234,
        sar_total_segments=2,
        sar_segment_seqnum=1,
    )
    pdu = decode(frame)
    assert pdu.name == "submit_sm" and pdu.sequence == 31
    assert pdu.params["source_addr"] == "447700900123"
    assert pdu.params["destination_addr"] == "33612345678"
    assert pdu.params["registered_delivery"] == 1 and pdu.params["data_coding"] == 8
    assert pdu.params["short_message"] == "part one".encode("utf-16-be")
    assert pdu.params["schedule_delivery_time"] == "" and pdu.params["service_type"] == ""
    assert pdu.tlv_int(Tag.sar_msg_ref_num) == 0x1234
    assert pdu.tlv_int(Tag.SAR_TOTAL_SEGMENTS) == 2
    assert pdu.tlv_int(Tag.sar_segment_seqnum) == 1
    assert encode(pdu) == frame


def test_smpplib_submit_sm_with_message_payload_decodes():
    payload = b"A" * 400
    frame = smpplib_bytes(
        "submit_sm", 32, source_addr="4477", destination_addr="3361", message_payload=payload
    )
    pdu = decode(frame)
    assert pdu.params["short_message"] == b""
    assert pdu.tlv(Tag.message_payload) == payload
    assert encode(pdu) == frame


def test_smpplib_deliver_sm_receipt_decodes():
    frame = smpplib_bytes(
        "deliver_sm",
        8,
        source_addr="33612345678",
        destination_addr="447700900123",
        esm_class=4,
        short_message=RECEIPT_TEXT,
        receipted_message_id="abc123",
        message_state=2,
    )
    pdu = decode(frame)
    assert pdu.params["esm_class"] == 4 and pdu.params["short_message"] == RECEIPT_TEXT
    assert pdu.tlv(Tag.receipted_message_id) == b"abc123\0"
    assert pdu.tlv_str(Tag.receipted_message_id) == "abc123"
    assert pdu.tlv_int(Tag.message_state) == 2
    assert encode(pdu) == frame


@pytest.mark.parametrize(
    ("name", "fields", "expected"),
    [
        ("enquire_link", {}, Pdu(C.ENQUIRE_LINK, 3)),
        ("unbind", {}, Pdu(C.UNBIND, 3)),
        (
            "submit_sm_resp",
            {"message_id": "abc"},
            Pdu(C.SUBMIT_SM_RESP, 3, 0, {"message_id": "abc"}),
        ),
        (
            "bind_transceiver_resp",
            {"system_id": "SMSC", "sc_interface_version": 0x34},
            Pdu(C.BIND_TRANSCEIVER_RESP, 3, 0, {"system_id": "SMSC"}, [(0x0210, b"\x34")]),
        ),
    ],
)
def test_smpplib_simple_pdus_decode(name, fields, expected):
    frame = smpplib_bytes(name, 3, **fields)
    assert decode(frame) == expected
    assert encode(expected) == frame


def test_our_bind_transceiver_parses_in_smpplib():
    parsed = smpplib_parse(encode(Pdu(C.BIND_TRANSCEIVER, 11, 0, BIND)))
    assert parsed.command == "bind_transceiver" and parsed.sequence == 11
    assert parsed.system_id == b"esme1" and parsed.password == b"secret"
    assert parsed.system_type == b"VMA" and parsed.address_range == b"^44.*"
    assert (parsed.interface_version, parsed.addr_ton, parsed.addr_npi) == (0x34, 1, 1)


def test_our_submit_sm_with_tlvs_parses_in_smpplib():
    pdu = Pdu(C.SUBMIT_SM, 40, 0, SUBMIT_PARAMS | {"schedule_delivery_time": "230615103000004+"})
    pdu.set_tlv_int(Tag.sar_msg_ref_num, 0xBEEF)
    pdu.set_tlv_int(Tag.sar_total_segments, 3)
    pdu.set_tlv_int(Tag.sar_segment_seqnum, 2)
    parsed = smpplib_parse(encode(pdu))
    assert parsed.command == "submit_sm" and parsed.sequence == 40
    assert parsed.service_type == b"CMT"
    assert parsed.source_addr == b"447700900123" and parsed.destination_addr == b"33612345678"
    assert (
        parsed.esm_class == 0x40 and parsed.priority_flag == 1 and parsed.registered_delivery == 1
    )
    assert parsed.schedule_delivery_time == b"230615103000004+"
    assert parsed.validity_period == b"000001000000000R"
    assert parsed.short_message == SUBMIT_PARAMS["short_message"]
    assert (parsed.sar_msg_ref_num, parsed.sar_total_segments, parsed.sar_segment_seqnum) == (
        0xBEEF,
        3,
        2,
    )

    payload = Pdu(C.SUBMIT_SM, 41, 0, SUBMIT_PARAMS | {"short_message": b""})
    payload.set_tlv(Tag.message_payload, b"P" * 1000)
    parsed = smpplib_parse(encode(payload))
    assert parsed.message_payload == b"P" * 1000 and parsed.sm_length == 0


def test_our_deliver_sm_receipt_parses_in_smpplib():
    _, frame, _ = next(v for v in VECTORS if v[0] == "deliver_sm receipt")
    parsed = smpplib_parse(frame)
    assert parsed.command == "deliver_sm" and parsed.esm_class == 4
    assert parsed.short_message == RECEIPT_TEXT
    assert parsed.receipted_message_id == b"abc123"
    assert parsed.message_state == 2
    assert parsed.network_error_code == b"\x03\x00\x00"


@pytest.mark.parametrize(
    "pdu",
    [
        Pdu(C.ENQUIRE_LINK, 7),
        Pdu(C.UNBIND, 8),
        Pdu(C.SUBMIT_SM_RESP, 9, 0, {"message_id": "0f3c2a9e-1b7d"}),
        Pdu(C.SUBMIT_SM_RESP, 10, S.ESME_RTHROTTLED),
    ],
    ids=["enquire_link", "unbind", "submit_sm_resp", "submit_sm_resp error"],
)
def test_our_simple_pdus_parse_in_smpplib(pdu):
    parsed = smpplib_parse(encode(pdu))
    assert parsed.command == pdu.name
    assert (parsed.sequence, parsed.status) == (pdu.sequence, pdu.status)
    if "message_id" in pdu.params:
        assert parsed.message_id == pdu.params["message_id"].encode()


# -- violations, each with its exact status -----------------------------------------------
def submit_body(**overrides: bytes) -> bytes:
    parts = {
        "service_type": c(""),
        "source": u8(1, 1) + c("4477"),
        "dest": u8(1, 1) + c("3361"),
        "flags": u8(0, 0, 0),
        "schedule": c(""),
        "validity": c(""),
        "tail": u8(0, 0, 0, 0),
        "sm": u8(2) + b"hi",
    }
    parts.update(overrides)
    return b"".join(parts.values())


VIOLATIONS = [
    (
        "source_addr 21 chars",
        wire(C.SUBMIT_SM, submit_body(source=u8(1, 1) + c("1" * 21))),
        S.ESME_RINVSRCADR,
    ),
    (
        "destination_addr 21 chars",
        wire(C.SUBMIT_SM, submit_body(dest=u8(1, 1) + c("1" * 21))),
        S.ESME_RINVDSTADR,
    ),
    (
        "service_type 6 chars",
        wire(C.SUBMIT_SM, submit_body(service_type=c("ABCDEF"))),
        S.ESME_RINVSERTYP,
    ),
    (
        "schedule 10 chars",
        wire(C.SUBMIT_SM, submit_body(schedule=c("2306151030"))),
        S.ESME_RINVSCHED,
    ),
    (
        "schedule 17 chars",
        wire(C.SUBMIT_SM, submit_body(schedule=c("2306151030000000+"))),
        S.ESME_RINVSCHED,
    ),
    (
        "schedule 15 chars",
        wire(C.SUBMIT_SM, submit_body(schedule=c("230615103000000"))),
        S.ESME_RINVSCHED,
    ),
    ("validity 1 char", wire(C.SUBMIT_SM, submit_body(validity=c("R"))), S.ESME_RINVEXPIRY),
    ("sm_length 255", wire(C.SUBMIT_SM, submit_body(sm=u8(255) + b"x" * 255)), S.ESME_RINVMSGLEN),
    (
        "sm_length past the PDU",
        wire(C.SUBMIT_SM, submit_body(sm=u8(10) + b"hello")),
        S.ESME_RINVMSGLEN,
    ),
    ("source_addr without NUL", wire(C.SUBMIT_SM, c("") + u8(1, 1) + b"4477"), S.ESME_RINVSRCADR),
    ("service_type without NUL", wire(C.SUBMIT_SM, b"CMT"), S.ESME_RINVSERTYP),
    ("submit_sm empty body", wire(C.SUBMIT_SM), S.ESME_RINVCMDLEN),
    ("submit_sm ends before esm_class", wire(C.SUBMIT_SM, submit_body()[:15]), S.ESME_RINVCMDLEN),
    ("submit_sm ends before sm_length", wire(C.SUBMIT_SM, submit_body(sm=b"")), S.ESME_RINVCMDLEN),
    ("system_id 16 chars", wire(C.BIND_TRANSMITTER, c("s" * 16) + BIND_BODY[6:]), S.ESME_RINVSYSID),
    (
        "password 9 chars",
        wire(C.BIND_RECEIVER, c("esme1") + c("p" * 9) + BIND_BODY[13:]),
        S.ESME_RINVPASWD,
    ),
    (
        "system_type 13 chars",
        wire(C.BIND_TRANSCEIVER, c("a") + c("b") + c("t" * 13) + u8(0x34, 0, 0) + c("")),
        S.ESME_RINVSYSTYP,
    ),
    (
        "address_range 41 chars",
        wire(C.BIND_TRANSCEIVER, BIND_BODY[:-6] + c("a" * 41)),
        S.ESME_RINVPARLEN,
    ),
    ("bind system_id without NUL", wire(C.BIND_TRANSMITTER, b"esme"), S.ESME_RINVCMDLEN),
    ("bind password without NUL", wire(C.BIND_TRANSMITTER, c("esme") + b"secr"), S.ESME_RINVCMDLEN),
    ("bind address_range without NUL", wire(C.BIND_TRANSMITTER, BIND_BODY[:-1]), S.ESME_RINVCMDLEN),
    (
        "bind ends before interface_version",
        wire(C.BIND_TRANSMITTER, BIND_BODY[:17]),
        S.ESME_RINVCMDLEN,
    ),
    ("bind empty body", wire(C.BIND_TRANSCEIVER), S.ESME_RINVCMDLEN),
    ("outbind password without NUL", wire(C.OUTBIND, c("smsc") + b"pw"), S.ESME_RINVCMDLEN),
    ("bind resp system_id without NUL", wire(C.BIND_TRANSMITTER_RESP, b"SMSC"), S.ESME_RINVSYSID),
    ("submit_sm_resp message_id 65 chars", wire(C.SUBMIT_SM_RESP, c("m" * 65)), S.ESME_RINVMSGID),
    (
        "query_sm message_id 65 chars",
        wire(C.QUERY_SM, c("m" * 65) + u8(0, 0) + c("")),
        S.ESME_RINVMSGID,
    ),
    (
        "data_sm source_addr 65 chars",
        wire(C.DATA_SM, c("") + u8(0, 0) + c("s" * 65) + u8(0, 0) + c("") + u8(0, 0, 0)),
        S.ESME_RINVSRCADR,
    ),
    (
        "final_date 5 chars",
        wire(C.QUERY_SM_RESP, c("m") + c("23061") + u8(2, 0)),
        S.ESME_RINVPARLEN,
    ),
    (
        "submit_multi 0 dests",
        wire(C.SUBMIT_MULTI, c("") + u8(1, 1) + c("4477") + u8(0)),
        S.ESME_RINVNUMDESTS,
    ),
    (
        "submit_multi dest_flag 3",
        wire(C.SUBMIT_MULTI, c("") + u8(1, 1) + c("4477") + u8(1, 3)),
        S.ESME_RINVDESTFLAG,
    ),
    (
        "submit_multi dl_name 21 chars",
        wire(C.SUBMIT_MULTI, c("") + u8(1, 1) + c("4477") + u8(1, 2) + c("d" * 21)),
        S.ESME_RINVDLNAME,
    ),
    (
        "submit_multi dest address 21 chars",
        wire(C.SUBMIT_MULTI, c("") + u8(1, 1) + c("4477") + u8(1, 1, 1, 1) + c("1" * 21)),
        S.ESME_RINVDSTADR,
    ),
    (
        "submit_multi ends in dest list",
        wire(C.SUBMIT_MULTI, c("") + u8(1, 1) + c("4477") + u8(2, 1, 1, 1) + c("3361")),
        S.ESME_RINVCMDLEN,
    ),
    (
        "submit_multi_resp ends in error code",
        wire(C.SUBMIT_MULTI_RESP, c("m") + u8(1, 1, 1) + c("3361") + b"\0\0"),
        S.ESME_RINVCMDLEN,
    ),
    (
        "TLV length past the PDU",
        wire(C.SUBMIT_SM, submit_body() + struct.pack(">HH", 0x0424, 50) + b"x" * 10),
        S.ESME_RINVOPTPARSTREAM,
    ),
    (
        "partial TLV header",
        wire(C.SUBMIT_SM, submit_body() + b"\x02\x0c\x00"),
        S.ESME_RINVOPTPARSTREAM,
    ),
    ("junk after enquire_link", wire(C.ENQUIRE_LINK, b"\xde\xad"), S.ESME_RINVOPTPARSTREAM),
    (
        "junk after a whole TLV",
        wire(C.SUBMIT_SM, submit_body() + tlv(0x020E, b"\x02") + b"\x01"),
        S.ESME_RINVOPTPARSTREAM,
    ),
    (
        "sar_msg_ref_num of 1 octet",
        wire(C.SUBMIT_SM, submit_body() + tlv(0x020C, b"\x01")),
        S.ESME_RINVPARLEN,
    ),
    (
        "message_state of 2 octets",
        wire(C.DELIVER_SM, submit_body() + tlv(0x0427, b"\x00\x02")),
        S.ESME_RINVPARLEN,
    ),
    (
        "receipted_message_id of 66 octets",
        wire(C.DELIVER_SM, submit_body() + tlv(0x001E, b"r" * 65 + b"\0")),
        S.ESME_RINVPARLEN,
    ),
    (
        "network_error_code of 2 octets",
        wire(C.DELIVER_SM, submit_body() + tlv(0x0423, b"\x03\x00")),
        S.ESME_RINVPARLEN,
    ),
    ("unknown command id", wire(0x00000077, b"abc", sequence=99), S.ESME_RINVCMDID),
    ("unknown response id", wire(0x80000077), S.ESME_RINVCMDID),
]


@pytest.mark.parametrize(("label", "frame", "status"), VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_violation_gives_exact_status(label, frame, status):
    error = check(frame, status)
    assert error.sequence == struct.unpack_from(">I", frame, 12)[0]
    assert error.command_id == struct.unpack_from(">I", frame, 4)[0]
    assert isinstance(error, SmppError) and isinstance(error, GatewayError)


def test_boundaries_just_inside_the_limits_decode():
    body = submit_body(
        service_type=c("ABCDE"),
        source=u8(1, 1) + c("1" * 20),
        dest=u8(1, 1) + c("2" * 20),
        sm=u8(254) + b"z" * 254,
    )
    pdu = decode(wire(C.SUBMIT_SM, body))
    assert len(pdu.params["source_addr"]) == 20 and len(pdu.params["short_message"]) == 254
    assert decode(wire(C.SUBMIT_SM_RESP, c("m" * 64))).params["message_id"] == "m" * 64


def test_unknown_command_id_carries_its_header():
    error = check(wire(0x00000077, sequence=4242), S.ESME_RINVCMDID)
    assert (error.command_id, error.sequence) == (0x77, 4242)
    assert "0x00000077" in str(error)


def test_vendor_and_unknown_tlvs_survive_byte_for_byte():
    extras = (
        tlv(0x1400, bytes(range(256)))
        + tlv(0x3FFF, b"")
        + tlv(0x0999, b"\0\0\0")
        + tlv(0x1400, b"again")
    )
    frame = wire(C.SUBMIT_SM, SUBMIT_BODY + extras)
    pdu = decode(frame)
    assert pdu.tlvs == [
        (0x1400, bytes(range(256))),
        (0x3FFF, b""),
        (0x0999, b"\0\0\0"),
        (0x1400, b"again"),
    ]
    assert pdu.tlv(0x1400) == bytes(range(256))
    assert encode(pdu) == frame


def test_decode_refuses_a_frame_that_disagrees_with_its_length():
    with pytest.raises(FrameError) as info:
        decode(wire(C.ENQUIRE_LINK) + b"\0")
    assert info.value.status == S.ESME_RINVCMDLEN
    with pytest.raises(FrameError):
        decode(b"\0\0\0\x10\0\0")


# -- the framer ---------------------------------------------------------------------------
@pytest.mark.parametrize("length", [0xFFFFFFFF, 15, 0, 65537])
def test_framer_refuses_impossible_length_on_the_first_four_octets(length):
    framer = Framer()
    header = length.to_bytes(4, "big")
    assert framer.feed(header[:3]) == []
    with pytest.raises(FrameError) as info:
        framer.feed(header[3:])
    assert info.value.status == S.ESME_RINVCMDLEN and info.value.length == length
    assert framer.buffered == 0
    with pytest.raises(FrameError):  # the stream stays refused
        framer.feed(NEXT)


def test_framer_limit_is_configurable_and_inclusive():
    framer = Framer(max_length=100)
    frame = wire(C.SUBMIT_SM_RESP, c("m" * 83))
    assert len(frame) == 100
    assert framer.feed(frame) == [frame]
    with pytest.raises(FrameError):
        framer.feed((101).to_bytes(4, "big"))


def test_framer_hands_over_the_frames_before_a_bad_header():
    framer = Framer()
    with pytest.raises(FrameError) as info:
        framer.feed(NEXT + NEXT + b"\xff\xff\xff\xff" + b"\0" * 100)
    assert info.value.frames == [NEXT, NEXT]


def test_framer_keeps_one_partial_frame():
    framer = Framer()
    big = wire(C.SUBMIT_SM, SUBMIT_BODY + tlv(0x0424, b"x" * 5000))
    assert framer.feed(big[:3000]) == []
    assert framer.buffered == 3000
    assert framer.feed(big[3000:] + NEXT[:2]) == [big]
    assert framer.buffered == 2


# -- helpers --------------------------------------------------------------------------------
def test_response_carries_the_sequence_and_nulls():
    request = decode(VECTORS[12][1])
    answer = response(request, message_id="m-1")
    assert (answer.command_id, answer.sequence, answer.status) == (C.SUBMIT_SM_RESP, 77, 0)
    assert encode(answer) == wire(C.SUBMIT_SM_RESP, c("m-1"), sequence=77)
    assert response(Pdu(C.DELIVER_SM, 5)).params == {"message_id": ""}
    assert encode(response(Pdu(C.DELIVER_SM, 5))) == wire(C.DELIVER_SM_RESP, c(""), sequence=5)
    assert response(Pdu(C.ENQUIRE_LINK, 6)) == Pdu(C.ENQUIRE_LINK_RESP, 6)
    assert response(Pdu(C.SUBMIT_MULTI, 6)).params == {"message_id": "", "unsuccess_smes": []}


def test_error_response_has_an_empty_body():
    answer = response(Pdu(C.SUBMIT_SM, 3), S.ESME_RTHROTTLED)
    assert encode(answer) == wire(C.SUBMIT_SM_RESP, status=0x58, sequence=3)
    bind = response(Pdu(C.BIND_TRANSCEIVER, 1), S.ESME_RBINDFAIL)
    assert encode(bind) == wire(C.BIND_TRANSCEIVER_RESP, status=0x0D)


def test_no_response_for_responses_and_one_way_commands():
    for command_id in (C.OUTBIND, C.ALERT_NOTIFICATION, C.SUBMIT_SM_RESP, C.GENERIC_NACK, 0x77):
        with pytest.raises(ValueError, match="no response"):
            resp_of(command_id)
    assert resp_of(C.DATA_SM) == C.DATA_SM_RESP
    assert is_response(C.GENERIC_NACK) and not is_response(C.SUBMIT_SM)


def test_generic_nack():
    assert encode(generic_nack(5, S.ESME_RINVCMDID)) == wire(C.GENERIC_NACK, status=3, sequence=5)


def test_tlv_accessors():
    pdu = Pdu(C.SUBMIT_SM, 1, tlvs=[(0x020C, b"\x00\x01"), (0x1400, b"v"), (0x020C, b"\x00\x02")])
    assert pdu.tlv_int(Tag.sar_msg_ref_num) == 1 and pdu.tlv(Tag.message_payload) is None
    pdu.set_tlv_int(Tag.sar_msg_ref_num, 0xABCD)
    assert pdu.tlvs == [(0x020C, b"\xab\xcd"), (0x1400, b"v")]
    pdu.set_tlv_int(Tag.qos_time_to_live, 86400)
    assert pdu.tlv(Tag.qos_time_to_live) == (86400).to_bytes(4, "big")
    pdu.set_tlv(Tag.receipted_message_id, b"r1\0")
    assert pdu.tlv_str(Tag.receipted_message_id) == "r1"
    with pytest.raises(ValueError):
        pdu.set_tlv(Tag.sar_msg_ref_num, b"\x01")
    with pytest.raises(ValueError):
        pdu.set_tlv_int(Tag.message_payload, 1)
    with pytest.raises(ValueError):
        pdu.set_tlv_int(Tag.sar_total_segments, 256)


def test_repr_hides_the_password():
    text = repr(Pdu(C.BIND_TRANSMITTER, 1, 0, dict(BIND)))
    assert "secret" not in text and "bind_transmitter" in text and "esme1" in text


@pytest.mark.parametrize(
    ("pdu", "status"),
    [
        (Pdu(C.SUBMIT_SM, 1, 0, {"source_addr": "1" * 21}), S.ESME_RINVSRCADR),
        (Pdu(C.SUBMIT_SM, 1, 0, {"destination_addr": "€uro"}), S.ESME_RINVDSTADR),
        (Pdu(C.SUBMIT_SM, 1, 0, {"destination_addr": "12\x0034"}), S.ESME_RINVDSTADR),
        (Pdu(C.SUBMIT_SM, 1, 0, {"short_message": b"x" * 255}), S.ESME_RINVMSGLEN),
        (Pdu(C.SUBMIT_SM, 1, 0, {"validity_period": "000001"}), S.ESME_RINVEXPIRY),
        (Pdu(C.BIND_TRANSMITTER, 1, 0, {"password": "123456789"}), S.ESME_RINVPASWD),
        (Pdu(C.SUBMIT_MULTI, 1, 0, {"dest_addresses": []}), S.ESME_RINVNUMDESTS),
        (Pdu(C.SUBMIT_SM, 1, 0, {}, [(0x020E, b"\x01\x02")]), S.ESME_RINVPARLEN),
        (Pdu(0x77, 1), S.ESME_RINVCMDID),
    ],
)
def test_encode_refuses_what_the_peer_would_refuse(pdu, status):
    with pytest.raises(PduError) as info:
        encode(pdu)
    assert info.value.status == status


def test_encode_fills_missing_params_with_nulls():
    frame = encode(Pdu(C.SUBMIT_SM, 2, 0, {"destination_addr": "3361", "short_message": b"hi"}))
    assert frame == wire(
        C.SUBMIT_SM,
        c("")
        + u8(0, 0)
        + c("")
        + u8(0, 0)
        + c("3361")
        + u8(0, 0, 0)
        + c("")
        + c("")
        + u8(0, 0, 0, 0, 2)
        + b"hi",
        sequence=2,
    )


def test_encode_rejects_header_values_out_of_range():
    with pytest.raises(ValueError):
        encode(Pdu(C.ENQUIRE_LINK, 2**32))


# -- SMPP time (§7.1.1) --------------------------------------------------------------------
NOW = datetime(2024, 1, 31, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("230615103000000+", datetime(2023, 6, 15, 10, 30, tzinfo=UTC)),
        ("230615103000104+", datetime(2023, 6, 15, 9, 30, 0, 100_000, tzinfo=UTC)),
        ("230615103000908-", datetime(2023, 6, 15, 12, 30, 0, 900_000, tzinfo=UTC)),
        ("240101003000048+", datetime(2023, 12, 31, 12, 30, tzinfo=UTC)),
        ("000002030000000R", NOW + timedelta(days=2, hours=3)),
        ("000000000130000R", NOW + timedelta(minutes=1, seconds=30)),
        ("000100000000000R", datetime(2024, 2, 29, 12, tzinfo=UTC)),
        ("011300000000000R", datetime(2026, 2, 28, 12, tzinfo=UTC)),
    ],
)
def test_parse_time(text, expected):
    parsed = parse_time(text, NOW)
    assert parsed == expected and parsed.tzinfo is not None
    assert parsed.utcoffset() == timedelta(0)


def test_parse_time_relative_takes_naive_now_as_utc():
    assert parse_time("000000010000000R", NOW.replace(tzinfo=None)) == NOW + timedelta(hours=1)
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert parse_time("000000010000000R", paris) == NOW + timedelta(hours=1)


def test_parse_time_empty_is_none():
    assert parse_time("", NOW) is None


@pytest.mark.parametrize(
    "text",
    [
        "23061510300000+",
        "2306151030000000+",
        "230615103000049+",
        "231315103000000+",
        "230230103000000+",
        "230615243000000+",
        "230615103000000X",
        "230615103000000 ",
        "2306151030000 0+",
        "２30615103000000+",
    ],
)
def test_parse_time_refuses(text):
    with pytest.raises(TimeFormatError) as info:
        parse_time(text, NOW)
    assert isinstance(info.value, ValueError) and not isinstance(info.value, SmppError)


def test_format_time():
    assert format_time(datetime(2024, 2, 29, 23, 59, 58, 999_999, tzinfo=UTC)) == "240229235958000+"
    tokyo = datetime(2024, 3, 1, 8, 59, 58, tzinfo=timezone(timedelta(hours=9)))
    assert format_time(tokyo) == "240229235958000+"
    with pytest.raises(ValueError):
        format_time(datetime(2100, 1, 1, tzinfo=UTC))


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
    )
)
def test_time_round_trip(moment):
    assert parse_time(format_time(moment), NOW) == moment.replace(microsecond=0)


# -- property tests ---------------------------------------------------------------------------
def cstr_values(size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=size - 1)


def field_values(kind: int, size: int) -> st.SearchStrategy:
    if kind == U8:
        return st.integers(0, 255)
    if kind == CSTR:
        return cstr_values(size)
    if kind == TIME:
        return st.one_of(
            st.just(""),
            st.text(st.characters(min_codepoint=1, max_codepoint=255), min_size=16, max_size=16),
        )
    if kind == SM:
        return st.binary(max_size=254)
    address = st.fixed_dictionaries(
        {
            "dest_addr_ton": st.integers(0, 255),
            "dest_addr_npi": st.integers(0, 255),
            "destination_addr": cstr_values(21),
        }
    )
    if kind == DESTS:
        sme = address.map(lambda d: {"dest_flag": 1, **d})
        dl = cstr_values(21).map(lambda name: {"dest_flag": 2, "dl_name": name})
        return st.lists(st.one_of(sme, dl), min_size=1, max_size=6)
    assert kind == UNSUCCESS
    return st.lists(
        address.map(lambda d: {**d, "error_status_code": 0})
        | st.builds(
            lambda d, code: {**d, "error_status_code": code}, address, st.integers(0, 2**32 - 1)
        ),
        max_size=6,
    )


def known_tlv() -> st.SearchStrategy[tuple[int, bytes]]:
    def value(tag: int) -> st.SearchStrategy[tuple[int, bytes]]:
        lo, hi = TLV_LENGTHS[tag]
        return st.binary(min_size=lo, max_size=min(hi, 300)).map(lambda v: (tag, v))

    return st.sampled_from(sorted(TLV_LENGTHS)).flatmap(value)


tlv_lists = st.lists(
    st.one_of(known_tlv(), st.tuples(st.integers(0x1400, 0x3FFF), st.binary(max_size=40))),
    max_size=5,
)


@st.composite
def valid_pdus(draw) -> Pdu:
    command_id = draw(st.sampled_from(sorted(FIELDS)))
    tlvs = draw(tlv_lists)
    status = draw(st.sampled_from([0, 0, 0x58, 2**32 - 1]))
    sequence = draw(st.integers(0, 2**32 - 1))
    if is_response(command_id) and status and not tlvs and draw(st.booleans()):
        return Pdu(command_id, sequence, status)  # an error response without a body
    params = {name: draw(field_values(kind, size)) for name, kind, size, _ in FIELDS[command_id]}
    return Pdu(command_id, sequence, status, params, tlvs)


@given(valid_pdus())
@settings(max_examples=400)
def test_valid_pdus_round_trip(pdu):
    frame = encode(pdu)
    assert decode(frame) == pdu
    assert encode(decode(frame)) == frame
    assert Framer().feed(frame) == [frame]


def decode_all(chunks: list[bytes]) -> None:
    """Frame and decode; only our protocol errors may escape, and what decodes re-encodes."""
    framer = Framer(max_length=4096)
    try:
        for chunk in chunks:
            for frame in framer.feed(chunk):
                try:
                    pdu = decode(frame)
                except PduError:
                    continue
                assert encode(pdu) == frame
    except FrameError:
        pass


@given(st.lists(st.binary(max_size=300), max_size=8))
@settings(max_examples=400)
def test_random_bytes_only_raise_our_errors(chunks):
    decode_all(chunks)


@given(st.sampled_from(sorted(FIELDS)), st.binary(max_size=200), st.integers(0, 2**32 - 1))
@settings(max_examples=1500)
def test_random_bodies_only_raise_pdu_errors(command_id, body, status):
    frame = wire(command_id, body, status=status)
    try:
        pdu = decode(frame)
    except PduError as exc:
        assert exc.command_id == command_id and exc.status in Status.__members__.values()
        return
    assert encode(pdu) == frame  # whatever is accepted re-encodes byte for byte


@given(st.sampled_from([frame for _, frame, _ in VECTORS]), st.data())
@settings(max_examples=800)
def test_mutated_vectors_only_raise_our_errors(frame, data):
    mutated = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(16, max(16, len(mutated) - 1)))
        if index < len(mutated):
            mutated[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(16, len(mutated)))
    candidate = bytes(mutated[:cut])
    candidate = len(candidate).to_bytes(4, "big") + candidate[4:]
    decode_all([candidate])
    decode_all([bytes(mutated)])
