"""Delivery receipt text (SMPP 3.4 Appendix B), message states and message ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp.constants import Status
from gateway.smpp.receipt import (
    MESSAGE_STATE,
    Receipt,
    ReceiptError,
    format_message_id,
    format_receipt,
    parse_message_id,
    parse_receipt,
)
from gateway.smpp.text import TextError

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SUBMIT = datetime(2024, 4, 30, 12, 0, tzinfo=UTC)
DONE = datetime(2024, 4, 30, 12, 1, tzinfo=UTC)


def receipt(**changes: object) -> Receipt:
    fields: dict[str, object] = {
        "message_id": "1f2e3d",
        "sub": 1,
        "dlvrd": 1,
        "submit_date": SUBMIT,
        "done_date": DONE,
        "stat": "DELIVRD",
        "err": 0,
        "text": "Hello world",
    }
    return Receipt(**(fields | changes))  # type: ignore[arg-type]


def test_message_states_are_those_of_5_2_28():
    assert MESSAGE_STATE == {
        "ENROUTE": 1,
        "DELIVRD": 2,
        "EXPIRED": 3,
        "DELETED": 4,
        "UNDELIV": 5,
        "ACCEPTD": 6,
        "UNKNOWN": 7,
        "REJECTD": 8,
    }


def test_format_receipt():
    assert format_receipt(receipt()) == (
        "id:1f2e3d sub:001 dlvrd:001 submit date:2404301200 done date:2404301201"
        " stat:DELIVRD err:000 text:Hello world"
    )


def test_format_keeps_twenty_characters_and_writes_utc():
    cet = timezone(timedelta(hours=2))
    r = receipt(
        text="x" * 30,
        submit_date=datetime(2024, 4, 30, 14, 0, tzinfo=cet),
        done_date=datetime(2024, 4, 30, 12, 1),  # naive: taken as UTC
        stat="UNDELIV",
        err=34,
    )
    assert format_receipt(r) == (
        "id:1f2e3d sub:001 dlvrd:001 submit date:2404301200 done date:2404301201"
        " stat:UNDELIV err:034 text:" + "x" * 20
    )


def test_round_trip():
    r = receipt()
    assert parse_receipt(format_receipt(r), NOW) == r


receipts = st.builds(
    Receipt,
    message_id=st.text("0123456789abcdefABCDEF-_.", min_size=1, max_size=64),
    sub=st.integers(0, 999),
    dlvrd=st.integers(0, 999),
    submit_date=st.datetimes(datetime(2000, 1, 1), datetime(2060, 12, 31)).map(
        lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)
    ),
    done_date=st.datetimes(datetime(2000, 1, 1), datetime(2060, 12, 31)).map(
        lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)
    ),
    stat=st.sampled_from(sorted(MESSAGE_STATE)),
    err=st.integers(0, 999),
    text=st.text(st.characters(exclude_characters="\x00"), max_size=20),
)


@given(receipts)
def test_round_trip_property(r):
    assert parse_receipt(format_receipt(r), datetime(2030, 1, 1, tzinfo=UTC)) == r


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # the Appendix B example with capitalised Text and underscores in the date keys
            "id:0123456789 sub:001 dlvrd:001 submit_date:2404301200 done_date:2404301201 "
            "stat:DELIVRD err:000 Text:Your code is 1234",
            receipt(message_id="0123456789", text="Your code is 1234"),
        ),
        (  # 12-digit dates with seconds, no text, an extra field, upper-case keys
            "ID:a1b2c3 SUB:001 DLVRD:000 SUBMIT DATE:240430120005 DONE DATE:240430120130 "
            "STAT:UNDELIV ERR:034 IMSI:310260123456789",
            receipt(
                message_id="a1b2c3",
                dlvrd=0,
                submit_date=SUBMIT.replace(second=5),
                done_date=DONE.replace(second=30),
                stat="UNDELIV",
                err=34,
                text="",
            ),
        ),
        (  # no sub/dlvrd, one-digit err, lower-case long-form state, trailing NUL
            "id:77 submit date:2404301200 done date:2404301201 stat:delivered err:0 text:hi\x00",
            receipt(message_id="77", sub=0, dlvrd=0, text="hi"),
        ),
        (  # 14-digit dates, hex err, text that looks like fields
            "id:abc-123 sub:1 dlvrd:1 submit date:20240430120000 done date:20240430120100 "
            "stat:REJECTD err:0A3 text:stat:DELIVRD err:000",
            receipt(message_id="abc-123", stat="REJECTD", err=0xA3, text="stat:DELIVRD err:000"),
        ),
        (  # only id and stat: dates default to now
            "id:9 stat:ENROUTE",
            receipt(
                message_id="9",
                sub=0,
                dlvrd=0,
                submit_date=NOW,
                done_date=NOW,
                stat="ENROUTE",
                text="",
            ),
        ),
        (  # a two-digit year in the last century
            "id:9 sub:001 dlvrd:001 submit date:9912311200 done date:0001010000 stat:EXPIRED "
            "err:000 text:",
            receipt(
                message_id="9",
                submit_date=datetime(1999, 12, 31, 12, 0, tzinfo=UTC),
                done_date=datetime(2000, 1, 1, tzinfo=UTC),
                stat="EXPIRED",
                text="",
            ),
        ),
    ],
    ids=["appendix-b", "seconds-extra-field", "minimal", "four-digit-year", "id-stat", "y2k"],
)
def test_real_world_variants(text, expected):
    assert parse_receipt(text, NOW) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello world",
        "sub:001 dlvrd:001 stat:DELIVRD",  # no id
        "id: stat:DELIVRD",  # empty id
        "id:1 sub:001",  # no stat
        "id:1 stat:DONE",  # unknown state
        "id:1 stat:DELIVRD sub:abc",
        "id:1 stat:DELIVRD sub:1000",
        "id:1 stat:DELIVRD err:xyz",
        "id:1 stat:DELIVRD submit date:2413011200",  # month 13
        "id:1 stat:DELIVRD done date:24043012",  # 8 digits
        "id:1 stat:DELIVRD done date:２４０４３０１２００",  # full-width digits
        "id:" + "x" * 65 + " stat:DELIVRD",
        "id:1 stat:DELIVRD text:" + "x" * 1024,  # longer than MAX_RECEIPT
    ],
)
def test_garbage_is_a_receipt_error(text):
    with pytest.raises(ReceiptError) as exc:
        parse_receipt(text, NOW)
    assert isinstance(exc.value, TextError)
    assert exc.value.status == Status.ESME_RX_P_APPN


def test_receipt_rejects_bad_values():
    for changes in ({"stat": "DELIVERED"}, {"sub": 1000}, {"err": -1}, {"message_id": "a b"}):
        with pytest.raises(ValueError):
            receipt(**changes)


@pytest.mark.parametrize(
    ("n", "dec", "hex_"),
    [(0, "0", "0"), (255, "255", "ff"), (2**64 - 1, "18446744073709551615", "ffffffffffffffff")],
)
def test_message_ids(n, dec, hex_):
    assert format_message_id(n, "dec") == dec
    assert format_message_id(n, "hex") == hex_
    assert parse_message_id(dec, "dec") == n
    assert parse_message_id(hex_, "hex") == n
    assert parse_message_id(hex_.upper(), "hex") == n


@given(st.integers(0, 2**64 - 1), st.sampled_from(["dec", "hex"]))
def test_message_id_round_trip(n, style):
    assert parse_message_id(format_message_id(n, style), style) == n


def test_message_id_out_of_range():
    for n in (-1, 2**64):
        with pytest.raises(ValueError):
            format_message_id(n, "hex")


@pytest.mark.parametrize(
    ("text", "style"),
    [
        ("", "dec"),
        ("-1", "dec"),
        (" 12", "dec"),
        ("1_000", "dec"),
        ("١٢", "dec"),  # Arabic-Indic digits
        ("18446744073709551616", "dec"),
        ("1" * 21, "dec"),
        ("ff", "dec"),
        ("0x1f", "hex"),
        ("g", "hex"),
        ("1" * 17, "hex"),
        ("x" * 10_000, "hex"),
    ],
)
def test_message_id_garbage(text, style):
    with pytest.raises(ReceiptError) as exc:
        parse_message_id(text, style)
    assert exc.value.status == Status.ESME_RINVMSGID
