# gatewayctl provisioning: John Doe's account and carrier TATA, every refusal, secrets, audit; both stores.
from __future__ import annotations

import yaml
from sqlalchemy import select

from gateway.secrets import SecretBox, ha1, verify_password
from gateway.store.engine import make_engine
from gateway.store.schema import accounts, carriers, connections, metadata

JOHN_PW = "john-Secret-1"
TATA_PW = "tata1234"
PEER_PW = "peerpw12"


def provision_scenario_1_1(ctl) -> None:
    ctl.ok("customer", "add", "John Doe")
    ctl.ok("product", "add", "Call & Chat", "--messaging")
    ctl.ok(
        "account",
        "add",
        "1111",
        "--customer",
        "John Doe",
        "--did",
        "111222333",
        "--password",
        JOHN_PW,
        "--product",
        "Call & Chat",
    )
    ctl.ok(
        "carrier",
        "add",
        "TATA",
        "--system-id",
        "TATA",
        "--password",
        TATA_PW,
        "--allow-ip",
        "203.0.113.0/24",
        "--allow-ip",
        "2001:db8::/32",
        "--max-binds",
        "2",
        "--throughput",
        "100",
    )
    ctl.ok(
        "tariff",
        "add",
        "--carrier",
        "TATA",
        "--prefix",
        "964",
        "--price",
        "0.01",
        "--currency",
        "USD",
        "--from",
        "2026-01-01",
    )


def snapshot(ctl) -> dict:
    """Everything gatewayctl can show, to prove a refused command changed nothing."""
    kinds = ("customer", "product", "account", "did", "carrier", "connection", "policy", "tariff")
    state = {k: ctl.json(k, "list") for k in kinds}
    state["audit"] = ctl.json("audit", "list", "--limit", "100000")
    return state


def database_cells(ctl) -> list[str]:
    config = yaml.safe_load(ctl.config.read_text())
    engine = make_engine(config["database"])
    cells = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                cells.extend(str(v) for v in row)
    engine.dispose()
    return cells


def test_scenario_1_1_and_tata_provisioning_show_up_in_list_json(ctl) -> None:
    provision_scenario_1_1(ctl)
    assert ctl.json("customer", "list") == [{"name": "John Doe"}]
    assert ctl.json("product", "list") == [{"name": "Call & Chat", "messaging": True}]
    assert ctl.json("account", "list") == [
        {
            "id": "1111",
            "customer": "John Doe",
            "product": "Call & Chat",
            "dids": ["964111222333"],
            "enabled": True,
        }
    ]
    [did] = ctl.json("did", "list")
    assert did["did"] == "964111222333" and did["account"] == "1111"
    assert ctl.json("carrier", "list") == [
        {
            "name": "TATA",
            "system_id": "TATA",
            "allow_ip": ["203.0.113.0/24", "2001:db8::/32"],
            "max_binds": 2,
            "throughput": 100,
            "receipt_id": "dec",
            "data_coding": "gsm",
            "concat": "udh",
            "timezone": "UTC",
            "billable": "accepted",
            "enabled": True,
        }
    ]
    assert ctl.json("tariff", "list") == [
        {
            "id": 1,
            "carrier": "TATA",
            "prefix": "964",
            "price": "0.01",
            "currency": "USD",
            "from": "2026-01-01",
            "to": None,
            "unit": "message",
            "direction": "in",
        }
    ]
    assert ctl.json("account", "show", "1111")["dids"] == ["964111222333"]
    # the DID can be named in any form the numbering plan understands
    assert ctl.json("did", "show", "0111222333")["account"] == "1111"
    assert ctl.json("did", "show", "+964 111 222 333")["account"] == "1111"


def test_credentials_are_never_stored_in_clear(ctl) -> None:
    provision_scenario_1_1(ctl)
    ctl.ok(
        "connection",
        "add",
        "to-env4",
        "--host",
        "127.0.0.1",
        "--port",
        "2776",
        "--system-id",
        "GW-ENV1",
        "--password",
        PEER_PW,
    )
    cells = database_cells(ctl)
    for secret in (JOHN_PW, TATA_PW, PEER_PW):
        assert not any(secret in cell for cell in cells), secret
    config = yaml.safe_load(ctl.config.read_text())
    engine = make_engine(config["database"])
    with engine.connect() as conn:
        account = conn.execute(select(accounts)).mappings().one()
        carrier_hash = conn.execute(select(carriers.c.password_hash)).scalar_one()
        token = conn.execute(select(connections.c.password_enc)).scalar_one()
    engine.dispose()
    assert account["sip_realm"] == "env1.example.net"
    assert account["sip_ha1_md5"] == ha1("1111", "env1.example.net", JOHN_PW, "MD5")
    assert account["sip_ha1_sha256"] == ha1("1111", "env1.example.net", JOHN_PW, "SHA-256")
    assert verify_password(TATA_PW, carrier_hash) and not verify_password("wrong", carrier_hash)
    assert SecretBox.from_key_file(config["secret_key_file"]).decrypt(token) == PEER_PW
    # list/show never print any form of the secrets
    for args in (
        ("connection", "show", "to-env4"),
        ("connection", "list"),
        ("carrier", "show", "TATA"),
        ("account", "show", "1111"),
        ("audit", "list"),
    ):
        out = ctl.ok(*args, "--json").stdout
        for secret in (JOHN_PW, TATA_PW, PEER_PW, token, carrier_hash, account["sip_ha1_md5"]):
            assert secret not in out, (args, secret)


def test_bad_input_is_refused_with_one_clear_line_and_changes_nothing(ctl) -> None:
    provision_scenario_1_1(ctl)
    ctl.ok(
        "connection",
        "add",
        "to-env4",
        "--host",
        "127.0.0.1",
        "--port",
        "2776",
        "--system-id",
        "GW-ENV1",
        "--password",
        PEER_PW,
    )
    before = snapshot(ctl)
    account = ("account", "add", "2222", "--customer", "John Doe", "--password", "pass-2222-x")
    # duplicate DID, in another form of the same number
    ctl.refused(
        *account,
        "--product",
        "Call & Chat",
        "--did",
        "0111222333",
        contains="DID 964111222333 is already assigned to account 1111",
    )
    ctl.refused(
        *account,
        "--product",
        "Chat Only",
        "--did",
        "111222444",
        contains="product: no product named 'Chat Only'",
    )
    ctl.refused(*account, "--product", "Call & Chat", "--did", "12ab", contains="'12ab'")
    ctl.refused(
        "account",
        "add",
        "1111",
        "--customer",
        "John Doe",
        "--product",
        "Call & Chat",
        "--password",
        "another-pass",
        contains="account '1111' already exists",
    )
    ctl.refused(
        "account",
        "add",
        "3333",
        "--customer",
        "Nobody",
        "--product",
        "Call & Chat",
        "--password",
        "another-pass",
        contains="customer: no customer named 'Nobody'",
    )
    ctl.refused(
        "account",
        "add",
        "3333",
        "--customer",
        "John Doe",
        "--product",
        "Call & Chat",
        "--password",
        "short",
        contains="password",
    )
    carrier = ("carrier", "add", "ASIACELL", "--system-id", "ASIACELL")
    ctl.refused(
        *carrier,
        "--password",
        "pw123456",
        "--allow-ip",
        "10.0.0.300/8",
        contains="allow_ip[0]: '10.0.0.300/8' is not a CIDR network",
    )
    ctl.refused(
        *carrier, "--password", "pw123456", "--allow-ip", "10.0.0.1/8", contains="has host bits set"
    )
    ctl.refused(
        *carrier, "--password", "123456789", "--allow-ip", "10.0.0.0/8", contains="password"
    )
    ctl.refused(
        "carrier",
        "add",
        "X",
        "--system-id",
        "A" * 16,
        "--password",
        "pw",
        "--allow-ip",
        "10.0.0.0/8",
        contains="system_id",
    )
    ctl.refused(
        "carrier",
        "add",
        "TATA2",
        "--system-id",
        "TATA",
        "--password",
        "pw",
        "--allow-ip",
        "10.0.0.0/8",
        contains="system_id 'TATA' is already used by carrier 'TATA'",
    )
    ctl.refused(
        "connection",
        "add",
        "c2",
        "--host",
        "127.0.0.1",
        "--port",
        "2776",
        "--system-id",
        "GW",
        "--password",
        "waytoolongpw",
        contains="password",
    )
    ctl.refused(
        "connection",
        "add",
        "c2",
        "--host",
        "bad host!",
        "--port",
        "2776",
        "--system-id",
        "GW",
        "--password",
        "pw",
        contains="host",
    )
    ctl.refused(
        "connection",
        "add",
        "c2",
        "--host",
        "127.0.0.1",
        "--port",
        "70000",
        "--system-id",
        "GW",
        "--password",
        "pw",
        contains="port: must be 1-65535, got 70000",
    )
    for pattern in ("22a%", "%22", "2%2", ""):
        ctl.refused(
            "policy", "add", "--pattern", pattern, "--connection", "to-env4", contains="pattern"
        )
    ctl.refused(
        "policy",
        "add",
        "--pattern",
        "222%",
        "--connection",
        "nope",
        contains="connection: no connection named 'nope'",
    )
    tariff = ("tariff", "add", "--carrier", "TATA", "--prefix", "222", "--currency", "USD")
    for price in ("abc", "-0.01", "1e3", "NaN", "0.0000001"):
        ctl.refused(*tariff, "--price", price, contains="price")
    ctl.refused(*tariff, "--price", "0.01", "--from", "2026-02-30", contains="from")
    ctl.refused(
        *tariff,
        "--price",
        "0.01",
        "--from",
        "2026-03-01",
        "--to",
        "2026-02-01",
        contains="to: 2026-02-01 is before from 2026-03-01",
    )
    ctl.refused(
        "tariff",
        "add",
        "--carrier",
        "TATA",
        "--prefix",
        "96a",
        "--price",
        "0.01",
        "--currency",
        "USD",
        contains="prefix",
    )
    ctl.refused(
        "tariff",
        "add",
        "--carrier",
        "TATA",
        "--prefix",
        "964",
        "--price",
        "0.01",
        "--currency",
        "XXY",
        contains="currency",
    )
    ctl.refused(
        "tariff",
        "add",
        "--carrier",
        "NOPE",
        "--prefix",
        "964",
        "--price",
        "0.01",
        "--currency",
        "USD",
        contains="carrier: no carrier named 'NOPE'",
    )
    ctl.refused("customer", "add", "John Doe", contains="customer 'John Doe' already exists")
    ctl.refused("customer", "remove", "John Doe", contains="customer 'John Doe' has accounts")
    ctl.refused("product", "remove", "Call & Chat", contains="is used by accounts")
    ctl.refused("carrier", "remove", "TATA", contains="carrier 'TATA' has tariffs")
    ctl.refused("account", "show", "9999", contains="no account '9999'")
    assert snapshot(ctl) == before


def test_every_change_is_audited_with_who_what_and_when(ctl) -> None:
    provision_scenario_1_1(ctl)
    ctl.ok("account", "disable", "1111")
    ctl.ok("account", "passwd", "1111", "--password", "a-new-password")
    ctl.ok("did", "release", "111222333")
    ctl.ok("did", "assign", "111222333", "--account", "1111")
    entries = ctl.json("audit", "list")
    assert [(e["action"], e["entity"], e["key"]) for e in entries] == [
        ("create", "customer", "John Doe"),
        ("create", "product", "Call & Chat"),
        ("create", "account", "1111"),
        ("create", "carrier", "TATA"),
        ("create", "tariff", "TATA 964 from 2026-01-01"),
        ("update", "account", "1111"),
        ("update", "account", "1111"),
        ("update", "did", "964111222333"),
        ("update", "did", "964111222333"),
    ]
    assert all(e["actor"] == "tester" and e["at"].startswith("20") for e in entries)
    disable = entries[5]
    assert disable["before"]["enabled"] is True and disable["after"]["enabled"] is False
    assert entries[6]["after"]["password"] == "(set)"
    assert entries[7]["before"]["account"] == "1111" and entries[7]["after"]["account"] is None
    text = ctl.ok("audit", "list", "--entity", "account").stdout
    assert "update account '1111': enabled: True -> False" in text
    assert "password changed" in text
    assert ctl.json("account", "show", "1111")["enabled"] is False


def test_did_pool_and_reassignment(ctl) -> None:
    provision_scenario_1_1(ctl)
    ctl.ok(
        "account",
        "add",
        "2222",
        "--customer",
        "John Doe",
        "--product",
        "Call & Chat",
        "--password",
        "pass-2222-x",
        "--did",
        "+222 4512 3456",
    )
    assert ctl.json("account", "show", "2222")["dids"] == ["22245123456"]
    ctl.refused(
        "did",
        "assign",
        "22245123456",
        "--account",
        "1111",
        contains="already assigned to account 2222",
    )
    ctl.refused("did", "remove", "22245123456", contains="release it first")
    ctl.ok("did", "release", "+22245123456")
    ctl.ok("did", "assign", "+22245123456", "--account", "1111")
    assert ctl.json("account", "show", "1111")["dids"] == ["22245123456", "964111222333"]
    ctl.ok("did", "assign", "0111222999", "--account", "2222")  # a new DID straight away
    assert ctl.json("account", "show", "2222")["dids"] == ["964111222999"]
    ctl.ok("account", "remove", "2222")
    assert ctl.json("did", "show", "964111222999")["account"] is None  # back in the pool
    ctl.ok("did", "remove", "964111222999")
    ctl.refused("did", "show", "964111222999", contains="no did")


def test_tariff_rate_change_ends_the_previous_rate(ctl) -> None:
    provision_scenario_1_1(ctl)
    out = ctl.ok(
        "tariff",
        "add",
        "--carrier",
        "TATA",
        "--prefix",
        "964",
        "--price",
        "0.012",
        "--currency",
        "USD",
        "--from",
        "2026-03-01",
    ).stdout
    assert "now ends on 2026-02-28" in out
    tariffs = ctl.json("tariff", "list")
    assert [(t["price"], t["from"], t["to"]) for t in tariffs] == [
        ("0.01", "2026-01-01", "2026-02-28"),
        ("0.012", "2026-03-01", None),
    ]
    # a rate inside a closed period would make rating ambiguous
    ctl.refused(
        "tariff",
        "add",
        "--carrier",
        "TATA",
        "--prefix",
        "964",
        "--price",
        "0.5",
        "--currency",
        "USD",
        "--from",
        "2026-02-01",
        "--to",
        "2026-02-10",
        contains="overlaps tariff #1",
    )
    ctl.ok("tariff", "remove", "2")
    assert len(ctl.json("tariff", "list")) == 1


def test_connections_and_policies(ctl) -> None:
    ctl.ok(
        "connection",
        "add",
        "Messages to vendor via SMPP",
        "--host",
        "127.0.0.1",
        "--port",
        "2776",
        "--system-id",
        "GW-ENV1",
        "--password",
        PEER_PW,
        "--window",
        "50",
    )
    ctl.ok("policy", "add", "--pattern", "+222%", "--connection", "Messages to vendor via SMPP")
    assert ctl.json("policy", "list") == [
        {
            "id": 1,
            "pattern": "222%",
            "connection": "Messages to vendor via SMPP",
            "carrier": None,
            "priority": 0,
        }
    ]
    ctl.refused(
        "policy",
        "add",
        "--pattern",
        "222%",
        "--connection",
        "Messages to vendor via SMPP",
        contains="already exists",
    )
    ctl.refused("connection", "remove", "Messages to vendor via SMPP", contains="service policies")
    ctl.ok("connection", "disable", "Messages to vendor via SMPP")
    assert ctl.json("connection", "show", "Messages to vendor via SMPP")["enabled"] is False
    ctl.ok("policy", "remove", "1")
    ctl.ok("connection", "remove", "Messages to vendor via SMPP")
    assert ctl.json("connection", "list") == []


def test_commands_need_an_initialised_store(tmp_path) -> None:
    from click.testing import CliRunner

    from tests.conftest import Ctl, write_config

    tool = Ctl(write_config(tmp_path, f"sqlite:///{tmp_path / 'new.db'}"), CliRunner())
    tool.refused(
        "customer", "list", contains="does not exist (a typo in the path?); run 'gatewayctl init'"
    )
    (tmp_path / "new.db").touch()  # an empty file is a store never initialised
    tool.refused("customer", "list", contains="not initialised: run 'gatewayctl init'")


def test_bad_config_file_fails_fast_with_file_key_and_reason(tmp_path) -> None:
    from click.testing import CliRunner

    from tests.conftest import Ctl, write_config

    path = write_config(tmp_path, "sqlite:///x.db", management={"port": 70000})
    line = Ctl(path, CliRunner()).refused(
        "init", contains="management.port: must be 1-65535, got 70000"
    )
    assert line.startswith(f"error: {path}: ")
