# A peer that hangs, answers errors or takes nothing: its traffic fails over to the next
# connection, is retried, is held back within bounds, and drains when the peer is back.
from __future__ import annotations

import os
import signal

from tests.reliability.test_soak import sample
from tests.scenarios.carrier import Carrier
from tests.scenarios.conftest import DELIVERY
from tests.scenarios.test_section1_carriers_to_apps import rows
from tests.scenarios.test_section2_3_environments import (
    JANE_DID,
    JANE_PW,
    LINK_PW,
    TO_ENV4,
    app,
    env_pair,
)

HUNG = "Messages to env5"
FAST = {"response_timeout": "2s"}  # env1 gives up on an unanswered request after 2 s
ESME_RMSGQFUL = 0x14
WINDOW = 10  # a connection's default window: what a hung peer may hold unanswered


def delivered_to(ua, texts: set[str], timeout: float = 60) -> list[str]:
    """Every MESSAGE body the app receives until it has all of ``texts``."""
    bodies: list[str] = []
    while not texts <= set(bodies):
        bodies.append(ua.next_message(timeout=timeout).body)
    return bodies


def receipts(tata: Carrier, count: int) -> dict[str, bytes]:
    """receipted id -> receipt text of the next ``count`` deliver_sm."""
    found = {}
    for _ in range(count):
        pdu = tata.next_delivered(timeout=60)
        found[pdu.receipted_message_id] = pdu.short_message
    return found


def test_a_peer_that_stops_answering_is_let_go_and_its_traffic_fails_over(make_env, pg_url, sip_ua):
    env1, env4 = env_pair(make_env, pg_url, smpp=FAST)
    jane = app(sip_ua, env4, "2222", JANE_PW)
    # env5: a real peer env1 binds to first (a more specific policy), then frozen: its
    # sockets stay open and the kernel takes the bytes, but nothing answers
    env5 = make_env("env5", accounts=[], carrier=False)
    env5.ctl.ok(
        "carrier", "add", "env1", "--system-id", "GW-ENV1", "--password", LINK_PW,
        "--allow-ip", "127.0.0.1",
    )  # fmt: skip
    env5.start()
    env1.ctl.ok(
        "connection", "add", HUNG, "--host", "127.0.0.1", "--port", str(env5.smpp_port),
        "--system-id", "GW-ENV1", "--password", LINK_PW,
    )  # fmt: skip
    env1.ctl.ok("policy", "add", "--pattern", "2224%", "--connection", HUNG)
    env1.wait_for_log(f"connection {HUNG} bound trx")
    env1.wait_for_log(r"routing: \d+ DIDs, 2 policies \(version")  # the new policy in use too
    os.kill(env5.process.pid, signal.SIGSTOP)
    texts = [f"while env5 hangs {i}" for i in range(30)]
    with Carrier(env1.smpp_port) as tata:
        resps = tata.submit_many(texts, destination_addr=JANE_DID)
        assert all(r.status == 0 for r in resps)
        got = delivered_to(jane, set(texts))
        env1.wait_for_log(f"connection {HUNG} closing: enquire_link unanswered")
        # let go: what comes next goes straight to env4 while env5 still hangs
        later = [f"after env5 was let go {i}" for i in range(10)]
        resps += tata.submit_many(later, destination_addr=JANE_DID)
        assert all(r.status == 0 for r in resps)
        got += delivered_to(jane, set(later))
        back = receipts(tata, 40)
    env5.kill()  # what it held unanswered dies with it: nothing is delivered twice
    assert sorted(got) == sorted(texts + later)
    assert set(back) == {r.message_id for r in resps}
    assert all(b"stat:DELIVRD" in text for text in back.values())
    env1.stop()
    env4.stop()
    mine = [r for r in rows(env1) if r["body_text"] in set(got)]
    assert len(mine) == 40
    assert {(r["state"], r["route"]) for r in mine} == {("delivered", f"smpp:{TO_ENV4}")}
    # the first ones went to env5, were not answered there, and failed over at once
    assert f"connection '{HUNG}': no submit_sm_resp in time" in env1.log()


def test_a_peer_that_throttles_gets_its_messages_retried(make_env, pg_url, sip_ua):
    env1, env4 = env_pair(make_env, pg_url, link_throughput=5)
    jane = app(sip_ua, env4, "2222", JANE_PW)
    texts = [f"throttled {i}" for i in range(20)]
    with Carrier(env1.smpp_port) as tata:
        resps = tata.submit_many(texts, destination_addr=JANE_DID)
        assert all(r.status == 0 for r in resps)
        got = delivered_to(jane, set(texts))
        back = receipts(tata, 20)
    assert sorted(got) == sorted(texts)  # each once
    assert set(back) == {r.message_id for r in resps}
    assert all(b"stat:DELIVRD" in text for text in back.values())
    env1.stop()
    env4.stop()
    log = env1.log()
    assert "peer answered ESME_RTHROTTLED" in log
    mine = [r for r in rows(env1) if r["body_text"] in set(texts)]
    assert {r["state"] for r in mine} == {"delivered"}
    assert max(r["attempts"] for r in mine) > 1


def test_a_peer_that_takes_nothing_holds_back_the_carrier_and_drains_when_back(
    make_env, pg_url, sip_ua
):
    limit = 200
    delivery = {**DELIVERY, "max_waiting_per_route": limit, "max_queued": 100}
    env1, env4 = env_pair(make_env, pg_url, smpp=FAST, delivery=delivery)
    jane = app(sip_ua, env4, "2222", JANE_PW)
    texts = [f"for a frozen peer {i}" for i in range(1000)]
    try:
        with Carrier(env1.smpp_port) as tata:
            warm = [f"warming up {i}" for i in range(50)]
            assert all(r.status == 0 for r in tata.submit_many(warm, destination_addr=JANE_DID))
            delivered_to(jane, set(warm))
            receipts(tata, len(warm))
            rss_before, fds_before = sample(env1.process.pid)
            os.kill(env4.process.pid, signal.SIGSTOP)  # the peer, bound, takes nothing any more
            resps = tata.submit_many(texts, destination_addr=JANE_DID)
            accepted = [r for r in resps if r.status == 0]
            refused = [r for r in resps if r.status != 0]
            assert len(accepted) == limit, len(accepted)  # then held back, not stored
            assert {r.status for r in refused} == {ESME_RMSGQFUL}
            env1.wait_for_log(f"connection {TO_ENV4} closing: enquire_link unanswered")
            rss_after, fds_after = sample(env1.process.pid)
            kept = {r["body_text"] for r in rows(env1) if r["body_text"] in set(texts)}
            assert len(kept) == limit
            os.kill(env4.process.pid, signal.SIGCONT)  # back
            got = delivered_to(jane, kept)
            back = receipts(tata, limit)
            assert set(back) >= {r.message_id for r in accepted}
            # drained: the carrier is taken again at once
            assert tata.submit("once drained", destination_addr=JANE_DID).status == 0
            assert "once drained" in delivered_to(jane, {"once drained"})
    finally:
        os.kill(env4.process.pid, signal.SIGCONT)
    print(
        f"frozen peer: {len(accepted)} accepted, {len(refused)} refused ESME_RMSGQFUL,"
        f" {len(got) - len(set(got))} delivered twice, RSS {rss_before} -> {rss_after} KiB,"
        f" fds {fds_before} -> {fds_after}"
    )
    # what env4 held unanswered when it froze is taken again by it when it thaws, and sent
    # again by env1 (it never got the answers): at most one window twice
    assert len(got) - len(set(got)) <= WINDOW
    assert set(got) == kept
    assert rss_after - rss_before < 10 * 1024, (rss_before, rss_after)
    assert fds_after <= fds_before + 5, (fds_before, fds_after)
    env1.stop()
    env4.stop()
    mine = [r for r in rows(env1) if r["body_text"] in kept]
    assert {r["state"] for r in mine} == {"delivered"}
