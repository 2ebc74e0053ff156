# Tests of gateway/smpp/hops.py: the env path TLV and loop protection.
from __future__ import annotations

import pytest

from gateway.smpp.codec import Pdu, SmppError, decode, encode
from gateway.smpp.constants import CommandId, Status, VendorStatus
from gateway.smpp.hops import PATH_TAG, check_path, extend, parse_path, read_path


def test_path_round_trips_through_a_pdu():
    pdu = Pdu(CommandId.SUBMIT_SM, 1, 0, {"destination_addr": "964222"})
    pdu.set_tlv(PATH_TAG, extend(("env1",), "env4").encode("ascii"))
    assert read_path(decode(encode(pdu))) == ("env1", "env4")
    assert read_path(Pdu(CommandId.SUBMIT_SM, 1)) == ()


def test_a_message_that_passed_here_is_a_loop():
    with pytest.raises(SmppError) as caught:
        check_path(("env1", "env4"), "env1", 5)
    assert caught.value.status == VendorStatus.GW_LOOP_DETECTED
    assert "env1 > env4" in caught.value.reason


def test_hop_limit():
    check_path(("a", "b"), "c", 3)
    with pytest.raises(SmppError) as caught:
        check_path(("a", "b", "c"), "d", 3)
    assert caught.value.status == VendorStatus.GW_TOO_MANY_HOPS


@pytest.mark.parametrize("raw", ["env 1", "a,,b", "x" * 300, "é"])
def test_malformed_paths_are_refused(raw):
    with pytest.raises(SmppError) as caught:
        parse_path(raw)
    assert caught.value.status == Status.ESME_RINVOPTPARAMVAL


def test_non_ascii_tlv_is_refused():
    pdu = Pdu(CommandId.SUBMIT_SM, 1)
    pdu.set_tlv(PATH_TAG, "énv".encode())
    with pytest.raises(SmppError):
        read_path(pdu)
