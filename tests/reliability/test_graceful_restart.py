# A graceful restart (SIGTERM) while messages are being delivered to apps: what is in flight
# is answered before the process exits, so after the restart nothing is lost and - unlike
# a crash - nothing is delivered twice.
from __future__ import annotations

from tests.reliability.test_kills import APPS, Inbox
from tests.scenarios.carrier import Carrier
from tests.scenarios.conftest import JOHN_PW
from tests.scenarios.test_section1_carriers_to_apps import rows
from tests.scenarios.test_section2_3_environments import app

COUNT = 2000  # half to each app


def test_sigterm_during_delivery_loses_nothing_and_delivers_nothing_twice(make_env, sip_ua):
    gw = make_env(accounts=[(a, did, JOHN_PW) for a, did in APPS]).start()
    apps = [app(sip_ua, gw, account, JOHN_PW) for account, _ in APPS]
    inbox = Inbox(apps)
    texts = [f"restart {i}" for i in range(COUNT)]
    receipts: list[str] = []
    try:
        with Carrier(gw.smpp_port) as tata:
            resps = [
                *tata.submit_many(texts[0::2], destination_addr="964" + APPS[0][1]),
                *tata.submit_many(texts[1::2], destination_addr="964" + APPS[1][1]),
            ]
            assert all(r.status == 0 for r in resps)
            assert inbox.wait(lambda bodies: len(bodies) >= 40)  # delivery under way
            assert gw.stop() == 0  # SIGTERM: answers in flight, unbinds, exits
            while not tata.delivered.empty():
                receipts.append(tata.delivered.get().receipted_message_id)
        at_stop = len(inbox.bodies)
        first_life = gw.log()
        gw.start()  # the same store; the apps' registrations come back from it
        with Carrier(gw.smpp_port) as tata:
            assert inbox.wait(lambda bodies: set(texts) <= set(bodies))
            while len(set(receipts)) < COUNT:
                receipts.append(tata.next_delivered(timeout=60).receipted_message_id)
    finally:
        inbox.close()
    print(f"graceful restart: {at_stop} of {COUNT} delivered before the stop")
    assert at_stop < COUNT  # the stop did come mid-delivery
    assert sorted(inbox.bodies) == sorted(texts)  # each exactly once
    assert set(receipts) == {r.message_id for r in resps}
    gw.stop()
    mine = [r for r in rows(gw) if r["body_text"] in set(texts)]
    assert len(mine) == COUNT and {r["state"] for r in mine} == {"delivered"}
    assert "in flight at shutdown" not in first_life  # nothing was left to send again
    assert "did not unbind in time" not in first_life
