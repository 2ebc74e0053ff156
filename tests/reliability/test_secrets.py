# No secret in clear: a full two-environment run at DEBUG, with good and bad logins, then every
# log line, every gatewayctl output, the audit log and the stores are searched for passwords.
from __future__ import annotations

import smpplib.client
import smpplib.exceptions
import yaml
from sqlalchemy import select

from gateway.store.engine import make_engine
from gateway.store.schema import metadata
from tests.interop.peers import TATA_PW
from tests.scenarios.carrier import Carrier
from tests.scenarios.conftest import JOHN_PW
from tests.scenarios.test_section2_3_environments import (
    JANE_DID,
    JANE_PW,
    LINK_PW,
    app,
    env_pair,
)

WRONG_SMPP = "guess123"
WRONG_SIP = "guess-Sip-42"


def store_text(gw) -> str:
    """Every row of every table of a gateway's store, as text."""
    engine = make_engine(yaml.safe_load(gw.config.read_text())["database"])
    out = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            out.extend(repr(tuple(row)) for row in conn.execute(select(table)))
    engine.dispose()
    return "\n".join(out)


def test_no_password_appears_in_logs_outputs_audit_or_store(make_env, pg_url, sip_ua):
    env1, env4 = env_pair(make_env, pg_url, log={"level": "DEBUG"})
    # bad logins first: a carrier guessing, an app guessing
    client = smpplib.client.Client(
        "127.0.0.1", env1.smpp_port, timeout=10, allow_unknown_opt_params=True
    )
    client.connect()
    try:
        client.bind_transceiver(system_id="TATA", password=WRONG_SMPP)
        raise AssertionError("a wrong SMPP password was accepted")
    except smpplib.exceptions.PDUError:
        pass
    finally:
        client.disconnect()
    intruder = sip_ua(transport="udp", registrar=("127.0.0.1", env1.sip_ports["udp"]),
                      domain=env1.domain, username="1111", password=WRONG_SIP)  # fmt: skip
    assert intruder.wait_registration_failed() in (401, 403)
    intruder.close()
    # then the real traffic: TATA to John (local) and to Jane (through env4), app to app
    john = app(sip_ua, env1, "1111", JOHN_PW)
    jane = app(sip_ua, env4, "2222", JANE_PW)
    with Carrier(env1.smpp_port) as tata:
        assert tata.submit("code 4711").status == 0
        assert tata.submit("hello Jane", destination_addr=JANE_DID).status == 0
        assert john.next_message(timeout=30).body == "code 4711"
        assert jane.next_message(timeout=30).body == "hello Jane"
        receipts = [tata.next_delivered() for _ in range(2)]
    assert all(b"stat:DELIVRD" in r.short_message for r in receipts)
    assert john.send_message(f"sip:+{JANE_DID}@{env1.domain}", "from John") == 202
    assert jane.next_message(timeout=30).body == "from John"
    outputs = []
    for gw in (env1, env4):
        for args in (("account", "list", "--json"), ("carrier", "list", "--json"),
                     ("connection", "list", "--json"), ("audit", "list", "--json"),
                     ("registrations", "list", "--json")):  # fmt: skip
            outputs.append(gw.ctl.ok(*args).output)
    env1.stop()
    env4.stop()
    haystacks = {
        "env1 log": env1.raw_log(),  # JSON lines, as written
        "env4 log": env4.raw_log(),
        "env1 log, decoded": env1.log(),  # what JSON escapes would hide
        "env4 log, decoded": env4.log(),
        "gatewayctl output": "\n".join(outputs),
        "env1 store": store_text(env1),
        "env4 store": store_text(env4),
    }
    assert yaml.safe_load(env1.config.read_text())["log"]["level"] == "DEBUG"
    assert "wrong password for carrier TATA" in haystacks["env1 log"]  # the guess was logged
    secrets = [JOHN_PW, JANE_PW, LINK_PW, TATA_PW, WRONG_SMPP, WRONG_SIP]
    found = [(s, where) for s in secrets for where, text in haystacks.items() if s in text]
    assert found == []
    # the SQLite store's raw file (and its WAL) holds no password either
    for path in env1.folder.glob("gateway.db*"):
        data = path.read_bytes()
        assert not [s for s in secrets if s.encode() in data], path
