# Plugins in a running gateway: content_filter refuses at submit time, webhook posts events.
from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.scenarios.carrier import Carrier
from tests.scenarios.test_section1_carriers_to_apps import john

ESME_RX_R_APPN = 0x66


@pytest.fixture
def receiver():
    """An HTTP endpoint on a free port collecting the JSON bodies POSTed to it."""
    bodies: queue.Queue = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            bodies.put(
                (self.path, self.headers.get("X-Token"), json.loads(self.rfile.read(length)))
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/sms-events", bodies
    server.shutdown()


def test_content_filter_refuses_and_webhook_tells_of_waiting_and_outcome(
    make_env, sip_ua, receiver
):
    url, bodies = receiver
    gw = make_env(
        plugins=[
            {
                "name": "content_filter",
                "options": {
                    "rules": [
                        {
                            "field": "text",
                            "match": "(?i)casino",
                            "action": "reject",
                            "reason": "gambling ads",
                        }
                    ]
                },
            },
            {"name": "webhook", "options": {"url": url, "headers": {"X-Token": "t0ken"}}},
        ]
    ).start()
    with Carrier(gw.smpp_port) as tata:
        assert tata.submit("Casino night, free chips").status == ESME_RX_R_APPN
        gw.wait_for_log("refused by plugin content_filter: gambling ads")
        resp = tata.submit("Hello John")
        assert resp.status == 0
        path, token, waiting = bodies.get(timeout=30)  # John is offline: wake his app
        assert (path, token) == ("/sms-events", "t0ken")
        assert waiting["event"] == "waiting" and waiting["destination"] == "964111222333"
        assert waiting["message_id"] == resp.message_id.decode()
        app = john(sip_ua, gw)
        assert app.wait_registered() == 200
        assert app.next_message().body == "Hello John"
        _, _, outcome = bodies.get(timeout=30)
    assert (outcome["event"], outcome["state"], outcome["route"]) == (
        "outcome",
        "delivered",
        "sip:1111",
    )
    assert outcome["message_id"] == resp.message_id.decode()
