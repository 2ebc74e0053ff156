# SMPP 3.4 numbers: command ids (§5.1.2.1), command_status values (§5.1.3), TLV tags (§5.3.2).
"""The numeric vocabulary of SMPP 3.4, as ``IntEnum`` so logs show names and wire shows ints."""

from __future__ import annotations

from enum import IntEnum

RESPONSE_BIT = 0x80000000


class CommandId(IntEnum):
    """command_id values of SMPP 3.4 §5.1.2.1; a response is its request with bit 31 set."""

    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


_KNOWN_IDS = frozenset(int(c) for c in CommandId)


def is_response(command_id: int) -> bool:
    """True for a response command_id (generic_nack included)."""
    return bool(command_id & RESPONSE_BIT)


def resp_of(command_id: int) -> CommandId:
    """The response command_id answering ``command_id`` (submit_sm -> submit_sm_resp).

    Raises ``ValueError`` for responses, for requests without a response (outbind,
    alert_notification) and for unknown ids: those are answered by generic_nack, if at all."""
    resp = command_id | RESPONSE_BIT
    if command_id & RESPONSE_BIT or command_id not in _KNOWN_IDS or resp not in _KNOWN_IDS:
        raise ValueError(f"command_id 0x{command_id:08x} has no response PDU")
    return CommandId(resp)


class Status(IntEnum):
    """command_status values of SMPP 3.4 §5.1.3 (0x09, 0x10, 0x12 and gaps are reserved)."""

    ESME_ROK = 0x00000000
    ESME_RINVMSGLEN = 0x00000001
    ESME_RINVCMDLEN = 0x00000002
    ESME_RINVCMDID = 0x00000003
    ESME_RINVBNDSTS = 0x00000004
    ESME_RALYBND = 0x00000005
    ESME_RINVPRTFLG = 0x00000006
    ESME_RINVREGDLVFLG = 0x00000007
    ESME_RSYSERR = 0x00000008
    ESME_RINVSRCADR = 0x0000000A
    ESME_RINVDSTADR = 0x0000000B
    ESME_RINVMSGID = 0x0000000C
    ESME_RBINDFAIL = 0x0000000D
    ESME_RINVPASWD = 0x0000000E
    ESME_RINVSYSID = 0x0000000F
    ESME_RCANCELFAIL = 0x00000011
    ESME_RREPLACEFAIL = 0x00000013
    ESME_RMSGQFUL = 0x00000014
    ESME_RINVSERTYP = 0x00000015
    ESME_RINVNUMDESTS = 0x00000033
    ESME_RINVDLNAME = 0x00000034
    ESME_RINVDESTFLAG = 0x00000040
    ESME_RINVSUBREP = 0x00000042
    ESME_RINVESMCLASS = 0x00000043
    ESME_RCNTSUBDL = 0x00000044
    ESME_RSUBMITFAIL = 0x00000045
    ESME_RINVSRCTON = 0x00000048
    ESME_RINVSRCNPI = 0x00000049
    ESME_RINVDSTTON = 0x00000050
    ESME_RINVDSTNPI = 0x00000051
    ESME_RINVSYSTYP = 0x00000053
    ESME_RINVREPFLAG = 0x00000054
    ESME_RINVNUMMSGS = 0x00000055
    ESME_RTHROTTLED = 0x00000058
    ESME_RINVSCHED = 0x00000061
    ESME_RINVEXPIRY = 0x00000062
    ESME_RINVDFTMSGID = 0x00000063
    ESME_RX_T_APPN = 0x00000064
    ESME_RX_P_APPN = 0x00000065
    ESME_RX_R_APPN = 0x00000066
    ESME_RQUERYFAIL = 0x00000067
    ESME_RINVOPTPARSTREAM = 0x000000C0
    ESME_ROPTPARNOTALLWD = 0x000000C1
    ESME_RINVPARLEN = 0x000000C2
    ESME_RMISSINGOPTPARAM = 0x000000C3
    ESME_RINVOPTPARAMVAL = 0x000000C4
    ESME_RDELIVERYFAILURE = 0x000000FE
    ESME_RUNKNOWNERR = 0x000000FF


class VendorStatus(IntEnum):
    """This gateway's command_status values in the SMSC vendor range 0x400-0x4FF (§5.1.3)."""

    GW_LOOP_DETECTED = 0x00000400  # the message already passed through this environment
    GW_TOO_MANY_HOPS = 0x00000401  # it passed through more environments than allowed


class Tag(IntEnum):
    """Optional parameter (TLV) tags of SMPP 3.4 §5.3.2; 0x1400-0x3FFF are vendor tags.

    Members carry the spec's lowercase names (``Tag.sar_msg_ref_num``, which is what ``.name``
    and logs show) with an UPPER_CASE alias each (``Tag.SAR_MSG_REF_NUM``), so both styles
    used next to ``CommandId``/``Status`` work."""

    dest_addr_subunit = DEST_ADDR_SUBUNIT = 0x0005
    dest_network_type = DEST_NETWORK_TYPE = 0x0006
    dest_bearer_type = DEST_BEARER_TYPE = 0x0007
    dest_telematics_id = DEST_TELEMATICS_ID = 0x0008
    source_addr_subunit = SOURCE_ADDR_SUBUNIT = 0x000D
    source_network_type = SOURCE_NETWORK_TYPE = 0x000E
    source_bearer_type = SOURCE_BEARER_TYPE = 0x000F
    source_telematics_id = SOURCE_TELEMATICS_ID = 0x0010
    qos_time_to_live = QOS_TIME_TO_LIVE = 0x0017
    payload_type = PAYLOAD_TYPE = 0x0019
    additional_status_info_text = ADDITIONAL_STATUS_INFO_TEXT = 0x001D
    receipted_message_id = RECEIPTED_MESSAGE_ID = 0x001E
    ms_msg_wait_facilities = MS_MSG_WAIT_FACILITIES = 0x0030
    privacy_indicator = PRIVACY_INDICATOR = 0x0201
    source_subaddress = SOURCE_SUBADDRESS = 0x0202
    dest_subaddress = DEST_SUBADDRESS = 0x0203
    user_message_reference = USER_MESSAGE_REFERENCE = 0x0204
    user_response_code = USER_RESPONSE_CODE = 0x0205
    source_port = SOURCE_PORT = 0x020A
    destination_port = DESTINATION_PORT = 0x020B
    sar_msg_ref_num = SAR_MSG_REF_NUM = 0x020C
    language_indicator = LANGUAGE_INDICATOR = 0x020D
    sar_total_segments = SAR_TOTAL_SEGMENTS = 0x020E
    sar_segment_seqnum = SAR_SEGMENT_SEQNUM = 0x020F
    sc_interface_version = SC_INTERFACE_VERSION = 0x0210
    callback_num_pres_ind = CALLBACK_NUM_PRES_IND = 0x0302
    callback_num_atag = CALLBACK_NUM_ATAG = 0x0303
    number_of_messages = NUMBER_OF_MESSAGES = 0x0304
    callback_num = CALLBACK_NUM = 0x0381
    dpf_result = DPF_RESULT = 0x0420
    set_dpf = SET_DPF = 0x0421
    ms_availability_status = MS_AVAILABILITY_STATUS = 0x0422
    network_error_code = NETWORK_ERROR_CODE = 0x0423
    message_payload = MESSAGE_PAYLOAD = 0x0424
    delivery_failure_reason = DELIVERY_FAILURE_REASON = 0x0425
    more_messages_to_send = MORE_MESSAGES_TO_SEND = 0x0426
    message_state = MESSAGE_STATE = 0x0427
    ussd_service_op = USSD_SERVICE_OP = 0x0501
    display_time = DISPLAY_TIME = 0x1201
    sms_signal = SMS_SIGNAL = 0x1203
    ms_validity = MS_VALIDITY = 0x1204
    alert_on_message_delivery = ALERT_ON_MESSAGE_DELIVERY = 0x130C
    its_reply_type = ITS_REPLY_TYPE = 0x1380
    its_session_info = ITS_SESSION_INFO = 0x1383


VENDOR_TAGS = range(0x1400, 0x4000)

# Allowed value lengths (min, max) of each known TLV, from the Length/Value rows of §5.3.2.x.
# A known tag outside its range is ESME_RINVPARLEN; unknown and vendor tags are not checked.
_FIXED = {
    Tag.DEST_ADDR_SUBUNIT: 1,
    Tag.DEST_NETWORK_TYPE: 1,
    Tag.DEST_BEARER_TYPE: 1,
    Tag.DEST_TELEMATICS_ID: 2,
    Tag.SOURCE_ADDR_SUBUNIT: 1,
    Tag.SOURCE_NETWORK_TYPE: 1,
    Tag.SOURCE_BEARER_TYPE: 1,
    Tag.SOURCE_TELEMATICS_ID: 1,
    Tag.QOS_TIME_TO_LIVE: 4,
    Tag.PAYLOAD_TYPE: 1,
    Tag.MS_MSG_WAIT_FACILITIES: 1,
    Tag.PRIVACY_INDICATOR: 1,
    Tag.USER_MESSAGE_REFERENCE: 2,
    Tag.USER_RESPONSE_CODE: 1,
    Tag.SOURCE_PORT: 2,
    Tag.DESTINATION_PORT: 2,
    Tag.SAR_MSG_REF_NUM: 2,
    Tag.LANGUAGE_INDICATOR: 1,
    Tag.SAR_TOTAL_SEGMENTS: 1,
    Tag.SAR_SEGMENT_SEQNUM: 1,
    Tag.SC_INTERFACE_VERSION: 1,
    Tag.CALLBACK_NUM_PRES_IND: 1,
    Tag.NUMBER_OF_MESSAGES: 1,
    Tag.DPF_RESULT: 1,
    Tag.SET_DPF: 1,
    Tag.MS_AVAILABILITY_STATUS: 1,
    Tag.NETWORK_ERROR_CODE: 3,
    Tag.DELIVERY_FAILURE_REASON: 1,
    Tag.MORE_MESSAGES_TO_SEND: 1,
    Tag.MESSAGE_STATE: 1,
    Tag.USSD_SERVICE_OP: 1,
    Tag.DISPLAY_TIME: 1,
    Tag.SMS_SIGNAL: 2,
    Tag.MS_VALIDITY: 1,
    Tag.ALERT_ON_MESSAGE_DELIVERY: 0,
    Tag.ITS_REPLY_TYPE: 1,
    Tag.ITS_SESSION_INFO: 2,
}
TLV_LENGTHS: dict[int, tuple[int, int]] = {int(t): (n, n) for t, n in _FIXED.items()} | {
    Tag.ADDITIONAL_STATUS_INFO_TEXT: (1, 256),  # C-Octet String, max 256 incl. NUL
    Tag.RECEIPTED_MESSAGE_ID: (1, 65),  # C-Octet String, max 65 incl. NUL
    Tag.SOURCE_SUBADDRESS: (2, 23),
    Tag.DEST_SUBADDRESS: (2, 23),
    Tag.CALLBACK_NUM_ATAG: (0, 65),
    Tag.CALLBACK_NUM: (4, 19),
    Tag.MESSAGE_PAYLOAD: (0, 0xFFFF),
}
"""Allowed (min, max) value length per known tag; integer tags have min == max."""
