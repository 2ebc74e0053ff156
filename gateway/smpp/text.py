# Short-message text: data_coding alphabets, UDH, split and reassembly of concatenated messages.
# Specs: SMPP 3.4 §5.2.19 (data_coding), 3GPP TS 23.038 §4 and §6.2.1 (GSM 7-bit default
# alphabet and extension table), 3GPP TS 23.040 §9.2.3.24 (user data header, IEs 0x00/0x08).
"""Decode and encode short_message text, parse and build UDHs, split and reassemble.

GSM text travels unpacked in SMPP (one septet per octet); the SMSC packs it for the air.

Error statuses (``TextError.status``), one rule each:

- ``ESME_RINVMSGLEN``: the octets end inside a character or a header (odd UCS-2 length, a
  trailing high surrogate, a GSM escape as the last octet, a UDHL or IE running past its end),
  or the text is too long (over ``MAX_PAYLOAD`` octets, or more than 255 parts).
- ``ESME_RSUBMITFAIL``: the octets are complete but the alphabet does not define them (octet
  > 0x7F in GSM or IA5, a lone surrogate), a character cannot be encoded, the data_coding is
  reserved or unsupported, or text was asked of a binary data_coding.
- ``ESME_RINVESMCLASS``: a UDH (or SAR values) whose lengths add up but that says something
  impossible: concatenation IE of the wrong length, total 0, seq 0, seq > total, or a part whose
  total differs from the rest of its group.
- ``ESME_RMSGQFUL``: the reassembler already holds ``max_pending`` open groups.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from gateway.smpp.codec import SmppError
from gateway.smpp.constants import Status

Alphabet = Literal["gsm", "latin1"]

MAX_PAYLOAD = 65_535
"""Largest text handled, in octets or characters (message_payload's own limit)."""

MAX_PARTS = 255
"""A concatenation IE counts parts in one octet."""


class TextError(SmppError):
    """Text or UDH that cannot be handled; ``status`` is the SMPP command_status to answer."""


# --- GSM 03.38 (TS 23.038 §6.2.1): 0x1B is the escape to the extension table. -------------
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
GSM_EXTENSION = {
    0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\",
    0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€",
}  # fmt: skip
_ESC = 0x1B
# After a charmap decode the octet following ESC is already its basic-table character.
# §6.2.1.1: an escaped code with no extension character shows as its basic character;
# ESC ESC (reserved for a further table) shows as a space.
_EXT_BY_BASIC = {GSM_BASIC[code]: ch for code, ch in GSM_EXTENSION.items()} | {"\x1b": " "}
_ESCAPED = re.compile("\x1b(.)", re.DOTALL)
_GSM_ENCODE: dict[int, int | bytes] = {
    ord(ch): code for code, ch in enumerate(GSM_BASIC) if code != _ESC
} | {ord(ch): bytes((_ESC, code)) for code, ch in GSM_EXTENSION.items()}


def _alphabet(data_coding: int, default_alphabet: Alphabet) -> str:
    """The alphabet a data_coding names: a Python codec name, "gsm", "ucs2" or "binary"."""
    if data_coding == 0:
        return "gsm" if default_alphabet == "gsm" else "latin-1"
    named = {1: "ascii", 2: "binary", 3: "latin-1", 4: "binary", 6: "iso8859-5",
             7: "iso8859-8", 8: "ucs2"}  # fmt: skip
    if data_coding in named:
        return named[data_coding]
    if 0xC0 <= data_coding <= 0xDF:  # message waiting groups (discard/store), GSM 7-bit
        return "gsm"
    if 0xE0 <= data_coding <= 0xEF:  # message waiting group (store), UCS-2
        return "ucs2"
    if 0xF0 <= data_coding <= 0xFF:  # message class group; bit 2: 0 GSM, 1 8-bit data
        return "binary" if data_coding & 0x04 else "gsm"  # bit 3 is reserved: ignored
    raise TextError(Status.ESME_RSUBMITFAIL, f"data_coding 0x{data_coding:02X} is not supported")


def is_binary(data_coding: int) -> bool:
    """True when data_coding says the short_message is 8-bit data, not text (2, 4, 0xF4-)."""
    return data_coding in (2, 4) or (0xF0 <= data_coding <= 0xFF and bool(data_coding & 0x04))


def _gsm_decode(data: bytes) -> str:
    try:
        text, _ = codecs.charmap_decode(data, "strict", GSM_BASIC)
    except UnicodeDecodeError as exc:
        raise TextError(
            Status.ESME_RSUBMITFAIL,
            f"octet 0x{data[exc.start]:02X} at {exc.start} is not GSM 03.38",
        ) from None
    if "\x1b" in text:
        text = _ESCAPED.sub(lambda m: _EXT_BY_BASIC.get(m[1], m[1]), text)
        if "\x1b" in text:  # only an escape with nothing after it survives the substitution
            raise TextError(Status.ESME_RINVMSGLEN, "GSM escape 0x1B is the last octet")
    return text


def _gsm_encode(text: str) -> bytes:
    try:
        data, _ = codecs.charmap_encode(text, "strict", _GSM_ENCODE)
    except UnicodeEncodeError as exc:
        ch = text[exc.start]
        raise TextError(
            Status.ESME_RSUBMITFAIL, f"U+{ord(ch):04X} at {exc.start} is not in GSM 03.38"
        ) from None
    return bytes(data)


def decode_text(data: bytes, data_coding: int, *, default_alphabet: Alphabet = "gsm") -> str:
    """The text of a (reassembled) short_message; ``TextError`` if it cannot be read."""
    if len(data) > MAX_PAYLOAD:
        raise TextError(Status.ESME_RINVMSGLEN, f"{len(data)} octets, at most {MAX_PAYLOAD}")
    alphabet = _alphabet(data_coding, default_alphabet)
    if alphabet == "gsm":
        return _gsm_decode(data)
    if alphabet == "binary":
        raise TextError(
            Status.ESME_RSUBMITFAIL, f"data_coding 0x{data_coding:02X} is binary, not text"
        )
    if alphabet == "ucs2":
        if len(data) % 2:
            raise TextError(Status.ESME_RINVMSGLEN, f"UCS-2 text of odd length {len(data)}")
        if data and 0xD8 <= data[-2] <= 0xDB:
            raise TextError(Status.ESME_RINVMSGLEN, "UCS-2 text ends inside a surrogate pair")
        alphabet = "utf-16-be"  # UCS-2 as sent in practice: surrogate pairs allowed
    try:
        return data.decode(alphabet)
    except UnicodeDecodeError as exc:
        raise TextError(
            Status.ESME_RSUBMITFAIL, f"octets at {exc.start}-{exc.end - 1} are not {alphabet}"
        ) from None


def encode_text(text: str, data_coding: int, *, default_alphabet: Alphabet = "gsm") -> bytes:
    """The short_message octets of ``text`` in data_coding (GSM unpacked, UCS-2 as UTF-16-BE)."""
    if len(text) > MAX_PAYLOAD:
        raise TextError(Status.ESME_RINVMSGLEN, f"{len(text)} characters, at most {MAX_PAYLOAD}")
    alphabet = _alphabet(data_coding, default_alphabet)
    if alphabet == "gsm":
        return _gsm_encode(text)
    if alphabet == "binary":
        raise TextError(
            Status.ESME_RSUBMITFAIL, f"data_coding 0x{data_coding:02X} is binary, not text"
        )
    codec = "utf-16-be" if alphabet == "ucs2" else alphabet
    try:
        return text.encode(codec)
    except UnicodeEncodeError as exc:
        ch = text[exc.start]
        raise TextError(
            Status.ESME_RSUBMITFAIL, f"U+{ord(ch):04X} at {exc.start} is not in {alphabet}"
        ) from None


def choose_coding(text: str, default_alphabet: Alphabet = "gsm") -> int:
    """0 when the carrier's default alphabet holds every character (GSM: incl. extension), else 8.

    For a Latin-1 carrier a character must be both Latin-1 and GSM 03.38, since the SMSC
    still has to put data_coding 0 on the air in the GSM alphabet.
    """
    try:
        _gsm_encode(text)
        if default_alphabet == "latin1":
            text.encode("latin-1")
    except (TextError, UnicodeEncodeError):
        return 8
    return 0


# --- User data header (TS 23.040 §9.2.3.24) ---------------------------------------------------
IEI_CONCAT_8 = 0x00
IEI_CONCAT_16 = 0x08


@dataclass(frozen=True, slots=True)
class Udh:
    """A parsed UDH: the concatenation IE, if any, and every other IE raw and in order."""

    concat: tuple[int, int, int] | None = None
    """(ref, total, seq) from IE 0x00 (8-bit ref) or IE 0x08 (16-bit ref)."""
    ies: tuple[tuple[int, bytes], ...] = field(default=())
    """Other IEs as (iei, value), in the order received."""
    ref16: bool = False
    """The concatenation IE was (or is to be) the 16-bit reference one, 0x08."""


def _concat_values(ref: int, total: int, seq: int) -> tuple[int, int, int]:
    if total == 0 or seq == 0 or seq > total:
        raise TextError(
            Status.ESME_RINVESMCLASS, f"concatenation part {seq} of {total} is impossible"
        )
    return ref, total, seq


def parse_udh(data: bytes) -> tuple[Udh, bytes]:
    """Split a short_message sent with UDHI into its UDH and the rest (the part's payload).

    Repeated concatenation IEs: the last one counts (TS 23.040 §9.2.3.24).
    """
    if not data:
        raise TextError(Status.ESME_RINVMSGLEN, "UDHI set but short_message is empty")
    end = 1 + data[0]
    if end > len(data):
        raise TextError(Status.ESME_RINVMSGLEN, f"UDHL {data[0]} runs past {len(data)} octets")
    concat: tuple[int, int, int] | None = None
    ref16 = False
    ies: list[tuple[int, bytes]] = []
    pos = 1
    while pos < end:
        if pos + 2 > end or pos + 2 + data[pos + 1] > end:
            raise TextError(Status.ESME_RINVMSGLEN, f"IE at UDH offset {pos} runs past the UDH")
        iei, value = data[pos], data[pos + 2 : pos + 2 + data[pos + 1]]
        pos += 2 + len(value)
        if iei in (IEI_CONCAT_8, IEI_CONCAT_16):
            want = 3 if iei == IEI_CONCAT_8 else 4
            if len(value) != want:
                raise TextError(
                    Status.ESME_RINVESMCLASS, f"IE 0x{iei:02X} has {len(value)} octets, not {want}"
                )
            ref = int.from_bytes(value[:-2], "big")
            concat, ref16 = _concat_values(ref, value[-2], value[-1]), iei == IEI_CONCAT_16
        else:
            ies.append((iei, value))
    return Udh(concat=concat, ies=tuple(ies), ref16=ref16), data[end:]


def build_udh(udh: Udh) -> bytes:
    """UDHL and IEs, the concatenation IE first (16-bit when ``ref16`` or ref > 255)."""
    body = bytearray()
    if udh.concat is not None:
        ref, total, seq = udh.concat
        if not (0 <= ref <= 0xFFFF and 1 <= seq <= total <= MAX_PARTS):
            raise ValueError(f"concatenation (ref, total, seq) {udh.concat} out of range")
        if udh.ref16 or ref > 0xFF:
            body += bytes((IEI_CONCAT_16, 4)) + ref.to_bytes(2, "big") + bytes((total, seq))
        else:
            body += bytes((IEI_CONCAT_8, 3, ref, total, seq))
    for iei, value in udh.ies:
        if iei in (IEI_CONCAT_8, IEI_CONCAT_16) or not 0 <= iei <= 0xFF or len(value) > 0xFF:
            raise ValueError(f"IE 0x{iei:02X} cannot be given raw with {len(value)} octets")
        body += bytes((iei, len(value))) + value
    if len(body) > 139:
        raise ValueError(f"UDH of {len(body)} octets leaves no room in 140")
    return bytes((len(body),)) + bytes(body)


# --- Splitting for the outbound direction ------------------------------------------------------
# (single part, per concatenated part) in octets of short_message after the UDH; GSM counts
# septets, which travel one per octet. A 6-octet UDH costs 7 septets, 6 octets or 3 code units.
_LIMITS = {"gsm": (160, 153), "ucs2": (140, 134), "octets": (140, 134)}


def _payload(text: str | bytes, data_coding: int, default_alphabet: Alphabet) -> tuple[str, bytes]:
    """The splitting rule ("gsm", "ucs2" or "octets") and the octets to split."""
    alphabet = _alphabet(data_coding, default_alphabet)
    kind = alphabet if alphabet in ("gsm", "ucs2") else "octets"
    if isinstance(text, bytes):
        return kind, text
    return kind, encode_text(text, data_coding, default_alphabet=default_alphabet)


def _chunks(payload: bytes, kind: str, max_single: int | None) -> list[bytes]:
    single, per_part = _LIMITS[kind]
    if max_single is not None:
        if not 1 <= max_single <= 254:
            raise ValueError(f"max_single {max_single} is not within 1..254")
        single = max_single
    if kind == "ucs2" and len(payload) % 2:
        raise TextError(Status.ESME_RINVMSGLEN, f"UCS-2 payload of odd length {len(payload)}")
    if len(payload) <= single:
        return [payload]
    if len(payload) > MAX_PARTS * per_part:
        raise TextError(Status.ESME_RINVMSGLEN, f"{len(payload)} octets need more than 255 parts")
    chunks: list[bytes] = []
    start = 0
    while start < len(payload):
        cut = min(start + per_part, len(payload))
        if cut < len(payload):
            if kind == "gsm":  # an odd run of ESC before the cut means a pair would be split
                head = payload[start:cut]
                cut -= (len(head) - len(head.rstrip(b"\x1b"))) % 2
            elif kind == "ucs2" and 0xD8 <= payload[cut - 2] <= 0xDB:  # high surrogate
                cut -= 2
        chunks.append(payload[start:cut])
        start = cut
    if len(chunks) > MAX_PARTS:
        raise TextError(Status.ESME_RINVMSGLEN, f"text needs {len(chunks)} parts, at most 255")
    return chunks


def split(
    text: str | bytes,
    data_coding: int,
    *,
    ref: int,
    max_single: int | None = None,
    default_alphabet: Alphabet = "gsm",
) -> list[bytes]:
    """Each part's short_message (with an 8-bit-ref concatenation UDH when more than one).

    ``text`` may be given already encoded (bytes, e.g. binary data). ``max_single`` overrides
    the largest unsplit short_message (160 GSM septets, else 140 octets). Set UDHI in esm_class
    when more than one part is returned.
    """
    if not 0 <= ref <= 0xFF:
        raise ValueError(f"ref {ref} is not an 8-bit reference")
    kind, payload = _payload(text, data_coding, default_alphabet)
    chunks = _chunks(payload, kind, max_single)
    if len(chunks) == 1:
        return chunks
    total = len(chunks)
    return [
        build_udh(Udh(concat=(ref, total, seq))) + chunk
        for seq, chunk in enumerate(chunks, start=1)
    ]


def count_parts(
    text: str | bytes,
    data_coding: int,
    *,
    max_single: int | None = None,
    default_alphabet: Alphabet = "gsm",
) -> int:
    """How many parts ``split`` makes of ``text`` (what a sender is billed for)."""
    kind, payload = _payload(text, data_coding, default_alphabet)
    return len(_chunks(payload, kind, max_single))


# --- Reassembly (UDH concatenation or SAR TLVs) ------------------------------------------------
@dataclass(slots=True)
class _Group:
    total: int
    deadline: datetime
    parts: dict[int, bytes]
    tags: dict[int, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Joined:
    """A whole concatenated message: its payload and each part's tag, both in seq order."""

    payload: bytes
    tags: tuple[Any, ...]


class Reassembler:
    """Collects the parts of concatenated messages until each is whole or too old.

    A group is (key, ref); the caller picks the key (e.g. carrier, source, destination) and
    passes ref/total/seq from the UDH or from sar_msg_ref_num/sar_total_segments/
    sar_segment_seqnum. ``max_part`` bounds a part's payload: 160 by default, as GSM text
    travels one septet per octet (153 after an 8-bit-ref UDH, 160 in a SAR segment). Memory is
    bounded by max_pending x 255 parts x max_part octets: about 41 KB per group at 160, so
    10,000 pending groups hold at most 408 MB. A group expires ``timeout`` after its first
    part; ``now`` must not go backwards (deadlines then fall in insertion order). Parts are
    joined as octets, so decode the result only once it is whole.
    """

    def __init__(self, max_pending: int, timeout: timedelta, *, max_part: int = 160) -> None:
        if max_pending < 1 or timeout <= timedelta(0) or not 1 <= max_part <= 254:
            raise ValueError("max_pending >= 1, timeout > 0 and max_part in 1..254 required")
        self.max_pending = max_pending
        self.timeout = timeout
        self.max_part = max_part
        self._groups: dict[tuple[Hashable, int], _Group] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def check(self, key: Hashable, ref: int, total: int, seq: int, payload: bytes) -> None:
        """TextError (with its status) when :meth:`add` would refuse this part: asked before
        a part is stored and acknowledged, so a part the store holds can always join its
        group."""
        if not 0 <= ref <= 0xFFFF:
            raise TextError(Status.ESME_RINVESMCLASS, f"reference {ref} is not 16-bit")
        if total > MAX_PARTS:
            raise TextError(Status.ESME_RINVESMCLASS, f"{total} parts, at most 255")
        _concat_values(ref, total, seq)
        if len(payload) > self.max_part:
            raise TextError(
                Status.ESME_RINVMSGLEN, f"part of {len(payload)} octets, at most {self.max_part}"
            )
        group = self._groups.get((key, ref))
        if group is None and total > 1 and len(self._groups) >= self.max_pending:
            raise TextError(Status.ESME_RMSGQFUL, f"{self.max_pending} concatenations pending")
        if group is not None and group.total != total:
            raise TextError(
                Status.ESME_RINVESMCLASS, f"part says {total} parts, its group {group.total}"
            )

    def add(
        self, key: Hashable, ref: int, total: int, seq: int, payload: bytes, now: datetime
    ) -> bytes | None:
        """The whole payload, in seq order, once the last part is in; else None."""
        joined = self.join(key, ref, total, seq, payload, now)
        return None if joined is None else joined.payload

    def join(
        self,
        key: Hashable,
        ref: int,
        total: int,
        seq: int,
        payload: bytes,
        now: datetime,
        tag: Any = None,
    ) -> Joined | None:
        """As :meth:`add`, keeping ``tag`` (what the caller knows of the part: its id, its
        registered_delivery, when it was accepted) to hand back with the whole payload."""
        self.check(key, ref, total, seq, payload)
        if total == 1:
            return Joined(payload, (tag,))
        gid = (key, ref)
        group = self._groups.get(gid)
        if group is None:
            group = self._groups[gid] = _Group(total, now + self.timeout, {})
        if seq not in group.parts:  # a repeated part keeps its first copy
            group.parts[seq] = payload
            group.tags[seq] = tag
        if len(group.parts) < total:
            return None
        del self._groups[gid]
        order = range(1, total + 1)
        return Joined(b"".join(group.parts[n] for n in order), tuple(group.tags[n] for n in order))

    def expire(self, now: datetime) -> list[tuple[Hashable, int]]:
        """Drop the groups whose deadline has come; return their (key, ref)."""
        gone: list[tuple[Hashable, int]] = []
        for gid, group in self._groups.items():
            if group.deadline > now:
                break
            gone.append(gid)
        for gid in gone:
            del self._groups[gid]
        return gone

    def next_deadline(self) -> datetime | None:
        """When ``expire`` next has something to drop, or None when nothing is pending."""
        for group in self._groups.values():
            return group.deadline
        return None
