# The peer environment goes down: messages for it are kept and retried, and the backlog
# drains, receipts and all, when it comes back.
from __future__ import annotations

import socket

from tests.scenarios.carrier import Carrier
from tests.scenarios.test_section1_carriers_to_apps import rows
from tests.scenarios.test_section2_3_environments import (
    JANE_DID,
    JANE_PW,
    TO_ENV4,
    app,
    env_pair,
)

COUNT = 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_peer_environment_killed_then_back_drains_the_backlog(make_env, pg_url, sip_ua):
    # env4 keeps its SMPP port across the restart, as a real peer would
    port = free_port()
    env1, env4 = env_pair(
        make_env, pg_url, env4_extra={"smpp": {"listen": [{"host": "127.0.0.1", "port": port}]}}
    )
    jane = app(sip_ua, env4, "2222", JANE_PW)
    env4.kill()  # the peer dies
    texts = [f"while env4 is down {i}" for i in range(COUNT)]
    with Carrier(env1.smpp_port) as tata:
        resps = tata.submit_many(texts, destination_addr=JANE_DID)
        assert all(r.status == 0 for r in resps)  # kept by env1, not refused
        kept = [r for r in rows(env1) if r["body_text"] in set(texts)]
        assert len(kept) == COUNT and not {r["state"] for r in kept} & {"delivered", "failed"}
        env4.start()  # back on the same port; Jane's registration comes back from its store
        env1.wait_for_log(f"connection {TO_ENV4} bound trx", timeout=60, count=2)  # again
        got = set()
        while len(got) < COUNT:
            got.add(jane.next_message(timeout=60).body)
        receipts = {tata.next_delivered(timeout=60).receipted_message_id for _ in range(COUNT)}
    assert got == set(texts)
    assert receipts == {r.message_id for r in resps}
    env1.stop()
    env4.stop()
    mine = [r for r in rows(env1) if r["body_text"] in got]
    assert len(mine) == COUNT and {r["state"] for r in mine} == {"delivered"}
