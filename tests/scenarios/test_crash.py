# Accepted means delivered: SIGKILL the gateway in the middle of delivering, restart it, and
# every message a carrier had been answered ESME_ROK for reaches the app (at least once).
from __future__ import annotations

import collections

from tests.scenarios.carrier import Carrier
from tests.scenarios.test_section1_carriers_to_apps import john, rows

COUNT = 6000
KILL_AFTER = 500  # messages the app has received when the gateway is killed


def test_sigkill_mid_delivery_loses_nothing(make_env, sip_ua):
    gw = make_env().start()
    texts = [f"kept {i:05d}" for i in range(COUNT)]
    with Carrier(gw.smpp_port) as tata:  # John is offline: every message is parked
        resps = tata.submit_many(texts, registered_delivery=0)
    assert all(r.status == 0 for r in resps)
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    got = [app.next_message(timeout=30).body for _ in range(KILL_AFTER)]
    gw.kill()  # SIGKILL, mid-delivery
    before_restart = len(app.received)
    assert before_restart < COUNT, "delivery finished before the kill: the test proves nothing"
    gw.start()  # same store; the registration is restored from it
    seen = collections.Counter(got)
    while len(seen) < COUNT:
        seen[app.next_message(timeout=60).body] += 1
    gw.stop()
    assert set(seen) == set(texts)  # nothing accepted was lost
    duplicates = sum(n - 1 for n in seen.values())
    # at-least-once: only messages answered just before the kill, whose outcome was not yet
    # committed, are sent again; never the whole backlog, never a message twice more
    assert duplicates <= 50, duplicates
    assert max(seen.values()) <= 2
    stored = rows(gw)
    assert len(stored) == COUNT and {r["state"] for r in stored} == {"delivered"}
    print(
        f"crash test: {COUNT} accepted, killed after {before_restart} received,"
        f" {duplicates} sent twice, 0 lost"
    )
