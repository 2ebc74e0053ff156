# Message content at rest: AES-256-GCM of texts, parts and outbox PDUs, keyed from the key file.
"""Encryption at rest of what subscribers wrote (docs/architecture.md, "Data at rest").

Sealed here, and nowhere else: ``messages.body_text`` and ``messages.body_bytes``, the parts
of concatenated messages (``fragments.payload``) and the PDUs waiting for a carrier
(``outbox.pdu``: MO texts, and the receipts that quote a text's first 20 characters). The
rest of the gateway sees plain text: writers call :func:`seal_message` / :func:`seal_part` /
:func:`seal_pdu` on the copy they hand to the store, readers :func:`open_message` /
:func:`open_part` / :func:`open_pdu` on what they read.

A sealed value is AES-256-GCM (NIST SP 800-38D) under a key derived from the key file
(``SecretBox.derive("message text")``), with a random 96-bit nonce per value and the row's
table, column and id as associated data, so a ciphertext moved to another row or column does
not open. Layout: ``key id (4) | nonce (12) | ciphertext | tag (16)``, marked ``e1:`` + base64
in text columns and ``\\x00e1:`` + raw bytes in binary ones. The key id tells a value written
under another key file from a damaged one.

Values without the mark are plain (rows written before encryption, or with
``retention.encrypt_text: false``) and read back as they are. A plain value that happens to
start with the mark is sealed even when encryption is off, so it is never misread. A value
that carries the mark but cannot be opened raises :class:`TextUnreadable`: the caller fails
that message (or drops that PDU), the node goes on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import GatewayError
from gateway.secrets import SecretBox

TEXT_MARK = "e1:"
BYTES_MARK = b"\x00e1:"
KEY_PURPOSE = "message text"
_KID = 4
_NONCE = 12
_TAG = 16
_OVERHEAD = _KID + _NONCE + _TAG


class TextUnreadable(GatewayError):
    """A sealed value that cannot be opened: another key file, no key, or damaged."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


class TextCipher:
    """Seals and opens message content; without a key it writes plain and opens nothing sealed."""

    def __init__(self, key: bytes | None, *, encrypt: bool = True) -> None:
        """``key``: 32 bytes (None: no key); ``encrypt``: whether new values are sealed."""
        if key is not None and len(key) != 32:
            raise ValueError("the message text key has 32 bytes")
        self._aead = AESGCM(key) if key is not None else None
        self._kid = hmac.new(key, b"key id", hashlib.sha256).digest()[:_KID] if key else b""
        self.encrypt = encrypt and key is not None

    def __repr__(self) -> str:
        return f"TextCipher(key={'yes' if self._aead else 'no'}, encrypt={self.encrypt})"

    @classmethod
    def from_box(cls, box: SecretBox, *, encrypt: bool = True) -> TextCipher:
        """The cipher keyed by the key file behind ``box``."""
        return cls(box.derive(KEY_PURPOSE), encrypt=encrypt)

    # -- the primitive ------------------------------------------------------------------------
    def _seal(self, data: bytes, aad: bytes) -> bytes:
        assert self._aead is not None
        nonce = os.urandom(_NONCE)
        return self._kid + nonce + self._aead.encrypt(nonce, data, aad)

    def _open(self, sealed: bytes, aad: bytes, where: str) -> bytes:
        if self._aead is None:
            raise TextUnreadable(where, "is encrypted and no key file is configured to read it")
        if sealed[:_KID] != self._kid:
            raise TextUnreadable(
                where,
                "was encrypted with another key file (key id "
                f"{sealed[:_KID].hex()}, this one is {self._kid.hex()}): restore that key file",
            )
        try:
            return self._aead.decrypt(sealed[_KID : _KID + _NONCE], sealed[_KID + _NONCE :], aad)
        except InvalidTag:
            raise TextUnreadable(
                where, "is damaged or was moved from another row (authentication failed)"
            ) from None

    # -- text columns -------------------------------------------------------------------------
    def seal_text(self, text: str | None, aad: bytes) -> str | None:
        if text is None or not (self.encrypt or text.startswith(TEXT_MARK)):
            return text
        if self._aead is None:  # a plain text that looks sealed, and no key: cannot happen
            raise TextUnreadable(aad.decode(), "starts with the encryption mark; no key to seal")
        sealed = self._seal(text.encode("utf-8"), aad)
        return TEXT_MARK + base64.b64encode(sealed).decode("ascii")

    def open_text(self, value: str | None, aad: bytes) -> str | None:
        if value is None or not value.startswith(TEXT_MARK):
            return value
        try:
            sealed = base64.b64decode(value[len(TEXT_MARK) :], validate=True)
        except (binascii.Error, ValueError):
            return value  # not ours: a plain text written before encryption
        if len(sealed) < _OVERHEAD:
            return value
        try:
            return self._open(sealed, aad, aad.decode()).decode("utf-8")
        except UnicodeDecodeError:  # authenticated, so only a bug could get here
            raise TextUnreadable(aad.decode(), "is not UTF-8 once decrypted") from None

    # -- binary columns -----------------------------------------------------------------------
    def seal_bytes(self, data: bytes | None, aad: bytes) -> bytes | None:
        if data is None or not (self.encrypt or data.startswith(BYTES_MARK)):
            return data
        if self._aead is None:
            raise TextUnreadable(aad.decode(), "starts with the encryption mark; no key to seal")
        return BYTES_MARK + self._seal(bytes(data), aad)

    def open_bytes(self, value: bytes | None, aad: bytes) -> bytes | None:
        if value is None:
            return None
        value = bytes(value)  # PostgreSQL gives memoryview
        if not value.startswith(BYTES_MARK) or len(value) < len(BYTES_MARK) + _OVERHEAD:
            return value
        return self._open(value[len(BYTES_MARK) :], aad, aad.decode())


def _aad(table: str, column: str, row_id: int) -> bytes:
    return f"{table}.{column} {row_id}".encode("ascii")


_current = TextCipher(None)


def configure(cipher: TextCipher) -> None:
    """Make ``cipher`` the one the store's writers and readers use (at the node's start)."""
    global _current
    _current = cipher


def current() -> TextCipher:
    return _current


def is_sealed(value: str | bytes | None) -> bool:
    """Whether a stored value carries the encryption mark."""
    if isinstance(value, str):
        return value.startswith(TEXT_MARK)
    return value is not None and bytes(value).startswith(BYTES_MARK)


# -- what the store's writers and readers call ------------------------------------------------
def seal_message(row: Mapping[str, Any], cipher: TextCipher | None = None) -> dict[str, Any]:
    """A copy of a ``messages`` row with its text and binary body sealed (the row handed in
    stays plain: the pipeline keeps it in memory)."""
    c = cipher or _current
    out = dict(row)
    mid = row["id"]
    out["body_text"] = c.seal_text(row["body_text"], _aad("messages", "body_text", mid))
    out["body_bytes"] = c.seal_bytes(row["body_bytes"], _aad("messages", "body_bytes", mid))
    return out


def open_message(
    row: Mapping[str, Any], cipher: TextCipher | None = None
) -> tuple[str | None, bytes | None]:
    """The plain (text, body) of a stored ``messages`` row; TextUnreadable if sealed and
    unreadable."""
    c = cipher or _current
    mid = row["id"]
    text = c.open_text(row["body_text"], _aad("messages", "body_text", mid))
    body = c.open_bytes(row["body_bytes"], _aad("messages", "body_bytes", mid))
    return text, body


def seal_part(part_id: int, payload: bytes, cipher: TextCipher | None = None) -> bytes:
    """A part's octets as stored in ``fragments.payload``."""
    sealed = (cipher or _current).seal_bytes(payload, _aad("fragments", "payload", part_id))
    assert sealed is not None
    return sealed


def open_part(part_id: int, payload: bytes, cipher: TextCipher | None = None) -> bytes:
    """The octets of a stored part; TextUnreadable if they cannot be opened."""
    opened = (cipher or _current).open_bytes(payload, _aad("fragments", "payload", part_id))
    assert opened is not None
    return opened


def seal_pdu(outbox_id: int, data: bytes, cipher: TextCipher | None = None) -> bytes:
    """An encoded PDU as stored in ``outbox.pdu``."""
    sealed = (cipher or _current).seal_bytes(data, _aad("outbox", "pdu", outbox_id))
    assert sealed is not None
    return sealed


def open_pdu(outbox_id: int, data: bytes, cipher: TextCipher | None = None) -> bytes:
    """The encoded PDU of an outbox row; TextUnreadable if it cannot be opened."""
    opened = (cipher or _current).open_bytes(data, _aad("outbox", "pdu", outbox_id))
    assert opened is not None
    return opened
