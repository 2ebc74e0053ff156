# Reading a carrier's submit_sm / data_sm into a message to store (SMPP 3.4 §4.4, §4.7, §5.2).
"""Validation and normalisation of one submission, before it is stored and acknowledged.

Pure: a PDU, the carrier's settings, the numbering plan and ``now`` in; a ``Submission`` out,
or an ``SmppError`` whose status is the answer (ESME_RINVSRCADR, ESME_RINVDSTADR,
ESME_RINVESMCLASS, ESME_RINVREGDLVFLG, ESME_RINVPRTFLG, ESME_RINVEXPIRY, ESME_RINVSCHED,
ESME_RINVMSGLEN, ...). Addresses become E.164 (TON/NPI and the numbering plan), alphanumeric
senders and short codes stay as they are; text is decoded to Unicode, except the parts of a
concatenated message, which are kept as octets until the message is whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway.errors import InvalidInput
from gateway.smpp.codec import Pdu, SmppError, TimeFormatError, parse_time
from gateway.smpp.constants import CommandId, Status, Tag
from gateway.smpp.text import Alphabet, count_parts, decode_text, is_binary, parse_udh
from routing.numbers import NumberingPlan, normalise

TON_INTERNATIONAL, TON_NATIONAL, TON_ALPHANUMERIC = 1, 2, 5
MAX_SENDER = 20  # source_addr is a C-Octet String of 21
ESM_TYPE_MASK = 0x3C  # bits 2-5: message type; an ESME may only submit "default"
ESM_UDHI = 0x40


@dataclass(slots=True)
class Submission:
    """One accepted submission (a whole message, or one part of a concatenated one)."""

    source: str
    source_ton: int
    destination: str
    data_coding: int
    esm_class: int
    registered_delivery: int
    priority: int
    validity_until: datetime
    schedule_at: datetime | None
    text: str | None  # the decoded text of a whole message
    body: bytes | None  # binary payload of a whole message (data_coding 2, 4, ...)
    concat: tuple[int, int, int] | None  # (ref, total, seq) of a part
    part: bytes  # a part's octets (UDH removed), kept until the message is whole
    segments: int  # SMS segments this submission counts for (throughput, billing)
    alphabet: Alphabet = "gsm"  # what data_coding 0 means for this carrier (for the parts)

    def fields(self) -> dict[str, Any]:
        """The fields a message row takes from this submission."""
        return {
            "source": self.source,
            "source_ton": self.source_ton,
            "destination": self.destination,
            "data_coding": self.data_coding,
            "esm_class": self.esm_class & ~ESM_UDHI,
            "priority": self.priority,
            "validity_until": self.validity_until,
            "schedule_at": self.schedule_at,
        }

    def meta(self) -> dict[str, Any]:
        """``fields()`` as JSON, kept with each part to assemble the message after a restart."""
        out = self.fields()
        out["validity_until"] = self.validity_until.isoformat()
        out["schedule_at"] = self.schedule_at.isoformat() if self.schedule_at else None
        out["alphabet"] = self.alphabet  # the whole text is decoded as the carrier meant it
        return out


@dataclass(frozen=True, slots=True)
class Rules:
    """What the carrier and the config decide about reading a submission."""

    plan: NumberingPlan
    default_alphabet: Alphabet = "gsm"
    default_validity: timedelta = timedelta(hours=48)
    max_validity: timedelta = timedelta(days=30)


def _source(pdu: Pdu, plan: NumberingPlan) -> str:
    addr = str(pdu.params.get("source_addr", ""))
    ton = pdu.params.get("source_addr_ton", 0)
    if not addr or len(addr) > MAX_SENDER or not addr.isprintable():
        raise SmppError(Status.ESME_RINVSRCADR, f"source_addr {addr!r} is not a sender")
    if ton == TON_ALPHANUMERIC or not addr.lstrip("+").isdigit():
        return addr  # an alphanumeric sender ("AsiaCell") stays as it is
    form = {TON_INTERNATIONAL: "international", TON_NATIONAL: "national"}.get(ton, "unknown")
    try:
        return normalise(addr, plan, form=form, field="source_addr")
    except InvalidInput:
        if ton in (TON_INTERNATIONAL, TON_NATIONAL):
            raise SmppError(
                Status.ESME_RINVSRCADR, f"source_addr {addr!r} is not a number"
            ) from None
        return addr.lstrip("+")  # a short code or other network-specific number


def _destination(pdu: Pdu, plan: NumberingPlan) -> str:
    addr = str(pdu.params.get("destination_addr", ""))
    ton = pdu.params.get("dest_addr_ton", 0)
    form = {TON_INTERNATIONAL: "international", TON_NATIONAL: "national"}.get(ton, "unknown")
    if ton == TON_ALPHANUMERIC or not addr:
        raise SmppError(Status.ESME_RINVDSTADR, f"destination_addr {addr!r} is not a number")
    try:
        return normalise(addr, plan, form=form, field="destination_addr")
    except InvalidInput as exc:
        raise SmppError(Status.ESME_RINVDSTADR, exc.reason) from None


def _times(pdu: Pdu, rules: Rules, now: datetime) -> tuple[datetime, datetime | None]:
    try:
        validity = parse_time(str(pdu.params.get("validity_period", "")), now)
    except TimeFormatError as exc:
        raise SmppError(Status.ESME_RINVEXPIRY, f"validity_period: {exc}") from None
    try:
        schedule = parse_time(str(pdu.params.get("schedule_delivery_time", "")), now)
    except TimeFormatError as exc:
        raise SmppError(Status.ESME_RINVSCHED, f"schedule_delivery_time: {exc}") from None
    if validity is None:
        validity = now + rules.default_validity
    elif validity <= now:
        raise SmppError(Status.ESME_RINVEXPIRY, "validity_period is already over")
    validity = min(validity, now + rules.max_validity)
    if schedule is not None and schedule >= validity:
        raise SmppError(Status.ESME_RINVSCHED, "schedule_delivery_time is after the validity")
    return validity, schedule if schedule is not None and schedule > now else None


def _flags(pdu: Pdu) -> tuple[int, int, int]:
    esm_class = int(pdu.params.get("esm_class", 0))
    if esm_class & ESM_TYPE_MASK:
        raise SmppError(
            Status.ESME_RINVESMCLASS,
            f"esm_class 0x{esm_class:02X}: not a message type an ESME submits",
        )
    registered = int(pdu.params.get("registered_delivery", 0))
    if registered & 0x03 == 0x03:
        raise SmppError(
            Status.ESME_RINVREGDLVFLG, f"registered_delivery 0x{registered:02X} is reserved"
        )
    priority = int(pdu.params.get("priority_flag", 0))
    if priority > 3:
        raise SmppError(Status.ESME_RINVPRTFLG, f"priority_flag {priority} is not 0-3")
    return esm_class, registered, priority


def read_submission(pdu: Pdu, rules: Rules, now: datetime) -> Submission:
    """Validate a submit_sm or data_sm; raise SmppError with the status to answer."""
    esm_class, registered, priority = _flags(pdu)
    source = _source(pdu, rules.plan)
    destination = _destination(pdu, rules.plan)
    validity, schedule = (
        _times(pdu, rules, now)
        if pdu.command_id == CommandId.SUBMIT_SM
        else (now + rules.default_validity, None)
    )
    data_coding = int(pdu.params.get("data_coding", 0))
    short = bytes(pdu.params.get("short_message", b""))
    payload = pdu.tlv(Tag.message_payload)
    if payload is not None and short:
        raise SmppError(
            Status.ESME_RINVOPTPARAMVAL, "both short_message and message_payload are set"
        )
    data = payload if payload is not None else short

    concat: tuple[int, int, int] | None = None
    if esm_class & ESM_UDHI:
        udh, data = parse_udh(data)
        concat = udh.concat
    sar = (
        pdu.tlv_int(Tag.sar_msg_ref_num),
        pdu.tlv_int(Tag.sar_total_segments),
        pdu.tlv_int(Tag.sar_segment_seqnum),
    )
    if concat is None and all(v is not None for v in sar):
        concat = (int(sar[0]), int(sar[1]), int(sar[2]))  # type: ignore[arg-type]
    if concat is not None and concat[1] == 1:
        concat = None  # "1 of 1" is a whole message

    text: str | None = None
    body: bytes | None = None
    if concat is None:
        if is_binary(data_coding):
            body = data
        else:
            text = decode_text(data, data_coding, default_alphabet=rules.default_alphabet)
    segments = 1  # a part of a concatenated message is one segment
    if concat is None:  # counted from the octets, whether short_message or message_payload
        segments = count_parts(data, data_coding, default_alphabet=rules.default_alphabet)
    return Submission(
        source=source,
        source_ton=int(pdu.params.get("source_addr_ton", 0)),
        destination=destination,
        data_coding=data_coding,
        esm_class=esm_class,
        registered_delivery=registered,
        priority=priority,
        validity_until=validity,
        schedule_at=schedule,
        text=text,
        body=body,
        concat=concat,
        part=data if concat is not None else b"",
        segments=segments,
        alphabet=rules.default_alphabet,
    )
