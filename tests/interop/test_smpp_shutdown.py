# Graceful stop: SIGTERM under load answers every submit_sm in flight, unbinds, loses nothing.
from __future__ import annotations

import asyncio
import signal

from gateway.smpp.codec import Pdu, decode, encode
from gateway.smpp.constants import CommandId, Status
from tests.interop.peers import bound_link
from tests.interop.test_smpp_crash import stored_ids


async def submit_until_unbound(port: int, stop_after: int, stop) -> dict:
    reader, writer, framer = await bound_link(port)
    body = {
        "source_addr_ton": 5,
        "source_addr": "AsiaCell",
        "dest_addr_ton": 1,
        "destination_addr": "964111222333",
        "short_message": b"shutdown test",
    }
    result = {"sent": 0, "answered": 0, "acked": set(), "refused": set(), "unbind": False}
    sequence, in_flight, stopping = 1, 0, False
    while True:
        while in_flight < 50 and not result["unbind"]:
            sequence += 1
            writer.write(encode(Pdu(CommandId.SUBMIT_SM, sequence, 0, body)))
            in_flight += 1
            result["sent"] += 1
        data = await reader.read(65536)
        if not data:
            break
        for frame in framer.feed(data):
            pdu = decode(frame)
            if pdu.command_id == CommandId.SUBMIT_SM_RESP:
                in_flight -= 1
                result["answered"] += 1
                if pdu.status == Status.ESME_ROK:
                    result["acked"].add(int(pdu.params["message_id"]))
                else:
                    result["refused"].add(pdu.status)
            elif pdu.command_id == CommandId.UNBIND:
                result["unbind"] = True
                writer.write(encode(Pdu(CommandId.UNBIND_RESP, pdu.sequence)))
        if not stopping and len(result["acked"]) >= stop_after:
            stop()
            stopping = True
    writer.close()
    return result


def test_sigterm_answers_in_flight_unbinds_and_keeps_everything(gateway) -> None:
    gateway.start()
    result = asyncio.run(
        asyncio.wait_for(
            submit_until_unbound(
                gateway.smpp_port, 2000, lambda: gateway.process.send_signal(signal.SIGTERM)
            ),
            120,
        )
    )
    assert gateway.process.wait(timeout=60) == 0
    assert result["unbind"], "the gateway did not unbind the carrier"
    # every submit_sm got its resp, even those that crossed the unbind on the wire; the ones
    # refused while stopping were told to retry (throttled) or that the bind was ending
    assert result["answered"] == result["sent"]
    assert result["refused"] <= {Status.ESME_RTHROTTLED, Status.ESME_RINVBNDSTS}
    assert result["acked"] <= stored_ids(gateway)
    log = gateway.log()
    assert "SIGTERM received, shutting down" in log and "stopped" in log
