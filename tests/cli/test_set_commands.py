# `set` for carriers, connections, accounts, products and policies: every field, audited, validated.
from __future__ import annotations

import json

import click
import pytest
import yaml
from sqlalchemy import select

import gatewayctl
from gateway.provisioning import service
from gateway.secrets import SecretBox, ha1, verify_password
from gateway.store.engine import make_engine
from gateway.store.schema import accounts, carriers, connections

TATA_PW = "tata1234"
PEER_PW = "peerpw12"
JOHN_PW = "john-Secret-1"

# The option that sets each field of a kind with `set` (the key is not settable).
SET_OPTION = {
    "enabled": "--enable",
    "dids": "--did",
    "allow_ip": "--allow-ip",
    "messaging": "--messaging",
    "tls": "--tls",
    "unit": "--per",
    "tiers": "--tier",
}
# Fields that make the object what it is (part of its key): a new value is a new object.
KEYS = {"tariff": {"carrier", "prefix", "from", "direction"}, "fee": {"carrier", "name", "from"}}


def provision(ctl) -> None:
    ctl.ok("customer", "add", "John Doe")
    ctl.ok("customer", "add", "Jane Roe")
    ctl.ok("product", "add", "Call & Chat")
    ctl.ok("product", "add", "Chat Plus")
    ctl.ok(
        "account", "add", "1111", "--customer", "John Doe", "--product", "Call & Chat",
        "--did", "111222333", "--password", JOHN_PW,
    )  # fmt: skip
    ctl.ok(
        "carrier", "add", "TATA", "--system-id", "TATA", "--password", TATA_PW,
        "--allow-ip", "203.0.113.0/24", "--max-binds", "2",
    )  # fmt: skip
    ctl.ok(
        "connection", "add", "Vendor", "--host", "198.51.100.4", "--port", "2775",
        "--system-id", "GW-ENV1", "--password", PEER_PW,
    )  # fmt: skip


def store_row(ctl, table, column, key):
    url = yaml.safe_load(ctl.config.read_text())["database"]
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(table).where(table.c[column] == key)).mappings().one()
    finally:
        engine.dispose()


def last_audit(ctl) -> dict:
    return ctl.json("audit", "list", "--limit", "1")[0]


@pytest.mark.parametrize("kind", ["carrier", "connection", "account", "product", "tariff", "fee"])
def test_every_field_of_a_kind_has_a_set_option(kind) -> None:
    k = service.kind(kind)
    group = gatewayctl.main.commands[kind]
    assert isinstance(group, click.Group)
    command = group.commands["set"]
    options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    keys = KEYS.get(kind, {k.fields[0].name})
    for field in (f for f in k.fields if f.name not in keys):
        option = SET_OPTION.get(field.name, "--" + field.name.replace("_", "-"))
        assert option in options, f"{kind} set has no {option} for field {field.name}"


def test_carrier_set_changes_networks_binds_password_in_one_audit_entry(ctl) -> None:
    provision(ctl)
    ctl.ok(
        "carrier", "set", "TATA", "--add-allow-ip", "127.0.0.1", "--remove-allow-ip",
        "203.0.113.0/24", "--max-binds", "3", "--password", "newpw123", "--throughput", "50",
        "--receipt-id", "hex", "--data-coding", "latin1", "--system-id", "TATA2",
    )  # fmt: skip
    shown = ctl.json("carrier", "show", "TATA")
    assert shown["allow_ip"] == ["127.0.0.1/32"]
    assert (shown["max_binds"], shown["throughput"], shown["system_id"]) == (3, 50, "TATA2")
    assert (shown["receipt_id"], shown["data_coding"]) == ("hex", "latin1")
    entry = last_audit(ctl)
    assert (entry["action"], entry["entity"], entry["key"]) == ("update", "carrier", "TATA")
    assert entry["before"]["allow_ip"] == ["203.0.113.0/24"]
    assert entry["after"]["allow_ip"] == ["127.0.0.1/32"]
    assert (entry["before"]["max_binds"], entry["after"]["max_binds"]) == (2, 3)
    assert entry["after"]["password"] == "(set)"
    assert "newpw123" not in json.dumps(ctl.json("audit", "list", "--limit", "1000"))
    assert verify_password("newpw123", store_row(ctl, carriers, "name", "TATA")["password_hash"])
    summary = ctl.ok("audit", "list", "--limit", "1").stdout
    assert "password changed" in summary and "max_binds: 2 -> 3" in summary

    ctl.ok("carrier", "set", "TATA", "--allow-ip", "192.0.2.0/24", "--allow-ip", "127.0.0.1")
    assert ctl.json("carrier", "show", "TATA")["allow_ip"] == ["192.0.2.0/24", "127.0.0.1/32"]
    ctl.ok("carrier", "set", "TATA", "--throughput", "none", "--disable")
    shown = ctl.json("carrier", "show", "TATA")
    assert (shown["throughput"], shown["enabled"]) == (None, False)


def test_set_refuses_what_add_refuses_with_the_same_line(ctl) -> None:
    provision(ctl)
    before = ctl.json("audit", "list", "--limit", "1000")
    for field, value in (("--max-binds", "99"), ("--allow-ip", "10.0.0.1/8"),
                         ("--password", "123456789"), ("--timezone", "Mars/Olympus")):  # fmt: skip
        added = ctl.refused(
            "carrier", "add", "NEW", "--system-id", "NEW", "--password", "pw", "--allow-ip",
            "127.0.0.1", field, value, contains=field.removeprefix("--").replace("-", "_"),
        )  # fmt: skip
        also = ("--allow-ip", "127.0.0.1") if field == "--allow-ip" else ()
        changed = ctl.refused(
            "carrier", "set", "TATA", *also, field, value, contains=field[2:].replace("-", "_")
        )
        assert added == changed
    added = ctl.refused(
        "connection", "add", "X", "--host", "h", "--port", "0", "--system-id", "X",
        "--password", "pw", contains="port",
    )  # fmt: skip
    assert ctl.refused("connection", "set", "Vendor", "--port", "0", contains="port") == added
    ctl.refused("connection", "set", "Vendor", "--host", "bad host", contains="host:")
    ctl.refused("account", "set", "1111", "--password", "short", contains="password")
    ctl.refused("account", "set", "1111", "--product", "Nope", contains="product: no product")
    ctl.refused("account", "set", "1111", "--add-did", "12", contains="dids")
    ctl.refused("carrier", "set", "TATA", "--remove-allow-ip", "9.9.9.9", contains="allow_ip")
    ctl.refused(
        "carrier", "set", "TATA", "--allow-ip", "1.2.3.4", "--add-allow-ip", "1.2.3.5",
        contains="not both",
    )  # fmt: skip
    ctl.refused("carrier", "set", "TATA", contains="nothing to change: give one of --system-id")
    ctl.refused("carrier", "set", "NOPE", "--max-binds", "2", contains="no carrier 'NOPE'")
    assert ctl.json("audit", "list", "--limit", "1000") == before


def test_connection_set_changes_every_setting(ctl) -> None:
    provision(ctl)
    ctl.ok(
        "connection", "set", "Vendor", "--host", "peer.example.net", "--port", "2776",
        "--system-id", "GW-NEW", "--bind", "tx", "--window", "5", "--throughput", "20",
        "--tls", "--disable", "--password-stdin", input="peer9876\n",
    )  # fmt: skip
    shown = ctl.json("connection", "show", "Vendor")
    assert shown == {
        "name": "Vendor", "host": "peer.example.net", "port": 2776, "system_id": "GW-NEW",
        "bind": "tx", "window": 5, "throughput": 20, "tls": True, "enabled": False,
    }  # fmt: skip
    row = store_row(ctl, connections, "name", "Vendor")
    box = SecretBox.from_key_file(yaml.safe_load(ctl.config.read_text())["secret_key_file"])
    assert box.decrypt(row["password_enc"]) == "peer9876"
    entry = last_audit(ctl)
    assert entry["before"]["port"] == 2775 and entry["after"]["port"] == 2776
    assert entry["after"]["password"] == "(set)"
    assert "peer9876" not in json.dumps(entry)
    ctl.ok("connection", "set", "Vendor", "--no-tls", "--enable")
    assert ctl.json("connection", "show", "Vendor")["tls"] is False


def test_account_set_product_customer_dids_password(ctl, tmp_path) -> None:
    provision(ctl)
    secret = tmp_path / "pw"
    secret.write_text("Newer-Secret-9\n")
    ctl.ok(
        "account", "set", "1111", "--product", "Chat Plus", "--customer", "Jane Roe",
        "--add-did", "0111222334", "--add-did", "+964 111 222 335",
        "--remove-did", "00964111222333", "--password-file", str(secret),
    )  # fmt: skip
    shown = ctl.json("account", "show", "1111")
    assert shown["dids"] == ["964111222334", "964111222335"]
    assert (shown["product"], shown["customer"]) == ("Chat Plus", "Jane Roe")
    assert ctl.json("did", "show", "111222333")["account"] is None  # back in the pool
    row = store_row(ctl, accounts, "account_id", "1111")
    assert row["sip_ha1_md5"] == ha1("1111", "env1.example.net", "Newer-Secret-9", "MD5")
    entry = last_audit(ctl)
    assert entry["before"]["dids"] == ["964111222333"]
    assert entry["after"]["dids"] == ["964111222334", "964111222335"]
    assert "Newer-Secret-9" not in json.dumps(ctl.json("audit", "list", "--limit", "1000"))
    # the whole list at once, and a prompt (hidden, twice) for the password
    ctl.ok(
        "account", "set", "1111", "--did", "111222336", "--disable", "--password-prompt",
        input="Prompted-Pw-7\nPrompted-Pw-7\n",
    )  # fmt: skip
    shown = ctl.json("account", "show", "1111")
    assert (shown["dids"], shown["enabled"]) == (["964111222336"], False)
    row = store_row(ctl, accounts, "account_id", "1111")
    assert row["sip_ha1_md5"] == ha1("1111", "env1.example.net", "Prompted-Pw-7", "MD5")
    ctl.refused(
        "account", "set", "1111", "--password", "Other-Pw-123", "--password-stdin",
        contains="give the password once",
    )  # fmt: skip


def test_product_and_policy_set(ctl) -> None:
    provision(ctl)
    ctl.ok("product", "set", "Chat Plus", "--no-messaging")
    assert ctl.json("product", "show", "Chat Plus")["messaging"] is False
    ctl.ok("policy", "add", "--pattern", "222%", "--connection", "Vendor")
    pid = str(ctl.json("policy", "list")[0]["id"])
    ctl.ok("policy", "set", pid, "--priority", "7")
    assert ctl.json("policy", "show", pid)["priority"] == 7
    assert last_audit(ctl)["after"]["priority"] == 7


def test_tariff_and_fee_set(ctl) -> None:
    provision(ctl)
    ctl.ok(
        "tariff", "add", "--carrier", "TATA", "--prefix", "964", "--price", "0.01",
        "--currency", "USD", "--from", "2026-01-01",
    )  # fmt: skip
    tid = str(ctl.json("tariff", "list")[0]["id"])
    ctl.ok("tariff", "set", tid, "--price", "0.012", "--to", "2026-12-31", "--per", "segment")
    shown = ctl.json("tariff", "show", tid)
    assert (shown["price"], shown["to"], shown["unit"]) == ("0.012", "2026-12-31", "segment")
    entry = last_audit(ctl)
    assert (entry["before"]["price"], entry["after"]["price"]) == ("0.01", "0.012")
    ctl.ok("tariff", "set", tid, "--to", "none")
    assert ctl.json("tariff", "show", tid)["to"] is None
    ctl.refused("tariff", "set", tid, "--price", "0.0000001", contains="price")
    ctl.refused("tariff", "set", tid, "--to", "2025-01-01", contains="to: 2025-01-01 is before")

    ctl.ok(
        "fee", "add", "--carrier", "TATA", "--name", "platform fee", "--kind", "monthly",
        "--amount", "100", "--currency", "USD", "--from", "2026-01",
    )  # fmt: skip
    fid = str(ctl.json("fee", "list")[0]["id"])
    ctl.ok("fee", "set", fid, "--amount", "120", "--to", "2026-12")
    shown = ctl.json("fee", "show", fid)
    assert (shown["tiers"], shown["to"]) == ([[0, "120"]], "2026-12-01")
    ctl.ok("fee", "set", fid, "--kind", "graduated", "--tier", "0=0.01", "--tier", "1000=0.008")
    assert ctl.json("fee", "show", fid)["tiers"] == [[0, "0.01"], [1000, "0.008"]]
    ctl.refused("fee", "set", fid, "--amount", "1", "--tier", "0=1", contains="not both")
