# Tests of gateway/smpp/dlr.py: which outcomes a carrier hears of, and the receipt it gets.
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.smpp.codec import decode, encode
from gateway.smpp.constants import Tag
from gateway.smpp.dlr import receipt_pdu, wants_receipt
from gateway.smpp.esme import is_receipt, read_receipt
from gateway.smpp.receipt import MESSAGE_STATE

T = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("mode", "state", "wanted"),
    [
        (0, "delivered", False),
        (1, "delivered", True),
        (1, "failed", True),
        (2, "delivered", False),
        (2, "expired", True),
        (3, "failed", False),
        (0x11, "delivered", True),  # other bits do not matter
    ],
)
def test_registered_delivery_modes(mode, state, wanted):
    assert wants_receipt(mode, state) is wanted


@pytest.mark.parametrize(
    ("state", "stat"),
    [
        ("delivered", "DELIVRD"),
        ("failed", "UNDELIV"),
        ("expired", "EXPIRED"),
        ("rejected", "REJECTD"),
    ],
)
def test_receipt_reads_back_with_our_own_esme_reader(state, stat):
    pdu = decode(
        encode(
            receipt_pdu(
                message_id="4711",
                source="AsiaCell",
                source_ton=5,
                destination="964111222333",
                state=state,
                err=0 if state == "delivered" else 480,
                submit_date=T,
                done_date=T,
                text="Your code is 1234",
            )
        )
    )
    assert is_receipt(pdu)
    assert (pdu.params["source_addr"], pdu.params["destination_addr"]) == (
        "964111222333",
        "AsiaCell",
    )
    assert pdu.params["dest_addr_ton"] == 5
    receipt = read_receipt(pdu, T)
    assert (receipt.message_id, receipt.stat) == ("4711", stat)
    assert pdu.tlv_int(Tag.message_state) == MESSAGE_STATE[stat]
    assert pdu.tlv_str(Tag.receipted_message_id) == "4711"
    if state == "delivered":
        assert receipt.dlvrd == 1 and pdu.tlv(Tag.network_error_code) is None
    else:
        assert receipt.err == 480 and pdu.tlv(Tag.network_error_code) == b"\x03\x01\xe0"


def test_a_receipt_is_ascii_whatever_the_text():
    """data_coding 0 means GSM for one carrier and Latin-1 for another: the receipt is ASCII,
    which reads the same in both (the excerpt of an Arabic text becomes '?')."""
    pdu = receipt_pdu(
        message_id="4711", source="AsiaCell", source_ton=5, destination="964111222333",
        state="delivered", err=0, submit_date=T, done_date=T, text="رمز 4711 Grüße",
    )  # fmt: skip
    body = pdu.params["short_message"]
    assert body.isascii() and b"stat:DELIVRD" in body
    assert body.endswith(b"text:??? 4711 Gr??e")
