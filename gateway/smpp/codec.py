# SMPP 3.4 PDU codec: framing (§3.2), bodies (§4), TLVs (§3.2.4, §5.3), time (§7.1.1).
"""Bytes <-> ``Pdu`` for SMPP 3.4, sans-IO, table-driven and bounded.

Every failure is an ``SmppError`` carrying the command_status to answer with:

* ``FrameError`` - the stream cannot be framed (command_length < 16 or above the framer's
  maximum): answer generic_nack ESME_RINVCMDLEN and close.
* ``PduError`` - framed but invalid: answer the matching ``_resp`` with ``status`` (or
  generic_nack when ``command_id`` is unknown, status ESME_RINVCMDID).

Decoding rules, in the order they are checked:

* Mandatory fields follow the per-command table ``FIELDS`` (name, kind, max length incl. NUL,
  status on violation). A C-Octet string whose NUL is not within its maximum length while
  the body holds that many octets is too long: the field's status. A C-Octet string begun
  but cut by the end of the PDU (NUL missing, truncated PDU) is the field's status too,
  except in bind_transmitter/receiver/transceiver and outbind, where it is ESME_RINVCMDLEN:
  a truncated bind is a framing fault, and answering it with ESME_RINVSYSID/ESME_RINVPASWD
  would tell the ESME its credentials are wrong.
* A field of any kind that the body ends before (not even begun) is ESME_RINVCMDLEN: the
  command_length is too short for the command's mandatory parameters.
* Time fields (schedule_delivery_time, validity_period, final_date) are empty or exactly 16
  characters; only that shape is checked here, ``parse_time`` checks the content.
* sm_length above 254 or running past the PDU is ESME_RINVMSGLEN; submit_multi needs 1-254
  destinations (ESME_RINVNUMDESTS), each with dest_flag 1 or 2 (ESME_RINVDESTFLAG).
* A response with an empty body decodes to ``params == {}`` (§4 allows it whenever
  command_status is non-zero, and ESMEs commonly send deliver_sm_resp that way).
* Whatever follows the mandatory fields is parsed as TLVs: a partial TLV header or a length
  running past the PDU is ESME_RINVOPTPARSTREAM, a known tag outside its §5.3.2 length is
  ESME_RINVPARLEN; unknown and vendor tags (0x1400-0x3FFF) are kept raw, in wire order.

``params`` holds no sm_length, number_of_dests or no_unsuccess: encode derives them.
"""

from __future__ import annotations

import calendar
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import IntEnum
from typing import Any

from gateway.errors import GatewayError
from gateway.smpp.constants import (
    RESPONSE_BIT,
    TLV_LENGTHS,
    CommandId,
    Status,
    VendorStatus,
    resp_of,
)

S = Status
_HEADER = struct.Struct(">IIII")
_TL = struct.Struct(">HH")
_COMMANDS = {int(c): c for c in CommandId}
_STATUSES: dict[int, IntEnum] = {int(s): s for s in (*Status, *VendorStatus)}
_TLV_LENGTHS = TLV_LENGTHS


def status_name(status: int) -> str:
    known = _STATUSES.get(status)
    return known.name if known is not None else f"0x{status:08x}"


class SmppError(GatewayError):
    """An SMPP protocol error; ``status`` is the command_status to answer with."""

    def __init__(self, status: int, reason: str = "") -> None:
        self.status = _STATUSES.get(status, status)
        self.reason = reason
        super().__init__(f"{status_name(status)}: {reason}" if reason else status_name(status))


class FrameError(SmppError):
    """The stream cannot be framed: answer generic_nack ESME_RINVCMDLEN, then close.

    ``length`` is the command_length that was read, when there was one; ``frames`` holds the
    whole PDUs a Framer cut before the bad header in the same ``feed``."""

    def __init__(self, reason: str, length: int | None = None) -> None:
        self.length = length
        self.frames: list[bytes] = []
        super().__init__(S.ESME_RINVCMDLEN, reason)


class PduError(SmppError):
    """A framed PDU that is invalid: answer its ``_resp`` (generic_nack if the id is unknown)."""

    def __init__(self, status: int, command_id: int, sequence: int, reason: str = "") -> None:
        self.command_id = _COMMANDS.get(command_id, command_id)
        self.sequence = sequence
        super().__init__(status, reason)


class TimeFormatError(ValueError):
    """An SMPP time string that is not §7.1.1; the caller maps it (ESME_RINVSCHED/RINVEXPIRY)."""


def _name_of(command_id: int) -> str:
    known = _COMMANDS.get(command_id)
    return known.name.lower() if known is not None else f"command_0x{command_id:08x}"


@dataclass(slots=True, repr=False)
class Pdu:
    """One PDU: header values, mandatory ``params`` by spec name, and raw ``tlvs`` in order."""

    command_id: int
    sequence: int
    status: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    tlvs: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The spec name of the command, e.g. ``submit_sm``."""
        return _name_of(self.command_id)

    def tlv(self, tag: int) -> bytes | None:
        """The value of the first TLV with ``tag``, or None."""
        for t, value in self.tlvs:
            if t == tag:
                return value
        return None

    def tlv_int(self, tag: int) -> int | None:
        """A TLV read as a big-endian unsigned integer (1, 2 or 4 octets per §5.3.2)."""
        value = self.tlv(tag)
        return None if value is None else int.from_bytes(value, "big")

    def tlv_str(self, tag: int) -> str | None:
        """A C-Octet String TLV (receipted_message_id...) up to its NUL, latin-1 decoded."""
        value = self.tlv(tag)
        return None if value is None else value.split(b"\0", 1)[0].decode("latin-1")

    def set_tlv(self, tag: int, value: bytes) -> None:
        """Set a TLV: replaces the first with ``tag`` in place (dropping repeats) or appends."""
        bounds = _TLV_LENGTHS.get(tag, (0, 0xFFFF))
        if not bounds[0] <= len(value) <= bounds[1] or not 0 <= tag <= 0xFFFF:
            raise ValueError(f"TLV 0x{tag:04x} cannot hold {len(value)} octets")
        kept = [(t, v) for t, v in self.tlvs if t != tag]
        for i, (t, _) in enumerate(self.tlvs):
            if t == tag:
                kept.insert(i, (tag, value))
                break
        else:
            kept.append((tag, value))
        self.tlvs = kept

    def set_tlv_int(self, tag: int, value: int) -> None:
        """Set an integer TLV at its §5.3.2 size."""
        size, most = _TLV_LENGTHS.get(tag, (0, 0))
        if size != most or size not in (1, 2, 4):
            raise ValueError(f"TLV 0x{tag:04x} is not an integer parameter")
        try:
            self.set_tlv(tag, value.to_bytes(size, "big"))
        except OverflowError as exc:
            raise ValueError(f"{value} does not fit TLV 0x{tag:04x}") from exc

    def __repr__(self) -> str:  # the bind password never reaches a log line
        params = self.params
        if "password" in params:
            params = {**params, "password": "***"}
        return (
            f"Pdu({self.name}, sequence={self.sequence}, status={status_name(self.status)}, "
            f"params={params!r}, tlvs={self.tlvs!r})"
        )


# Field kinds of the mandatory-parameter tables.
U8 = 0  # Integer, 1 octet
CSTR = 1  # C-Octet String, variable, max length incl. NUL
TIME = 2  # C-Octet String, empty or exactly 16 characters + NUL (§7.1.1)
SM = 3  # sm_length (1 octet) + short_message (0-254 octets)
DESTS = 4  # submit_multi: number_of_dests + dest_address list (§4.5.1.1)
UNSUCCESS = 5  # submit_multi_resp: no_unsuccess + unsuccess_sme list (§4.5.2)

Field = tuple[str, int, int, int]


def _u8(name: str) -> Field:
    return (name, U8, 1, S.ESME_RINVCMDLEN)


_SERVICE_TYPE = ("service_type", CSTR, 6, S.ESME_RINVSERTYP)
_SOURCE_ADDR = ("source_addr", CSTR, 21, S.ESME_RINVSRCADR)
_DESTINATION_ADDR = ("destination_addr", CSTR, 21, S.ESME_RINVDSTADR)
_MESSAGE_ID = ("message_id", CSTR, 65, S.ESME_RINVMSGID)
_SCHEDULE = ("schedule_delivery_time", TIME, 17, S.ESME_RINVSCHED)
_VALIDITY = ("validity_period", TIME, 17, S.ESME_RINVEXPIRY)
_SHORT_MESSAGE = ("short_message", SM, 254, S.ESME_RINVMSGLEN)
_SOURCE = (_u8("source_addr_ton"), _u8("source_addr_npi"), _SOURCE_ADDR)
_DEST = (_u8("dest_addr_ton"), _u8("dest_addr_npi"), _DESTINATION_ADDR)
_SM_TAIL = (
    _u8("esm_class"),
    _u8("protocol_id"),
    _u8("priority_flag"),
    _SCHEDULE,
    _VALIDITY,
    _u8("registered_delivery"),
    _u8("replace_if_present_flag"),
    _u8("data_coding"),
    _u8("sm_default_msg_id"),
    _SHORT_MESSAGE,
)
_BIND = (
    ("system_id", CSTR, 16, S.ESME_RINVSYSID),
    ("password", CSTR, 9, S.ESME_RINVPASWD),
    ("system_type", CSTR, 13, S.ESME_RINVSYSTYP),
    _u8("interface_version"),
    _u8("addr_ton"),
    _u8("addr_npi"),
    ("address_range", CSTR, 41, S.ESME_RINVPARLEN),  # §5.1.3 has no dedicated status
)
_BIND_RESP = (("system_id", CSTR, 16, S.ESME_RINVSYSID),)
C = CommandId

FIELDS: dict[int, tuple[Field, ...]] = {
    C.GENERIC_NACK: (),
    C.BIND_RECEIVER: _BIND,
    C.BIND_RECEIVER_RESP: _BIND_RESP,
    C.BIND_TRANSMITTER: _BIND,
    C.BIND_TRANSMITTER_RESP: _BIND_RESP,
    C.BIND_TRANSCEIVER: _BIND,
    C.BIND_TRANSCEIVER_RESP: _BIND_RESP,
    C.OUTBIND: _BIND[:2],
    C.UNBIND: (),
    C.UNBIND_RESP: (),
    C.ENQUIRE_LINK: (),
    C.ENQUIRE_LINK_RESP: (),
    C.SUBMIT_SM: (_SERVICE_TYPE, *_SOURCE, *_DEST, *_SM_TAIL),
    C.SUBMIT_SM_RESP: (_MESSAGE_ID,),
    C.DELIVER_SM: (_SERVICE_TYPE, *_SOURCE, *_DEST, *_SM_TAIL),
    C.DELIVER_SM_RESP: (_MESSAGE_ID,),
    C.DATA_SM: (
        _SERVICE_TYPE,
        _u8("source_addr_ton"),
        _u8("source_addr_npi"),
        ("source_addr", CSTR, 65, S.ESME_RINVSRCADR),
        _u8("dest_addr_ton"),
        _u8("dest_addr_npi"),
        ("destination_addr", CSTR, 65, S.ESME_RINVDSTADR),
        _u8("esm_class"),
        _u8("registered_delivery"),
        _u8("data_coding"),
    ),
    C.DATA_SM_RESP: (_MESSAGE_ID,),
    C.QUERY_SM: (_MESSAGE_ID, *_SOURCE),
    C.QUERY_SM_RESP: (
        _MESSAGE_ID,
        ("final_date", TIME, 17, S.ESME_RINVPARLEN),
        _u8("message_state"),
        _u8("error_code"),
    ),
    C.CANCEL_SM: (_SERVICE_TYPE, _MESSAGE_ID, *_SOURCE, *_DEST),
    C.CANCEL_SM_RESP: (),
    C.REPLACE_SM: (
        _MESSAGE_ID,
        *_SOURCE,
        _SCHEDULE,
        _VALIDITY,
        _u8("registered_delivery"),
        _u8("sm_default_msg_id"),
        _SHORT_MESSAGE,
    ),
    C.REPLACE_SM_RESP: (),
    C.SUBMIT_MULTI: (
        _SERVICE_TYPE,
        *_SOURCE,
        ("dest_addresses", DESTS, 254, S.ESME_RINVNUMDESTS),
        *_SM_TAIL,
    ),
    C.SUBMIT_MULTI_RESP: (_MESSAGE_ID, ("unsuccess_smes", UNSUCCESS, 254, S.ESME_RINVCMDLEN)),
    C.ALERT_NOTIFICATION: (
        _u8("source_addr_ton"),
        _u8("source_addr_npi"),
        ("source_addr", CSTR, 65, S.ESME_RINVSRCADR),
        _u8("esme_addr_ton"),
        _u8("esme_addr_npi"),
        ("esme_addr", CSTR, 65, S.ESME_RINVDSTADR),
    ),
}
"""Mandatory parameters per command_id, in wire order: (name, kind, max length, status)."""

_TRUNCATION_IS_CMDLEN = frozenset(
    (C.BIND_RECEIVER, C.BIND_TRANSMITTER, C.BIND_TRANSCEIVER, C.OUTBIND)
)


class _Reader:
    """Cursor for the rarely used composite fields (submit_multi lists)."""

    __slots__ = ("command_id", "frame", "n", "pos", "sequence")

    def __init__(self, frame: bytes, pos: int, command_id: int, sequence: int) -> None:
        self.frame, self.pos, self.n = frame, pos, len(frame)
        self.command_id, self.sequence = command_id, sequence

    def fail(self, status: int, reason: str) -> PduError:
        return PduError(status, self.command_id, self.sequence, reason)

    def u8(self, name: str) -> int:
        if self.pos >= self.n:
            raise self.fail(S.ESME_RINVCMDLEN, f"PDU ends inside {name}")
        self.pos += 1
        return self.frame[self.pos - 1]

    def cstr(self, name: str, size: int, status: int) -> str:
        end = self.frame.find(b"\0", self.pos, self.pos + size)
        if end < 0:
            raise _cstr_error(self.n, self.pos, name, size, status, self.command_id, self.sequence)
        value = self.frame[self.pos : end].decode("latin-1")
        self.pos = end + 1
        return value


def _cstr_error(
    n: int, pos: int, name: str, size: int, status: int, command_id: int, sequence: int
) -> PduError:
    if pos + size <= n:
        return PduError(status, command_id, sequence, f"{name} longer than {size - 1} octets")
    if pos >= n or command_id in _TRUNCATION_IS_CMDLEN:
        status = S.ESME_RINVCMDLEN
    return PduError(status, command_id, sequence, f"{name} has no NUL before the end of the PDU")


def _decode_dests(r: _Reader) -> list[dict[str, Any]]:
    count = r.u8("number_of_dests")
    if not 1 <= count <= 254:
        raise r.fail(S.ESME_RINVNUMDESTS, f"number_of_dests {count} is not 1-254")
    dests: list[dict[str, Any]] = []
    for _ in range(count):
        flag = r.u8("dest_flag")
        if flag == 1:
            ton, npi = r.u8("dest_addr_ton"), r.u8("dest_addr_npi")
            addr = r.cstr("destination_addr", 21, S.ESME_RINVDSTADR)
            dests.append(
                {
                    "dest_flag": 1,
                    "dest_addr_ton": ton,
                    "dest_addr_npi": npi,
                    "destination_addr": addr,
                }
            )
        elif flag == 2:
            dests.append({"dest_flag": 2, "dl_name": r.cstr("dl_name", 21, S.ESME_RINVDLNAME)})
        else:
            raise r.fail(S.ESME_RINVDESTFLAG, f"dest_flag {flag} is neither 1 nor 2")
    return dests


def _decode_unsuccess(r: _Reader) -> list[dict[str, Any]]:
    smes: list[dict[str, Any]] = []
    for _ in range(r.u8("no_unsuccess")):
        ton, npi = r.u8("dest_addr_ton"), r.u8("dest_addr_npi")
        addr = r.cstr("destination_addr", 21, S.ESME_RINVDSTADR)
        if r.pos + 4 > r.n:
            raise r.fail(S.ESME_RINVCMDLEN, "PDU ends inside error_status_code")
        code = int.from_bytes(r.frame[r.pos : r.pos + 4], "big")
        r.pos += 4
        smes.append(
            {
                "dest_addr_ton": ton,
                "dest_addr_npi": npi,
                "destination_addr": addr,
                "error_status_code": code,
            }
        )
    return smes


def decode(frame: bytes) -> Pdu:
    """One whole PDU (header included) -> ``Pdu``; raises FrameError or PduError only."""
    n = len(frame)
    if n < 16:
        raise FrameError(f"PDU of {n} octets is shorter than its header", n)
    length, command_id, status, sequence = _HEADER.unpack_from(frame)
    if length != n:
        raise FrameError(f"command_length {length} but {n} octets given", length)
    fields = FIELDS.get(command_id)
    if fields is None:
        raise PduError(
            S.ESME_RINVCMDID, command_id, sequence, f"unknown command_id 0x{command_id:08x}"
        )
    command_id = _COMMANDS[command_id]
    status = _STATUSES.get(status, status)
    params: dict[str, Any] = {}
    tlvs: list[tuple[int, bytes]] = []
    if n == 16 and command_id & RESPONSE_BIT:
        return Pdu(command_id, sequence, status, params, tlvs)
    pos = 16
    name = ""
    try:
        for name, kind, size, err in fields:
            if kind == U8:
                params[name] = frame[pos]
                pos += 1
            elif kind == CSTR:
                end = frame.find(b"\0", pos, pos + size)
                if end < 0:
                    raise _cstr_error(n, pos, name, size, err, command_id, sequence)
                params[name] = frame[pos:end].decode("latin-1")
                pos = end + 1
            elif kind == SM:
                sm_length = frame[pos]
                pos += 1
                end = pos + sm_length
                if sm_length > size or end > n:
                    raise PduError(err, command_id, sequence, f"sm_length {sm_length} is invalid")
                params[name] = frame[pos:end]
                pos = end
            elif kind == TIME:
                end = frame.find(b"\0", pos, pos + 17)
                if end < 0:
                    raise _cstr_error(n, pos, name, 17, err, command_id, sequence)
                if end != pos and end != pos + 16:
                    raise PduError(err, command_id, sequence, f"{name} is not 0 or 16 characters")
                params[name] = frame[pos:end].decode("latin-1")
                pos = end + 1
            else:
                reader = _Reader(frame, pos, command_id, sequence)
                params[name] = (_decode_dests if kind == DESTS else _decode_unsuccess)(reader)
                pos = reader.pos
    except IndexError:
        raise PduError(S.ESME_RINVCMDLEN, command_id, sequence, f"PDU ends inside {name}") from None
    while pos < n:
        if pos + 4 > n:
            raise PduError(S.ESME_RINVOPTPARSTREAM, command_id, sequence, "partial TLV header")
        tag, size = _TL.unpack_from(frame, pos)
        pos += 4
        end = pos + size
        if end > n:
            raise PduError(
                S.ESME_RINVOPTPARSTREAM, command_id, sequence, f"TLV 0x{tag:04x} runs past the PDU"
            )
        bounds = _TLV_LENGTHS.get(tag)
        if bounds is not None and not bounds[0] <= size <= bounds[1]:
            raise PduError(
                S.ESME_RINVPARLEN, command_id, sequence, f"TLV 0x{tag:04x} has length {size}"
            )
        tlvs.append((tag, frame[pos:end]))
        pos = end
    return Pdu(command_id, sequence, status, params, tlvs)


def _push_cstr(out: bytearray, value: str, name: str, size: int, err: int, pdu: Pdu) -> None:
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise PduError(err, pdu.command_id, pdu.sequence, f"{name} is not latin-1") from None
    if len(raw) >= size or b"\0" in raw:
        raise PduError(err, pdu.command_id, pdu.sequence, f"{name} does not fit {size} octets")
    out += raw
    out.append(0)


def _push_list(out: bytearray, kind: int, items: list[dict[str, Any]], pdu: Pdu) -> None:
    if kind == DESTS and not 1 <= len(items) <= 254:
        raise PduError(S.ESME_RINVNUMDESTS, pdu.command_id, pdu.sequence, "need 1-254 dests")
    if len(items) > 255:
        raise PduError(S.ESME_RINVCMDLEN, pdu.command_id, pdu.sequence, "too many unsuccess_smes")
    out.append(len(items))
    for item in items:
        if kind == DESTS:
            out.append(item["dest_flag"])
            if item["dest_flag"] == 2:
                _push_cstr(out, item["dl_name"], "dl_name", 21, S.ESME_RINVDLNAME, pdu)
                continue
            if item["dest_flag"] != 1:
                raise PduError(S.ESME_RINVDESTFLAG, pdu.command_id, pdu.sequence, "dest_flag")
        out.append(item["dest_addr_ton"])
        out.append(item["dest_addr_npi"])
        _push_cstr(out, item["destination_addr"], "destination_addr", 21, S.ESME_RINVDSTADR, pdu)
        if kind == UNSUCCESS:
            out += item["error_status_code"].to_bytes(4, "big")


def encode(pdu: Pdu) -> bytes:
    """``Pdu`` -> wire bytes. Missing params take their null value (0, "", b"", []).

    A response with neither params nor TLVs gets an empty body (§4, error responses). A value
    that cannot be sent raises PduError with the field's status; a wrong Python type or an
    integer out of range raises TypeError/ValueError (a programming error)."""
    command_id = pdu.command_id
    fields = FIELDS.get(command_id)
    if fields is None:
        raise PduError(S.ESME_RINVCMDID, command_id, pdu.sequence, "unknown command_id")
    out = bytearray(16)
    params = pdu.params
    name, err = "", S.ESME_RSYSERR
    try:
        if params or pdu.tlvs or not command_id & RESPONSE_BIT:
            get = params.get
            for name, kind, size, err in fields:
                if kind == U8:
                    out.append(get(name) or 0)
                elif kind in (CSTR, TIME):
                    value = get(name)
                    if value:
                        raw = value.encode("latin-1")
                        if len(raw) >= size or b"\0" in raw or (kind == TIME and len(raw) != 16):
                            raise PduError(err, command_id, pdu.sequence, f"{name} does not fit")
                        out += raw
                    out.append(0)
                elif kind == SM:
                    value = get(name) or b""
                    if len(value) > 254:
                        raise PduError(err, command_id, pdu.sequence, "short_message over 254")
                    out.append(len(value))
                    out += value
                else:
                    _push_list(out, kind, get(name) or [], pdu)
        for tag, value in pdu.tlvs:
            size = len(value)
            lo, hi = _TLV_LENGTHS.get(tag, (0, 0xFFFF))
            if not lo <= size <= hi:
                raise PduError(S.ESME_RINVPARLEN, command_id, pdu.sequence, f"TLV 0x{tag:04x}")
            out += _TL.pack(tag, size)
            out += value
        _HEADER.pack_into(out, 0, len(out), command_id, pdu.status, pdu.sequence)
    except UnicodeEncodeError:
        raise PduError(err, command_id, pdu.sequence, f"{name} is not latin-1") from None
    except struct.error as exc:
        raise ValueError(f"{pdu.name}: {exc}") from None
    return bytes(out)


class Framer:
    """Cuts a byte stream into whole PDUs; holds at most one partial PDU (``buffered``).

    A command_length below 16 or above ``max_length`` raises FrameError as soon as its 4
    octets arrive, and every later ``feed`` raises it again: the stream cannot be resynced.
    Whole PDUs cut from the same ``feed`` before the bad header ride on ``error.frames``."""

    def __init__(self, max_length: int = 65536) -> None:
        if max_length < 16:
            raise ValueError("max_length must be at least 16")
        self.max_length = max_length
        self._buf = bytearray()
        self._need = 4  # octets the buffer must hold before another frame can be cut
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received octets; return the complete PDUs now available, in order."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        n = len(buf)
        if n < self._need:
            return []
        frames: list[bytes] = []
        pos = 0
        while n - pos >= 4:
            length = int.from_bytes(buf[pos : pos + 4], "big")
            if length < 16 or length > self.max_length:
                self._error = FrameError(
                    f"command_length {length} outside 16-{self.max_length}", length
                )
                del buf[:]
                error = FrameError(self._error.reason, length)
                error.frames = frames
                raise error
            if n - pos < length:
                self._need = length
                break
            frames.append(bytes(buf[pos : pos + length]))
            pos += length
        else:
            self._need = 4
        del buf[:pos]
        return frames


def _default(kind: int) -> Any:
    return [] if kind >= DESTS else (0, "", "", b"")[kind]


def response(pdu: Pdu, status: int = 0, **params: Any) -> Pdu:
    """The ``_resp`` answering ``pdu`` (same sequence). With status 0 every mandatory field is
    present (null values unless given); otherwise only ``params`` (often none: empty body)."""
    resp_id = resp_of(pdu.command_id)
    body: dict[str, Any] = {}
    if status == 0:
        body = {name: _default(kind) for name, kind, _, _ in FIELDS[resp_id]}
    body.update(params)
    return Pdu(resp_id, pdu.sequence, _STATUSES.get(status, status), body)


def generic_nack(sequence: int, status: int) -> Pdu:
    """A generic_nack for ``sequence`` (0 when the offending PDU's sequence is unknown)."""
    return Pdu(C.GENERIC_NACK, sequence, _STATUSES.get(status, status))


def _add_months(moment: datetime, months: int) -> datetime:
    total = moment.month - 1 + months
    year, month = moment.year + total // 12, total % 12 + 1
    last_day = calendar.monthrange(year, month)[1]
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def parse_time(text: str, now: datetime) -> datetime | None:
    """An SMPP time (§7.1.1) as an aware UTC datetime; "" -> None.

    Absolute ``YYMMDDhhmmsstnnp``: local time with ``nn`` quarter hours ahead of (``+``) or
    behind (``-``) UTC, years 2000-2099. Relative ``YYMMDDhhmmss000R``: that long after
    ``now`` (naive ``now`` is taken as UTC; ``tnn`` is ignored). Anything else raises
    TimeFormatError."""
    if not text:
        return None
    if len(text) != 16 or not (text[:15].isascii() and text[:15].isdigit()):
        raise TimeFormatError(f"{text!r} is not YYMMDDhhmmsstnnp")
    yy, mo, dd, hh, mi, ss = (int(text[i : i + 2]) for i in range(0, 12, 2))
    tenths, quarters, sign = int(text[12]), int(text[13:15]), text[15]
    if sign != "R" and (sign not in ("+", "-") or quarters > 48):
        raise TimeFormatError(f"{text!r}: bad UTC offset {text[13:]!r}")
    try:
        if sign == "R":
            base = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
            moved = _add_months(base.astimezone(UTC), yy * 12 + mo)
            return moved + timedelta(days=dd, hours=hh, minutes=mi, seconds=ss)
        offset = timedelta(minutes=15 * quarters) * (1 if sign == "+" else -1)
        local = datetime(2000 + yy, mo, dd, hh, mi, ss, tenths * 100_000, timezone(offset))
        return local.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise TimeFormatError(f"{text!r}: {exc}") from None


def format_time(dt: datetime) -> str:
    """An absolute SMPP time in UTC, ``YYMMDDhhmmss000+`` (naive ``dt`` is taken as UTC)."""
    utc = dt.astimezone(UTC) if dt.tzinfo is not None else dt
    if not 2000 <= utc.year <= 2099:
        raise ValueError(f"{dt} is outside the SMPP years 2000-2099")
    return f"{utc:%y%m%d%H%M%S}000+"
