# Delivery receipts for originators: a final state as deliver_sm (SMPP 3.4 §4.6.1, App. B).
"""Pure: which final states a carrier asked to hear about, and the deliver_sm that tells it.

``registered_delivery`` bits 0-1 (§5.2.17): 1 = a receipt on success or failure, 2 = on
failure only, 0 and 3 = none. The receipt swaps the addresses (source: the number the message
went to; destination: its sender), has esm_class 0x04, carries the Appendix B text
(``id:... stat:DELIVRD err:000 ...``) and the receipted_message_id, message_state and, for a
failure with a code, network_error_code TLVs (§5.3.2.12, .35, .31). ``err`` is the SIP status
(404, 480, ...) or the peer's command_status that ended the delivery, 0 when there was none.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from gateway.smpp.codec import Pdu
from gateway.smpp.constants import CommandId, Tag
from gateway.smpp.receipt import MESSAGE_STATE, Receipt, format_receipt

STAT_OF_STATE = {
    "delivered": "DELIVRD",
    "failed": "UNDELIV",
    "expired": "EXPIRED",
    "rejected": "REJECTD",
    "deleted": "DELETED",
}
"""Our final message states as receipt ``stat`` values."""

ESM_DELIVERY_RECEIPT = 0x04
NETWORK_TYPE_GSM = 3  # §5.3.2.31: the error code that follows is GSM's (here: ours)


def wants_receipt(registered_delivery: int, state: str) -> bool:
    """Whether the originator asked to hear of ``state`` (a final state)."""
    mode = registered_delivery & 0x03
    return mode == 1 or (mode == 2 and state != "delivered")


def joined_registered_delivery(values: Iterable[int]) -> int:
    """The registered_delivery of a message joined from parts that may each ask differently
    (Kannel: 0x11 on the first part, 0x00 on the others): any part asking for a receipt asks
    for the message's. Bits 0-1 (SMSC delivery receipt): the strongest request among the parts
    (1, every final state, over 2, failure only, over 0, none; 3 is refused at submit); bits 2-7
    (SME acknowledgements, intermediate notification): those of any part. The one rule for
    the parts joined live, at start after a restart, and when a group expires."""
    mode = other = 0
    for value in values:
        asked = value & 0x03
        if asked == 1 or (asked == 2 and mode == 0):
            mode = asked
        other |= value & 0xFC
    return other | mode


def _npi(ton: int) -> int:
    return 1 if ton in (1, 2) else 0


def receipt_pdu(
    *,
    message_id: str,
    source: str,
    source_ton: int,
    destination: str,
    state: str,
    err: int,
    submit_date: datetime,
    done_date: datetime,
    text: str,
    parts: int = 1,
) -> Pdu:
    """The deliver_sm receipt of a message (``message_id`` as the carrier knows it)."""
    stat = STAT_OF_STATE[state]
    delivered = 1 if state == "delivered" else 0
    sub = min(max(parts, 1), 999)
    body = format_receipt(
        Receipt(message_id, sub, sub * delivered, submit_date, done_date, stat, min(err, 999), text)
    )
    pdu = Pdu(
        CommandId.DELIVER_SM,
        0,
        0,
        {
            "service_type": "",
            "source_addr_ton": 1,
            "source_addr_npi": 1,
            "source_addr": destination,
            "dest_addr_ton": source_ton,
            "dest_addr_npi": _npi(source_ton),
            "destination_addr": source,
            "esm_class": ESM_DELIVERY_RECEIPT,
            "protocol_id": 0,
            "priority_flag": 0,
            "schedule_delivery_time": "",
            "validity_period": "",
            "registered_delivery": 0,
            "replace_if_present_flag": 0,
            "data_coding": 0,
            "sm_default_msg_id": 0,
            # ASCII reads the same in GSM 03.38 and Latin-1, whatever the carrier's data_coding
            # 0 means; a character outside it in the text excerpt becomes '?'
            "short_message": body.encode("ascii", errors="replace"),
        },
    )
    pdu.set_tlv(Tag.receipted_message_id, message_id.encode("ascii") + b"\0")
    pdu.set_tlv_int(Tag.message_state, MESSAGE_STATE[stat])
    if err:
        pdu.set_tlv(
            Tag.network_error_code,
            bytes([NETWORK_TYPE_GSM]) + min(err, 0xFFFF).to_bytes(2, "big"),
        )
    return pdu
