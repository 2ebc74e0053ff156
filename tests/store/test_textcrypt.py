# Unit tests of gateway/store/textcrypt.py: sealing message content at rest.
from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from gateway.secrets import SecretBox
from gateway.store import textcrypt
from gateway.store.textcrypt import (
    BYTES_MARK,
    TEXT_MARK,
    TextCipher,
    TextUnreadable,
    open_message,
    seal_message,
)

ARABIC = "رمز التحقق 4711 صالح لمدة عشر دقائق"


def cipher(encrypt: bool = True) -> TextCipher:
    return TextCipher.from_box(SecretBox(Fernet.generate_key()), encrypt=encrypt)


def row(mid: int = 7, text: str | None = ARABIC, body: bytes | None = None) -> dict:
    return {"id": mid, "body_text": text, "body_bytes": body, "state": "accepted"}


@pytest.fixture
def configured() -> Iterator[TextCipher]:
    c = cipher()
    before = textcrypt.current()
    textcrypt.configure(c)
    yield c
    textcrypt.configure(before)


def test_round_trip_text_and_bytes() -> None:
    c = cipher()
    sealed = seal_message(row(body=b"\x00\xffbinary"), c)
    assert sealed["body_text"].startswith(TEXT_MARK) and ARABIC not in sealed["body_text"]
    assert sealed["body_bytes"].startswith(BYTES_MARK) and b"binary" not in sealed["body_bytes"]
    assert open_message(sealed, c) == (ARABIC, b"\x00\xffbinary")
    # a fresh nonce each time: the same text never looks the same twice
    assert seal_message(row(), c)["body_text"] != seal_message(row(), c)["body_text"]


def test_the_row_handed_in_stays_plain() -> None:
    plain = row()
    seal_message(plain, cipher())
    assert plain["body_text"] == ARABIC


def test_a_flipped_bit_is_detected() -> None:
    c = cipher()
    sealed = base64.b64decode(seal_message(row(), c)["body_text"][len(TEXT_MARK) :])
    damaged = bytearray(sealed)
    damaged[20] ^= 1
    value = TEXT_MARK + base64.b64encode(bytes(damaged)).decode()
    with pytest.raises(TextUnreadable, match="damaged"):
        open_message(row(text=value), c)


def test_a_ciphertext_moved_to_another_row_does_not_open() -> None:
    c = cipher()
    sealed = seal_message(row(mid=1, text="the code is 1234"), c)
    with pytest.raises(TextUnreadable, match="moved from another row"):
        open_message({**sealed, "id": 2}, c)


def test_plaintext_rows_still_read() -> None:
    c = cipher()
    assert open_message(row(text="written before encryption"), c) == (
        "written before encryption",
        None,
    )
    assert open_message(row(text=None, body=b"\x05\x00\x03raw"), c) == (None, b"\x05\x00\x03raw")
    # a legacy text that merely starts with the mark is not base64 of a sealed value
    assert open_message(row(text="e1: call me back"), c)[0] == "e1: call me back"


def test_encryption_off_writes_plain_and_reads_sealed() -> None:
    key = SecretBox(Fernet.generate_key())
    on, off = TextCipher.from_box(key), TextCipher.from_box(key, encrypt=False)
    assert seal_message(row(), off)["body_text"] == ARABIC
    assert open_message(seal_message(row(), on), off)[0] == ARABIC


def test_a_plain_text_that_looks_sealed_is_sealed_even_when_off() -> None:
    off = cipher(encrypt=False)
    tricky = TEXT_MARK + base64.b64encode(b"x" * 40).decode()
    stored = seal_message(row(text=tricky, body=BYTES_MARK + b"y" * 40), off)
    assert stored["body_text"] != tricky
    assert open_message(stored, off) == (tricky, BYTES_MARK + b"y" * 40)


def test_another_key_file_is_named_as_the_reason() -> None:
    sealed = seal_message(row(), cipher())
    with pytest.raises(TextUnreadable, match="another key file"):
        open_message(sealed, cipher())


def test_no_key_cannot_read_sealed_values() -> None:
    sealed = seal_message(row(), cipher())
    with pytest.raises(TextUnreadable, match="no key file"):
        open_message(sealed, TextCipher(None))
    assert seal_message(row(), TextCipher(None))["body_text"] == ARABIC  # and writes plain


def test_parts_and_pdus_are_bound_to_their_row(configured: TextCipher) -> None:
    sealed = textcrypt.seal_part(11, b"part one")
    assert b"part one" not in sealed and textcrypt.open_part(11, sealed) == b"part one"
    with pytest.raises(TextUnreadable):
        textcrypt.open_part(12, sealed)
    pdu = textcrypt.seal_pdu(5, b"\x00\x00\x00\x40deliver_sm text")
    assert textcrypt.open_pdu(5, pdu) == b"\x00\x00\x00\x40deliver_sm text"
    with pytest.raises(TextUnreadable):
        textcrypt.open_part(5, pdu)  # a PDU is not a part, even with the same id
    assert textcrypt.open_pdu(6, b"\x00\x00\x00\x10plain") == b"\x00\x00\x00\x10plain"


def test_key_comes_from_the_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "gateway.key"
    box = SecretBox.from_key_file(key_file, create=True)
    again = SecretBox.from_key_file(key_file)
    sealed = seal_message(row(), TextCipher.from_box(box))
    assert open_message(sealed, TextCipher.from_box(again))[0] == ARABIC
    # the text key is not the Fernet key: peer secrets and texts are keyed apart
    assert box.derive(textcrypt.KEY_PURPOSE) != base64.urlsafe_b64decode(
        key_file.read_bytes().strip()
    )
