# `gatewayctl demo` on this install: one SMS from a carrier to an app, its receipt, its trace
# and its settlement line; the temporary gateway is removed after (or kept with --keep).
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path


def demo(*args: str) -> tuple[str, Path]:
    done = subprocess.run(
        ["gatewayctl", "demo", *args], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    folder = re.search(r"temporary gateway in (\S+)", done.stdout)
    assert folder, done.stdout
    return done.stdout, Path(folder[1])


def test_demo_plays_carrier_and_app_end_to_end_and_cleans_up():
    out, folder = demo()
    steps = [
        "provisioned John Doe (account 1111, DID +964111222333) and carrier TATA",
        "registered as 1111@demo.example.net (SIP 200 OK",
        "TATA bound over SMPP",
        "submit_sm to +964111222333: 'Hello John, your code is 4711' -> ESME_ROK",
        "got SIP MESSAGE from <sip:TATA@demo.example.net>",
        "stat:DELIVRD",
        "delivered     attempt 1: the app answered 200 OK [sip:1111]",
        "receipt-sent  deliver_sm answered ESME_ROK by carrier TATA",
        "1 msg, 1 unit x 0.01 = 0.01 USD",
        "the temporary gateway and its store are removed",
    ]
    positions = [out.find(step) for step in steps]
    assert -1 not in positions, [s for s, p in zip(steps, positions, strict=True) if p < 0]
    assert positions == sorted(positions)  # in this order
    assert not folder.exists()


def test_demo_keep_leaves_the_gateway_to_look_at():
    out, folder = demo("--keep")
    assert "kept" in out
    try:
        assert (folder / "gateway.yaml").is_file() and (folder / "gateway.db").is_file()
        listed = subprocess.run(
            ["gatewayctl", "--config", str(folder / "gateway.yaml"), "messages", "list", "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        [message] = json.loads(listed.stdout)
        assert (message["destination"], message["state"]) == ("964111222333", "delivered")
    finally:
        shutil.rmtree(folder)
