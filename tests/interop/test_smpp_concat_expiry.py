# A concatenated message whose parts never all arrive fails after the reassembly timeout.
from __future__ import annotations

import asyncio
from datetime import timedelta

from gateway.smpp.codec import Pdu
from gateway.smpp.constants import CommandId, Status
from gateway.smpp.server import utcnow
from gateway.store.schema import fragments, messages
from tests.interop.inprocess import provisioned, run_smpp
from tests.interop.test_smpp_server import raw_exchange
from tests.stored import plain_rows


def part(seq: int, total: int, text: bytes) -> Pdu:
    udh = bytes([5, 0, 3, 0x42, total, seq])
    return Pdu(
        CommandId.SUBMIT_SM,
        100 + seq,
        0,
        {
            "source_addr_ton": 5,
            "source_addr": "AsiaCell",
            "dest_addr_ton": 1,
            "destination_addr": "964111222333",
            "esm_class": 0x40,
            "registered_delivery": 1,
            "short_message": udh + text,
        },
    )


def rows(ctl, table) -> list[dict]:
    return plain_rows(ctl.config, table)  # texts decrypted (retention.encrypt_text)


def test_missing_part_fails_the_message_after_the_reassembly_timeout(tmp_path, store_url) -> None:
    ctl = provisioned(tmp_path, store_url)

    async def scenario(server, port) -> None:
        loop = asyncio.get_running_loop()

        def carrier() -> None:
            import socket

            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            bind = Pdu(
                CommandId.BIND_TRANSCEIVER, 1, 0, {"system_id": "TATA", "password": "tata1234"}
            )
            assert raw_exchange(sock, bind).status == Status.ESME_ROK
            for seq in (1, 3, 3):  # part 2 of 3 never comes; part 3 is sent twice
                assert (
                    raw_exchange(sock, part(seq, 3, f"part {seq} ".encode())).status
                    == Status.ESME_ROK
                )
            sock.close()

        await loop.run_in_executor(None, carrier)
        await server.writer.barrier()
        assert rows(ctl, messages) == [] and len(rows(ctl, fragments)) == 3
        # the timeout passes (driven, not slept): the group expires, its message is written failed
        server.expire_parts(utcnow() + server.config.smpp.reassembly_timeout + timedelta(seconds=1))
        await server.writer.barrier()  # reads the parts
        await server.writer.barrier()  # writes the failed message

    run_smpp(ctl, scenario)
    [message] = rows(ctl, messages)
    assert message["state"] == "failed" and message["reason"] == "parts 2 of 3 never arrived"
    assert message["body_text"] == "part 1 part 3 " and message["final_at"] is not None  # once
    assert {r["message_id"] for r in rows(ctl, fragments)} == {message["id"]}
