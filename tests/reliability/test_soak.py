# A bounded soak: steady SMPP -> SIP traffic while one app keeps unregistering and registering
# again; nothing lost, memory and open files flat. GATEWAY_SOAK_SECONDS sets the length (CI:
# 60 s; the bench run in bench/README.md: 600 s).
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from tests.reliability.test_kills import APPS, Inbox
from tests.scenarios.carrier import Carrier
from tests.scenarios.conftest import JOHN_PW
from tests.scenarios.test_section1_carriers_to_apps import rows
from tests.scenarios.test_section2_3_environments import app

SECONDS = float(os.environ.get("GATEWAY_SOAK_SECONDS") or 60)
RATE = 100  # messages per second, half to each app
BURST = 20  # submitted together, every BURST / RATE seconds
CHURN_EVERY = 5.0  # seconds between two re-registrations of the second app


def sample(pid: int) -> tuple[int, int]:
    """(RSS in KiB, open file descriptors) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def test_soak_steady_traffic_with_registration_churn(make_env, sip_ua):
    gw = make_env(accounts=[(a, did, JOHN_PW) for a, did in APPS]).start()
    pid = gw.process.pid
    apps = [app(sip_ua, gw, account, JOHN_PW) for account, _ in APPS]  # registered
    churning = apps[1]  # apps[0] stays registered throughout
    inbox = Inbox(apps)
    acked: set[str] = set()
    sent_at: dict[str, float] = {}
    samples: list[tuple[float, int, int]] = []
    churns = 0
    began = time.monotonic()
    next_churn = began + CHURN_EVERY
    n = 0
    try:
        with Carrier(gw.smpp_port) as tata:
            while (now := time.monotonic()) - began < SECONDS:
                texts = [f"soak {n + i:07d}" for i in range(BURST)]
                dests = [f"964{APPS[(n + i) % 2][1]}" for i in range(BURST)]
                for text, dest in zip(texts, dests, strict=True):
                    sent_at[text] = time.monotonic()
                    tata.send(text, registered_delivery=0, destination_addr=dest)
                for _ in texts:
                    assert tata.resps.get(timeout=30).status == 0
                acked.update(texts)
                n += BURST
                if now >= next_churn:  # the second app goes away and comes back
                    assert churning.unregister() == 200
                    assert churning.register() == 200
                    churns += 1
                    next_churn = now + CHURN_EVERY
                if not samples or now - samples[-1][0] >= 5:
                    samples.append((now, *sample(pid)))
                time.sleep(max(0.0, began + n / RATE - time.monotonic()))  # pacing, not waiting
            assert inbox.wait(lambda b: acked <= set(b), timeout=120), len(
                acked - set(inbox.bodies)
            )
            samples.append((time.monotonic(), *sample(pid)))
    finally:
        inbox.close()
    gw.stop()
    stored = {r["body_text"]: r["state"] for r in rows(gw)}
    assert all(stored[t] == "delivered" for t in acked)  # nothing lost
    third = max(1, len(samples) // 3)
    early, late = samples[third : 2 * third], samples[-third:]
    rss_early = statistics.median(s[1] for s in early or samples[:1])
    rss_late = statistics.median(s[1] for s in late)
    fds_early = max(s[2] for s in early or samples[:1])
    fds_late = max(s[2] for s in late)
    # latency to the app that stays registered, by third of the run (reported, not asserted)
    steady_texts = sorted(t for t in acked if int(t.split()[1]) % 2 == 0)
    latencies = [1000 * (inbox.arrived[t] - sent_at[t]) for t in steady_texts]
    cut = max(1, len(latencies) // 3)
    p99 = [statistics.quantiles(part, n=100)[98] if len(part) > 1 else part[0]
           for part in (latencies[:cut], latencies[cut:2 * cut], latencies[2 * cut:])]  # fmt: skip
    print(
        f"soak: {SECONDS:.0f} s, {len(acked)} messages, 0 lost, {churns} re-registrations, "
        f"RSS {rss_early / 1024:.0f} -> {rss_late / 1024:.0f} MiB, fds {fds_early} -> {fds_late}, "
        f"p50 {statistics.median(latencies):.1f} ms, p99 by third "
        + " / ".join(f"{v:.1f}" for v in p99)
        + " ms"
    )
    assert fds_late <= fds_early + 5  # open files flat
    assert rss_late <= rss_early * 1.25 + 10 * 1024  # memory flat (allocator noise allowed)
