# Operating a running gateway: the management listener's /metrics, /healthz, /readyz and
# /status during a scenario run (issue 8), and /readyz when the store goes away.
from __future__ import annotations

import json
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.reliability.test_database_down import private_pg  # noqa: F401 - fixture
from tests.scenarios.carrier import Carrier
from tests.scenarios.test_section1_carriers_to_apps import john, rows
from tests.scenarios.test_section2_3_environments import JANE_DID, JANE_PW, TO_ENV4, app, env_pair


def get(gw, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET on the gateway's management listener."""
    url = f"http://127.0.0.1:{gw.management_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value of a Prometheus text exposition."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def cell(table: str, label: str) -> str:
    """The second cell of the row of a rich table that starts with ``label``."""
    [row] = [line for line in table.splitlines() if line.startswith(f"│ {label} ")]
    return row.split("│")[2].strip()


def test_metrics_health_and_status_during_a_scenario_run(make_env, sip_ua):
    # the pipeline at DEBUG, the rest at INFO: per-component levels, JSON lines (not a tty)
    gw = make_env(log={"level": "INFO", "levels": {"gateway.pipeline": "DEBUG"}}).start()
    assert gw.management_port
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    assert get(gw, "/healthz")[0] == 200
    status, kind, body = get(gw, "/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ready"}) and "json" in kind
    with Carrier(gw.smpp_port) as tata:
        resps = tata.submit_many([f"metrics {i}" for i in range(5)])
        assert all(r.status == 0 for r in resps)
        assert {app.next_message(timeout=30).body for _ in range(5)} == {
            f"metrics {i}" for i in range(5)
        }
        for _ in range(5):
            tata.next_delivered(timeout=30)  # every receipt is out: outcomes are committed
        assert tata.submit("x", destination_addr="999").status != 0  # one refused (no route)
        status, _, body = get(gw, "/status")
        assert status == 200
        now = json.loads(body)
        [bind] = now["binds"]
        assert (bind["carrier"], bind["system_id"], bind["bind_type"]) == ("TATA", "TATA", "trx")
        assert now["registrations"] == {"accounts": 1, "contacts": 1}
        assert now["store"]["available"] is True
        assert now["totals"]["delivered"] == 5 and now["totals"]["smpp_accepted"] == 5
        assert now["totals"]["smpp_refused"] == 1
        assert now["queue"]["lanes"] == {"priority": 0, "bulk": 0}
        assert now["listeners"]["smpp"] == [f"127.0.0.1:{gw.smpp_port}"]
        assert now["env"] == "env1" and now["uptime_seconds"] >= 0
        url = f"http://127.0.0.1:{gw.management_port}"
        shown = gw.ctl.ok("status", "--url", url, "--once", "--interval", "0.2").output
        assert "TATA" in shown and "trx" in shown and "store available" in shown
        assert cell(shown, "live contacts") == "1"
        assert cell(shown, "delivered") == "5"  # since start (its rate: 0.0 by now)
        as_json = json.loads(gw.ctl.ok("status", "--url", url, "--json").output)
        assert as_json["binds"][0]["carrier"] == "TATA"
        status, kind, body = get(gw, "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    found = samples(body)
    ok = {"carrier": "TATA", "command": "submit_sm"}
    assert value(found, "gateway_smpp_responses_total", **ok, status="ESME_ROK") == 5
    assert value(found, "gateway_smpp_responses_total", **ok, status="ESME_RINVDSTADR") == 1
    assert value(found, "gateway_messages_ended_total", state="delivered") == 5
    assert value(found, "gateway_delivery_latency_seconds_count", route="sip") == 5
    assert value(found, "gateway_smpp_binds", carrier="TATA") == 1
    assert value(found, "gateway_sip_registrations", kind="contacts") == 1
    received = {"direction": "received", "method": "MESSAGE", "class": "2xx"}
    assert value(found, "gateway_sip_responses_total", **received) == 5
    sent = {"direction": "sent", "method": "REGISTER", "class": "2xx"}
    assert value(found, "gateway_sip_responses_total", **sent) >= 1
    assert value(found, "gateway_store_commit_seconds_count") > 0
    assert value(found, "gateway_store_available") == 1
    assert value(found, "gateway_queue_depth", lane="bulk") == 0
    assert value(found, "gateway_messages", state="retry-wait") == 0  # counted at start
    assert value(found, "process_open_fds") > 0
    assert not any(name.endswith("_created") for name, _ in found)
    assert get(gw, "/nothing-here")[0] == 404
    gw.stop()
    lines = [json.loads(line) for line in gw.raw_log().splitlines()]
    delivered = {r["id"] for r in rows(gw) if r["state"] == "delivered"}
    assert len(delivered) == 5
    about = {line["message_id"] for line in lines if "message_id" in line}
    assert delivered <= about  # every message's lines carry its id
    for mid in delivered:
        life = [line["msg"] for line in lines if line.get("message_id") == mid]
        assert any("accepted" in m for m in life) and any("delivered" in m for m in life)
    levels = {(line["logger"], line["level"]) for line in lines}
    assert ("gateway.pipeline", "DEBUG") in levels
    assert not any(lvl == "DEBUG" and lg != "gateway.pipeline" for lg, lvl in levels)
    assert {line["env"] for line in lines} == {"env1"}
    refused = gw.ctl("status", "--url", url, "--once")
    assert refused.exit_code == 1 and "management listener at" in refused.output


def test_readyz_says_not_ready_while_the_store_is_down(make_env, private_pg):  # noqa: F811
    gw = make_env(database=private_pg.url).start()
    assert get(gw, "/readyz")[0] == 200
    private_pg.stop("immediate")
    status, _, body = get(gw, "/readyz")
    assert status == 503
    answer = json.loads(body)
    assert answer["status"] == "not ready" and answer["problems"][0].startswith("store:")
    assert get(gw, "/healthz")[0] == 200  # alive all the same: no reason to restart it
    private_pg.start()
    assert get(gw, "/readyz")[0] == 200  # the pool reconnects: ready again by itself
    gw.stop()


def test_messages_show_follows_a_message_across_two_environments(make_env, pg_url, sip_ua):
    """TATA -> env1 -> env4 -> Jane's app: env1's trace names env4's id for the message,
    env4's trace names env1's, and each tells the whole life on its side."""
    env1, env4 = env_pair(make_env, pg_url)
    jane = app(sip_ua, env4, "2222", JANE_PW)
    with Carrier(env1.smpp_port) as tata:
        assert tata.submit("for John, offline").status == 0  # env1's ids move on first
        [resp] = tata.submit_many(["follow me"], destination_addr=JANE_DID)
        assert resp.status == 0
        assert jane.next_message(timeout=30).body == "follow me"
        receipt = tata.next_delivered(timeout=30)
        assert receipt.receipted_message_id == resp.message_id
    env1.stop()  # everything written: the receipts' answers too
    env4.stop()
    [here] = [r for r in rows(env1) if r["body_text"] == "follow me"]
    [there] = [r for r in rows(env4) if r["body_text"] == "follow me"]
    assert here["id"] != there["id"]  # so each side's trace shows the other's id, not its own
    shown = env1.ctl.ok("messages", "show", str(here["id"])).output
    assert f"message {here['id']} in env1" in shown
    assert f"from         carrier TATA (its id for it: {resp.message_id.decode()})" in shown
    assert "follow me" not in shown  # the text only with --text
    assert f"peer id {there['id']} (gatewayctl messages show {there['id']}" in shown
    life = shown.split("life:")[1]
    order = ["accepted", "forwarded", "peer-receipt", "delivered", "receipt ", "receipt-sent"]
    positions = [life.index(f" {step}") for step in order]
    assert positions == sorted(positions), life
    assert "stat:DELIVRD queued for carrier TATA" in life
    assert "deliver_sm answered ESME_ROK by carrier TATA" in life
    assert f"attempt 1: taken by connection '{TO_ENV4}', peer id {there['id']}" in life
    assert "cdr " in shown and ": delivered, 1 part," in shown
    # env4's side: came from env1, under env1's id; delivered to the app
    shown4 = env4.ctl.ok("messages", "show", str(there["id"])).output
    assert "from         carrier env1" in shown4
    assert f"came via     env1; its id there: {here['id']}" in shown4
    assert "delivered     attempt 1: the app answered 200 OK [sip:2222]" in shown4
    assert "stat:DELIVRD queued for carrier env1" in shown4
    assert "'follow me'" in env4.ctl.ok("messages", "show", str(there["id"]), "--text").output
    as_json = json.loads(env1.ctl.ok("messages", "show", str(here["id"]), "--json").output)
    assert as_json["forwards"][0]["peer_message_id"] == str(there["id"])
    assert "body_text" not in as_json["message"] and as_json["text_length"] == 9
    # finding it
    listed = json.loads(
        env1.ctl.ok(
            "messages", "list", "--did", "+" + JANE_DID, "--carrier", "TATA", "--state",
            "delivered", "--since", "1h", "--json",
        ).output
    )  # fmt: skip
    assert [m["id"] for m in listed] == [here["id"]]
    assert env1.ctl.ok("messages", "list", "--state", "failed", "--json").output.strip() == "[]"
    env1.ctl.refused("messages", "show", "999999999", contains="no message with id")
    hex_id = format(here["id"], "x")  # as a carrier with hex receipts knows it
    assert (
        f"message {here['id']} in env1" in env1.ctl.ok("messages", "show", "--hex", hex_id).output
    )
    env1.ctl.refused("messages", "show", "nope!", contains="is not a message id")
    env1.ctl.refused("messages", "list", "--since", "soon", contains="--since")
    env1.ctl.refused("messages", "list", "--carrier", "NOPE", contains="NOPE")
