# A plugin that raises while a message is being delivered, in a real gateway process: the node
# logs it with the message id, keeps delivering the others, and the message is retried
# instead of staying in flight and blocking its number (issue 15, "nothing dies in silence").
from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

from tests.scenarios.carrier import Carrier
from tests.scenarios.test_section1_carriers_to_apps import john, rows

COUNT = 12
BOOM = "message 5 makes the plugin raise"

PLUGIN = f"""
# A test plugin whose on_route raises at the first delivery attempt of one message.
from collections import Counter

BOOM = {BOOM!r}


class Boom:
    def __init__(self) -> None:
        self.calls = Counter()

    def on_route(self, message, decision):
        self.calls[message.text] += 1
        if message.text == BOOM and self.calls[message.text] == 2:  # 1: admission, 2: attempt
            raise RuntimeError("a bug in the boom plugin")
        return None


def create(options):
    return Boom()
"""


def install_plugin(folder: Path) -> str:
    """The plugin as an installed distribution (a module and its entry point in the group
    smpp_sip_gateway.plugins) in ``folder``; the PYTHONPATH that makes the gateway see it."""
    folder.mkdir()
    (folder / "boom_plugin.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    info = folder / "boom_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: boom-plugin\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[smpp_sip_gateway.plugins]\nboom = boom_plugin:create\n", encoding="utf-8"
    )
    return os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)


def test_a_plugin_raising_in_on_route_at_delivery_does_not_block_the_message(
    make_env, sip_ua, tmp_path, monkeypatch
):
    monkeypatch.setenv("PYTHONPATH", install_plugin(tmp_path / "site"))
    gw = make_env(plugins=[{"name": "boom"}]).start()  # on_error: reject, the default
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    texts = [BOOM if i == 5 else f"message {i}" for i in range(COUNT)]
    with Carrier(gw.smpp_port) as tata:
        resps = tata.submit_many(texts, source_addr="AsiaCell", registered_delivery=0)
        assert all(r.status == 0 for r in resps)  # admitted: on_route passed at admission
        got = [app.next_message(timeout=30).body for _ in range(COUNT)]
    # logged with the message id
    line = gw.wait_for_log(r"message \d+: plugin boom failed in on_route; tried again later")
    message_id = int(re.search(r"message (\d+):", line).group(1))
    assert "a bug in the boom plugin" in gw.log()  # the plugin's traceback
    # every message reached the app, in order: the number's line waited for the retry (1 s,
    # delivery.retry) instead of staying blocked behind a message left in flight
    assert got == texts
    assert gw.stop() == 0
    by_id = {row["id"]: row for row in rows(gw)}
    assert (by_id[message_id]["state"], by_id[message_id]["attempts"]) == ("delivered", 2)
    assert {row["state"] for row in by_id.values()} == {"delivered"}  # nothing left in flight
