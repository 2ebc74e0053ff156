# An app's message as MO deliver_sm PDUs for a carrier bound to us (SMPP 3.4 §4.6.1, §5.3.2.22-24).
"""Pure: what a message delivered to a carrier through a ``--carrier`` policy looks like.

The sender is the app's DID in E.164 (source_addr TON 1, NPI 1), the recipient the mobile
number (TON 1, NPI 1); ``esm_class`` 0 (a mobile-originated message, not a receipt).  The
text is encoded as the carrier's data coding says: data_coding 0 in its default alphabet
(GSM 03.38 or Latin-1, the carrier's ``data_coding`` setting) when every character fits,
else UCS-2 (data_coding 8).  A text longer than one short_message is split (153 GSM
septets or 134 octets per part) and each part carries its place either in a UDH (IE 0x00,
esm_class UDHI 0x40) or in the SAR TLVs (sar_msg_ref_num, sar_total_segments,
sar_segment_seqnum), as the carrier's ``concat`` setting says.  Binary bodies keep their
data_coding and are split the same way.
"""

from __future__ import annotations

from typing import Literal

from gateway.smpp.codec import Pdu
from gateway.smpp.constants import CommandId, Tag
from gateway.smpp.text import Alphabet, choose_coding, parse_udh, split

ESM_UDHI = 0x40
TON_INTERNATIONAL = 1
NPI_E164 = 1

Concat = Literal["udh", "sar"]


def _pdu(source: str, destination: str, esm_class: int, data_coding: int, sm: bytes) -> Pdu:
    return Pdu(
        CommandId.DELIVER_SM,
        0,
        0,
        {
            "service_type": "",
            "source_addr_ton": TON_INTERNATIONAL,
            "source_addr_npi": NPI_E164,
            "source_addr": source,
            "dest_addr_ton": TON_INTERNATIONAL,
            "dest_addr_npi": NPI_E164,
            "destination_addr": destination,
            "esm_class": esm_class,
            "protocol_id": 0,
            "priority_flag": 0,
            "schedule_delivery_time": "",
            "validity_period": "",
            "registered_delivery": 0,
            "replace_if_present_flag": 0,
            "data_coding": data_coding,
            "sm_default_msg_id": 0,
            "short_message": sm,
        },
    )


def mo_pdus(
    *,
    message_id: int,
    source: str,
    destination: str,
    text: str | None,
    body: bytes | None,
    data_coding: int,
    alphabet: Alphabet,
    concat: Concat,
) -> list[Pdu]:
    """The deliver_sm PDUs, in order, that carry the message to the carrier.

    ``source`` and ``destination`` are E.164 digits; ``text`` (or, when None, the binary
    ``body`` with its ``data_coding``) is what the app sent.  The concatenation reference is
    taken from ``message_id`` (8 bits in a UDH, 16 bits in SAR).  TextError (with its
    command_status) when the text cannot be encoded or needs more than 255 parts.
    """
    if text is not None:
        coding = choose_coding(text, alphabet)
        content: str | bytes = text
    else:
        coding = data_coding
        content = body or b""
    parts = split(content, coding, ref=message_id % 256, default_alphabet=alphabet)
    if len(parts) == 1:
        return [_pdu(source, destination, 0, coding, parts[0])]
    if concat == "udh":
        return [_pdu(source, destination, ESM_UDHI, coding, part) for part in parts]
    pdus = []
    total = len(parts)
    for seq, part in enumerate(parts, start=1):
        _, payload = parse_udh(part)
        pdu = _pdu(source, destination, 0, coding, payload)
        pdu.set_tlv_int(Tag.sar_msg_ref_num, message_id % 65536)
        pdu.set_tlv_int(Tag.sar_total_segments, total)
        pdu.set_tlv_int(Tag.sar_segment_seqnum, seq)
        pdus.append(pdu)
    return pdus


TEMPORARY = frozenset({0x08, 0x14, 0x58, 0x64})
"""Answers that mean "later" (ESME_RSYSERR, ESME_RMSGQFUL, ESME_RTHROTTLED, ESME_RX_T_APPN):
the message is retried by ``delivery.retry``; any other refusal is permanent and the next
policy's target is tried (or the message fails when none is left)."""
