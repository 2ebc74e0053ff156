# Rules for long messages from carriers (issue 16): receipt request of joined parts, segments.
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.config import Numbering
from gateway.smpp.accept import Rules, read_submission
from gateway.smpp.codec import Pdu
from gateway.smpp.constants import CommandId, Tag
from gateway.smpp.dlr import joined_registered_delivery, wants_receipt
from gateway.smpp.storeops import PartTag, joined_fields
from gateway.smpp.text import Reassembler

NOW = datetime(2027, 1, 31, 23, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("parts", "joined"),
    [
        ((0x11, 0x00, 0x00), 0x11),  # Kannel: the first part asks, with intermediate notices
        ((0x00, 0x00, 0x01), 0x01),  # whichever part asks
        ((0x02, 0x01), 0x01),  # every final state over failures only
        ((0x00, 0x02, 0x00), 0x02),
        ((0x00, 0x00), 0x00),
        ((0x04, 0x08, 0x00), 0x0C),  # SME acknowledgements: any part's
    ],
)
def test_any_part_asking_for_a_receipt_asks_for_the_message(parts, joined) -> None:
    assert joined_registered_delivery(parts) == joined
    assert wants_receipt(joined, "delivered") == any(p & 3 == 1 for p in parts)
    assert wants_receipt(joined, "failed") == any(p & 3 for p in parts)


def test_joined_fields_take_the_first_accepted_part() -> None:
    later = NOW + timedelta(seconds=1.1)
    tags = [PartTag(20003, 0, later), PartTag(20002, 0x11, NOW), PartTag(20004, 0, later)]
    assert joined_fields(tags) == (0x11, NOW)


def test_the_reassembler_hands_back_each_parts_tag_in_seq_order() -> None:
    r = Reassembler(10, timedelta(minutes=5))
    assert r.join("k", 7, 3, 2, b"b", NOW, "two") is None
    assert r.join("k", 7, 3, 1, b"a", NOW, "one") is None
    assert r.join("k", 7, 3, 1, b"x", NOW, "again") is None  # a repeat keeps the first copy
    joined = r.join("k", 7, 3, 3, b"c", NOW, "three")
    assert joined is not None and (joined.payload, joined.tags) == (b"abc", ("one", "two", "three"))


def submission(data: bytes, data_coding: int, *, payload: bool, alphabet: str = "gsm") -> int:
    params = {
        "source_addr_ton": 5,
        "source_addr": "AsiaCell",
        "dest_addr_ton": 1,
        "destination_addr": "964111222333",
        "data_coding": data_coding,
        "short_message": b"" if payload else data,
    }
    pdu = Pdu(CommandId.SUBMIT_SM, 1, 0, params)
    if payload:
        pdu.set_tlv(Tag.message_payload, data)
    rules = Rules(Numbering(), default_alphabet=alphabet)  # type: ignore[arg-type]
    return read_submission(pdu, rules, NOW).segments


@pytest.mark.parametrize(
    ("text", "data_coding", "alphabet", "codec", "single", "per_part"),
    [
        ("a", 0, "gsm", "ascii", 160, 153),  # GSM 7-bit: 160, then 153 a part
        ("ج", 8, "gsm", "utf-16-be", 70, 67),  # UCS-2: 70, then 67
        ("é", 3, "gsm", "latin-1", 140, 134),  # Latin-1: 140, then 134
        ("é", 0, "latin1", "latin-1", 140, 134),  # data_coding 0 of a Latin-1 carrier
    ],
)
def test_segments_are_counted_from_the_text_in_short_message_and_message_payload(
    text, data_coding, alphabet, codec, single, per_part
) -> None:
    for length, segments in ((single, 1), (single + 1, 2), (2 * per_part + 1, 3)):
        data = (text * length).encode(codec)
        counted = [
            submission(data, data_coding, payload=payload, alphabet=alphabet)
            for payload in ((False, True) if len(data) <= 254 else (True,))
        ]
        assert counted == [segments] * len(counted), (length, counted)
