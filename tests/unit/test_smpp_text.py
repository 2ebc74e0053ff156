"""Short-message text: GSM 03.38 / UCS-2 / Latin-1, UDH, split and reassembly."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smpp.constants import Status
from gateway.smpp.text import (
    GSM_BASIC,
    GSM_EXTENSION,
    Reassembler,
    TextError,
    Udh,
    build_udh,
    choose_coding,
    count_parts,
    decode_text,
    encode_text,
    is_binary,
    parse_udh,
    split,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

# 3GPP TS 23.038 §6.2.1 as Unicode code points (unicode.org GSM0338.TXT); every octet not
# listed is ASCII itself. Kept independent of the module's own table on purpose.
TS_23_038_BASIC = {
    0x00: 0x0040, 0x01: 0x00A3, 0x02: 0x0024, 0x03: 0x00A5, 0x04: 0x00E8, 0x05: 0x00E9,
    0x06: 0x00F9, 0x07: 0x00EC, 0x08: 0x00F2, 0x09: 0x00C7, 0x0A: 0x000A, 0x0B: 0x00D8,
    0x0C: 0x00F8, 0x0D: 0x000D, 0x0E: 0x00C5, 0x0F: 0x00E5, 0x10: 0x0394, 0x11: 0x005F,
    0x12: 0x03A6, 0x13: 0x0393, 0x14: 0x039B, 0x15: 0x03A9, 0x16: 0x03A0, 0x17: 0x03A8,
    0x18: 0x03A3, 0x19: 0x0398, 0x1A: 0x039E, 0x1C: 0x00C6, 0x1D: 0x00E6, 0x1E: 0x00DF,
    0x1F: 0x00C9, 0x24: 0x00A4, 0x40: 0x00A1, 0x5B: 0x00C4, 0x5C: 0x00D6, 0x5D: 0x00D1,
    0x5E: 0x00DC, 0x5F: 0x00A7, 0x60: 0x00BF, 0x7B: 0x00E4, 0x7C: 0x00F6, 0x7D: 0x00F1,
    0x7E: 0x00FC, 0x7F: 0x00E0,
}  # fmt: skip
TS_23_038_EXTENSION = {
    0x0A: 0x000C, 0x14: 0x005E, 0x28: 0x007B, 0x29: 0x007D, 0x2F: 0x005C,
    0x3C: 0x005B, 0x3D: 0x007E, 0x3E: 0x005D, 0x40: 0x007C, 0x65: 0x20AC,
}  # fmt: skip
BASIC_CHARS = "".join(
    chr(TS_23_038_BASIC.get(octet, octet)) for octet in range(128) if octet != 0x1B
)
EXTENSION_CHARS = "".join(chr(cp) for cp in TS_23_038_EXTENSION.values())


def status_of(exc_info: pytest.ExceptionInfo[TextError]) -> int:
    return exc_info.value.status


def air_octets(part: bytes, data_coding: int, udhi: bool) -> int:
    """Octets the part takes on the air: GSM septets are packed, a UDH padded to a septet."""
    if data_coding != 0:
        return len(part)
    udh_len = part[0] + 1 if udhi else 0
    septets = math.ceil(udh_len * 8 / 7) + len(part) - udh_len
    return math.ceil(septets * 7 / 8)


def reassemble(parts: list[bytes], shuffle_seed: int = 0) -> bytes:
    if len(parts) == 1:
        return parts[0]
    order = list(parts)
    random.Random(shuffle_seed).shuffle(order)
    box = Reassembler(max_pending=4, timeout=timedelta(minutes=5))
    whole = None
    for part in order:
        udh, payload = parse_udh(part)
        assert udh.concat is not None and whole is None
        whole = box.add(("carrier", "src", "dst"), *udh.concat, payload, T0)
    assert whole is not None and len(box) == 0
    return whole


# --- GSM 03.38 -----------------------------------------------------------------------------


def test_module_tables_match_ts_23_038():
    assert GSM_BASIC.replace("\x1b", "") == BASIC_CHARS
    assert {k: ord(v) for k, v in GSM_EXTENSION.items()} == TS_23_038_EXTENSION


@pytest.mark.parametrize("octet", [o for o in range(128) if o != 0x1B])
def test_every_basic_octet_decodes_and_encodes_back(octet):
    char = chr(TS_23_038_BASIC.get(octet, octet))
    assert decode_text(bytes([octet]), 0) == char
    assert encode_text(char, 0) == bytes([octet])


@pytest.mark.parametrize(("code", "cp"), sorted(TS_23_038_EXTENSION.items()))
def test_every_extension_char_is_an_escape_pair(code, cp):
    assert decode_text(bytes([0x1B, code]), 0) == chr(cp)
    assert encode_text(chr(cp), 0) == bytes([0x1B, code])


def test_whole_tables_round_trip():
    text = BASIC_CHARS + EXTENSION_CHARS
    data = encode_text(text, 0)
    assert len(data) == 127 + 2 * 10
    assert decode_text(data, 0) == text
    assert choose_coding(text) == 0
    assert count_parts(text, 0) == 1


def test_escape_without_extension_char_shows_the_basic_char():
    # TS 23.038 §6.2.1.1: unknown escaped code -> basic char; ESC ESC -> space.
    assert decode_text(b"\x1bA\x1b\x1bB\x1b\r", 0) == "A B\r"


def test_gsm_errors():
    with pytest.raises(TextError) as exc:
        decode_text(b"abc\x1b", 0)
    assert status_of(exc) == Status.ESME_RINVMSGLEN
    with pytest.raises(TextError) as exc:
        decode_text(b"\x1b\x1b\x1b", 0)
    assert status_of(exc) == Status.ESME_RINVMSGLEN
    with pytest.raises(TextError) as exc:
        decode_text(b"ab\x80", 0)
    assert status_of(exc) == Status.ESME_RSUBMITFAIL
    assert "0x80 at 2" in exc.value.reason
    for text in ("ç", "\x1b", "中"):
        with pytest.raises(TextError) as exc:
            encode_text(text, 0)
        assert status_of(exc) == Status.ESME_RSUBMITFAIL


def test_data_coding_zero_can_be_latin1():
    assert decode_text(b"caf\xe9", 0, default_alphabet="latin1") == "café"
    assert encode_text("café", 0, default_alphabet="latin1") == b"caf\xe9"
    assert decode_text(b"caf\x05", 0) == "café"


def test_other_alphabets():
    assert decode_text(b"hello", 1) == "hello"
    assert decode_text(b"\xfc", 3) == "ü"
    assert decode_text("Привет".encode("iso8859-5"), 6) == "Привет"
    assert decode_text("שלום".encode("iso8859-8"), 7) == "שלום"
    with pytest.raises(TextError) as exc:
        decode_text(b"\xfc", 1)
    assert status_of(exc) == Status.ESME_RSUBMITFAIL
    with pytest.raises(TextError) as exc:
        encode_text("€", 3)
    assert status_of(exc) == Status.ESME_RSUBMITFAIL


@pytest.mark.parametrize("dc", [0xC0, 0xCF, 0xD0, 0xDF, 0xF0, 0xF1, 0xF2, 0xF3])
def test_gsm_coding_groups(dc):
    assert decode_text(b"\x1be5", dc) == "€5"
    assert not is_binary(dc)


def test_ucs2_message_waiting_group():
    assert decode_text("Ω".encode("utf-16-be"), 0xE1) == "Ω"


@pytest.mark.parametrize("dc", [2, 4, 0xF4, 0xF5, 0xF6, 0xF7])
def test_binary_codings(dc):
    assert is_binary(dc)
    with pytest.raises(TextError) as exc:
        decode_text(b"\x00\x01", dc)
    assert status_of(exc) == Status.ESME_RSUBMITFAIL
    assert split(b"\xff" * 300, dc, ref=1)[0][:6] == b"\x05\x00\x03\x01\x03\x01"


@pytest.mark.parametrize("dc", [5, 9, 0x0A, 0x0D, 0x0E, 0x0F, 0x40, 0xBF])
def test_unsupported_data_coding(dc):
    assert not is_binary(dc)
    with pytest.raises(TextError) as exc:
        decode_text(b"x", dc)
    assert status_of(exc) == Status.ESME_RSUBMITFAIL
    with pytest.raises(TextError):
        encode_text("x", dc)


def test_choose_coding():
    assert choose_coding("Hello {world} €5") == 0
    assert choose_coding("ΔΦΓ") == 0
    assert choose_coding("ç") == 8  # only capital Ç is in GSM 03.38
    assert choose_coding("مرحبا") == 8
    assert choose_coding("😀") == 8
    assert choose_coding("café", "latin1") == 0
    assert choose_coding("€", "latin1") == 8  # GSM but not Latin-1
    assert choose_coding("ÿ", "latin1") == 8  # Latin-1 but not GSM


def test_bounded_input():
    with pytest.raises(TextError) as exc:
        decode_text(b"a" * 65_536, 0)
    assert status_of(exc) == Status.ESME_RINVMSGLEN
    with pytest.raises(TextError) as exc:
        encode_text("a" * 65_536, 0)
    assert status_of(exc) == Status.ESME_RINVMSGLEN


# --- UCS-2 ---------------------------------------------------------------------------------


def test_arabic_ucs2():
    text = "مرحبا بالعالم"
    data = encode_text(text, 8)
    assert data[:4] == b"\x06\x45\x06\x31"
    assert len(data) == 2 * len(text)
    assert decode_text(data, 8) == text


def test_emoji_is_a_surrogate_pair():
    assert encode_text("hi 😀", 8) == b"\x00h\x00i\x00 \xd8\x3d\xde\x00"
    assert decode_text(b"\xd8\x3d\xde\x00", 8) == "😀"


def test_ucs2_errors():
    with pytest.raises(TextError) as exc:
        decode_text(b"\x00a\x00", 8)
    assert status_of(exc) == Status.ESME_RINVMSGLEN
    with pytest.raises(TextError) as exc:
        decode_text(b"\x00a\xd8\x3d", 8)  # ends inside a surrogate pair
    assert status_of(exc) == Status.ESME_RINVMSGLEN
    with pytest.raises(TextError) as exc:
        decode_text(b"\xde\x00\x00a", 8)  # lone low surrogate
    assert status_of(exc) == Status.ESME_RSUBMITFAIL
    with pytest.raises(TextError) as exc:
        encode_text("\ud83d", 8)
    assert status_of(exc) == Status.ESME_RSUBMITFAIL


def test_emoji_split_across_parts_by_another_smsc():
    data = encode_text("ab😀cd", 8)
    first, second = data[:6], data[6:]  # the cut falls between the two surrogates
    for part in (first, second):
        with pytest.raises(TextError):
            decode_text(part, 8)
    box = Reassembler(max_pending=1, timeout=timedelta(seconds=60))
    assert box.add("k", 9, 2, 2, second, T0) is None
    assert decode_text(box.add("k", 9, 2, 1, first, T0) or b"", 8) == "ab😀cd"


# --- UDH -----------------------------------------------------------------------------------


def test_parse_udh_8_and_16_bit_refs():
    udh, rest = parse_udh(b"\x05\x00\x03\x2a\x03\x02hello")
    assert udh == Udh(concat=(0x2A, 3, 2)) and rest == b"hello"
    udh, rest = parse_udh(b"\x06\x08\x04\x12\x34\x02\x01x")
    assert udh == Udh(concat=(0x1234, 2, 1), ref16=True) and rest == b"x"


def test_other_ies_are_kept_raw_in_order():
    data = b"\x0d\x05\x04\x0b\x84\x23\xf0\x00\x03\x07\x02\x01\x70\x00" + b"payload"
    udh, rest = parse_udh(data)
    assert udh.concat == (7, 2, 1)
    assert udh.ies == ((0x05, b"\x0b\x84\x23\xf0"), (0x70, b""))
    assert rest == b"payload"
    assert parse_udh(build_udh(udh) + rest) == (udh, rest)


def test_last_concat_ie_counts_and_empty_udh():
    udh, _ = parse_udh(b"\x0a\x00\x03\x01\x02\x01\x00\x03\x09\x04\x03")
    assert udh.concat == (9, 4, 3)
    assert parse_udh(b"\x00abc") == (Udh(), b"abc")


def test_build_udh():
    assert build_udh(Udh(concat=(0x2A, 3, 1))) == b"\x05\x00\x03\x2a\x03\x01"
    assert build_udh(Udh(concat=(0x1234, 3, 1))) == b"\x06\x08\x04\x12\x34\x03\x01"
    assert build_udh(Udh(concat=(5, 3, 1), ref16=True)) == b"\x06\x08\x04\x00\x05\x03\x01"
    for bad in (Udh(concat=(1, 2, 3)), Udh(ies=((0x00, b"123"),)), Udh(ies=((0x70, b"x" * 200),))):
        with pytest.raises(ValueError):
            build_udh(bad)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", Status.ESME_RINVMSGLEN),
        (b"\x05\x00\x03\x01", Status.ESME_RINVMSGLEN),  # UDHL past the end
        (b"\x02\x00", Status.ESME_RINVMSGLEN),  # UDHL past the end
        (b"\x01\x00x", Status.ESME_RINVMSGLEN),  # IE header cut by the UDH
        (b"\x03\x70\x05\x00abcdef", Status.ESME_RINVMSGLEN),  # IE past the UDH
        (b"\x04\x00\x02\x01\x02", Status.ESME_RINVESMCLASS),  # concat IE of 2 octets
        (b"\x05\x00\x03\x01\x00\x00", Status.ESME_RINVESMCLASS),  # total 0
        (b"\x05\x00\x03\x01\x02\x00", Status.ESME_RINVESMCLASS),  # seq 0
        (b"\x05\x00\x03\x01\x02\x03", Status.ESME_RINVESMCLASS),  # seq > total
        (b"\x06\x08\x04\x00\x01\x02\x03", Status.ESME_RINVESMCLASS),  # 16-bit, seq > total
    ],
)
def test_udh_errors(data, status):
    with pytest.raises(TextError) as exc:
        parse_udh(data)
    assert status_of(exc) == status


@given(st.binary(max_size=300))
def test_parse_udh_raises_only_text_error(data):
    try:
        udh, rest = parse_udh(data)
    except TextError as exc:
        assert exc.status in (Status.ESME_RINVMSGLEN, Status.ESME_RINVESMCLASS)
    else:
        assert len(rest) <= len(data) - 1
        if udh.concat:
            assert 1 <= udh.concat[2] <= udh.concat[1]


@given(st.binary(max_size=300), st.integers(0, 255))
def test_decode_text_raises_only_text_error(data, dc):
    try:
        decode_text(data, dc)
    except TextError as exc:
        assert exc.status in (Status.ESME_RINVMSGLEN, Status.ESME_RSUBMITFAIL)


# --- split ---------------------------------------------------------------------------------


def test_gsm_split_limits():
    assert split("a" * 160, 0, ref=1) == [b"a" * 160]
    parts = split("a" * 161, 0, ref=1)
    assert parts == [
        b"\x05\x00\x03\x01\x02\x01" + b"a" * 153,
        b"\x05\x00\x03\x01\x02\x02" + b"a" * 8,
    ]
    assert count_parts("a" * 153 * 3, 0) == 3
    assert count_parts("a" * (153 * 3 + 1), 0) == 4
    assert count_parts("€" * 80, 0) == 1  # 160 septets
    assert count_parts("€" * 80 + "a", 0) == 2


def test_gsm_split_never_cuts_an_escape_pair():
    text = "a" * 152 + "€" + "b" * 10
    parts = split(text, 0, ref=3)
    assert parts[0][6:] == b"a" * 152  # the pair moved whole into part 2
    assert parts[1][6:8] == b"\x1be"
    assert decode_text(reassemble(parts), 0) == text


def test_ucs2_split_limits_and_surrogates():
    assert len(split("ж" * 70, 8, ref=1)) == 1
    parts = split("ж" * 71, 8, ref=1)
    assert [len(p) for p in parts] == [6 + 134, 6 + 8]
    text = "ж" * 66 + "😀" + "ж" * 10  # the emoji would straddle code units 67 and 68
    parts = split(text, 8, ref=2)
    assert parts[0][6:] == "ж".encode("utf-16-be") * 66
    assert decode_text(reassemble(parts), 8) == text


def test_eight_bit_split_limits():
    assert len(split("é" * 140, 3, ref=1)) == 1
    parts = split("é" * 141, 3, ref=1)
    assert [len(p) for p in parts] == [140, 13]


def test_max_single_overrides_the_single_part_limit():
    assert split("a" * 200, 0, ref=1, max_single=254) == [b"a" * 200]
    assert count_parts("a" * 20, 0, max_single=10) == 1  # still within one 153-septet part
    with pytest.raises(ValueError):
        split("a", 0, ref=1, max_single=255)


def test_split_limits():
    with pytest.raises(ValueError):
        split("a", 0, ref=256)
    with pytest.raises(TextError) as exc:
        split("a" * (153 * 255 + 1), 0, ref=1)
    assert status_of(exc) == Status.ESME_RINVMSGLEN
    assert count_parts("a" * 153 * 255, 0) == 255
    with pytest.raises(TextError) as exc:
        split(b"\x00a\x00", 8, ref=1)
    assert status_of(exc) == Status.ESME_RINVMSGLEN


@pytest.mark.parametrize(
    ("text", "dc"),
    [
        ("Hello {world} [€] ~^|\\ " * 12, 0),  # 384 septets
        ("مرحبا بالعالم 😀 " * 10, 8),  # 180 code units
    ],
    ids=["gsm", "ucs2"],
)
def test_three_part_messages_reassemble_in_any_order(text, dc):
    parts = split(text, dc, ref=77)
    assert len(parts) == 3
    for seed in range(6):
        assert decode_text(reassemble(parts, seed), dc) == text


gsm_text = st.text(alphabet=BASIC_CHARS + EXTENSION_CHARS, max_size=800)
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=400)


@settings(max_examples=200)
@given(st.one_of(gsm_text, any_text), st.integers(0, 255), st.integers(0, 1000))
def test_split_then_reassemble_is_identity(text, ref, seed):
    dc = choose_coding(text)
    parts = split(text, dc, ref=ref)
    assert len(parts) == count_parts(text, dc)
    for part in parts:
        assert air_octets(part, dc, udhi=len(parts) > 1) <= 140
    assert decode_text(reassemble(parts, seed), dc) == text


# --- Reassembler ---------------------------------------------------------------------------


def test_duplicates_are_ignored():
    box = Reassembler(max_pending=2, timeout=timedelta(minutes=1))
    assert box.add("k", 1, 3, 2, b"B", T0) is None
    assert box.add("k", 1, 3, 2, b"X", T0) is None
    assert box.add("k", 1, 3, 3, b"C", T0) is None
    assert box.add("k", 1, 3, 1, b"A", T0) == b"ABC"
    assert len(box) == 0 and box.next_deadline() is None


def test_single_part_passes_through():
    box = Reassembler(max_pending=1, timeout=timedelta(minutes=1))
    assert box.add("k", 1, 1, 1, b"only", T0) == b"only"
    assert len(box) == 0


def test_groups_are_per_key_and_ref():
    box = Reassembler(max_pending=3, timeout=timedelta(minutes=1))
    box.add(("a", "1"), 5, 2, 1, b"a1", T0)
    box.add(("b", "1"), 5, 2, 1, b"b1", T0)
    box.add(("a", "1"), 6, 2, 1, b"x1", T0)
    assert box.add(("b", "1"), 5, 2, 2, b"b2", T0) == b"b1b2"
    assert box.add(("a", "1"), 5, 2, 2, b"a2", T0) == b"a1a2"


def test_timeout_with_a_fake_clock():
    box = Reassembler(max_pending=4, timeout=timedelta(seconds=30))
    box.add("k", 1, 2, 1, b"a", T0)
    box.add("k", 2, 2, 1, b"b", T0 + timedelta(seconds=10))
    assert box.next_deadline() == T0 + timedelta(seconds=30)
    assert box.expire(T0 + timedelta(seconds=29)) == []
    assert box.expire(T0 + timedelta(seconds=30)) == [("k", 1)]
    assert box.next_deadline() == T0 + timedelta(seconds=40)
    # a late part of the expired group opens a new group rather than completing
    assert box.add("k", 1, 2, 2, b"late", T0 + timedelta(seconds=31)) is None
    assert box.expire(T0 + timedelta(seconds=100)) == [("k", 2), ("k", 1)]
    assert len(box) == 0 and box.next_deadline() is None


def test_max_pending_is_enforced():
    box = Reassembler(max_pending=2, timeout=timedelta(seconds=30))
    box.add("k", 1, 2, 1, b"a", T0)
    box.add("k", 2, 2, 1, b"b", T0)
    with pytest.raises(TextError) as exc:
        box.add("k", 3, 2, 1, b"c", T0)
    assert status_of(exc) == Status.ESME_RMSGQFUL
    assert box.add("k", 1, 2, 2, b"A", T0) == b"aA"  # parts of open groups still fit
    assert box.add("k", 3, 2, 1, b"c", T0) is None


def test_sar_segments_with_a_16_bit_ref():
    box = Reassembler(max_pending=2, timeout=timedelta(seconds=30))
    assert box.add(("carrier", "src", "dst"), 0xBEEF, 2, 2, b"world", T0) is None
    assert box.add(("carrier", "src", "dst"), 0xBEEF, 2, 1, b"hello ", T0) == b"hello world"


@pytest.mark.parametrize(
    ("ref", "total", "seq", "payload", "status"),
    [
        (0x10000, 2, 1, b"x", Status.ESME_RINVESMCLASS),
        (1, 0, 1, b"x", Status.ESME_RINVESMCLASS),
        (1, 2, 0, b"x", Status.ESME_RINVESMCLASS),
        (1, 2, 3, b"x", Status.ESME_RINVESMCLASS),
        (1, 256, 1, b"x", Status.ESME_RINVESMCLASS),
        (1, 2, 1, b"x" * 161, Status.ESME_RINVMSGLEN),
    ],
)
def test_reassembler_rejects_bad_parts(ref, total, seq, payload, status):
    box = Reassembler(max_pending=2, timeout=timedelta(seconds=30))
    with pytest.raises(TextError) as exc:
        box.add("k", ref, total, seq, payload, T0)
    assert status_of(exc) == status
    assert len(box) == 0


def test_same_ref_with_another_total_is_rejected():
    box = Reassembler(max_pending=2, timeout=timedelta(seconds=30))
    box.add("k", 1, 3, 1, b"a", T0)
    with pytest.raises(TextError) as exc:
        box.add("k", 1, 2, 2, b"b", T0)
    assert status_of(exc) == Status.ESME_RINVESMCLASS
    assert box.add("k", 1, 3, 2, b"b", T0) is None  # the group itself is untouched


def test_reassembler_arguments():
    with pytest.raises(ValueError):
        Reassembler(max_pending=0, timeout=timedelta(seconds=1))
    with pytest.raises(ValueError):
        Reassembler(max_pending=1, timeout=timedelta(0))
    box = Reassembler(max_pending=1, timeout=timedelta(seconds=1), max_part=254)
    assert box.add("k", 1, 2, 1, b"x" * 254, T0) is None
