# gatewayctl apply: declarative provisioning, diff shown, one transaction, dry run; both stores.
from __future__ import annotations

from pathlib import Path

import yaml

PLAN = {
    "customers": [{"name": "John Doe"}, {"name": "Jane Roe"}],
    "products": [
        {"name": "Call & Chat", "messaging": True},
        {"name": "Call only", "messaging": False},
    ],
    "accounts": [
        {
            "id": "1111",
            "customer": "John Doe",
            "product": "Call & Chat",
            "password": "john-Secret-1",
            "dids": ["111222333"],
        },
        {
            "id": "2222",
            "customer": "Jane Roe",
            "product": "Call & Chat",
            "password": "jane-Secret-2",
            "dids": ["+22245123456"],
            "enabled": True,
        },
    ],
    "carriers": [
        {
            "name": "TATA",
            "system_id": "TATA",
            "password": "tata1234",
            "allow_ip": ["203.0.113.0/24"],
            "max_binds": 2,
            "throughput": 100,
        },
    ],
    "connections": [
        {
            "name": "to-env4",
            "host": "127.0.0.1",
            "port": 2776,
            "system_id": "GW-ENV1",
            "password": "peerpw12",
            "window": 20,
        },
    ],
    "policies": [{"pattern": "222%", "connection": "to-env4"}],
    "tariffs": [
        {
            "carrier": "TATA",
            "prefix": "964",
            "price": "0.01",
            "currency": "USD",
            "from": "2026-01-01",
        },
    ],
}


def write(tmp_path: Path, data: dict, name: str = "plan.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


def everything(ctl) -> dict:
    kinds = ("customer", "product", "account", "did", "carrier", "connection", "policy", "tariff")
    return {k: ctl.json(k, "list") for k in kinds}


def test_apply_creates_everything_and_reapply_changes_nothing(ctl, tmp_path) -> None:
    plan_file = write(tmp_path, PLAN)
    dry = ctl.ok("apply", "-f", plan_file, "--dry-run").stdout
    assert "+ account '1111'" in dry and "+ policy '222% -> to-env4'" in dry
    assert "dry run: 10 to create, 0 to update, 0 to delete; nothing changed" in dry
    assert ctl.json("customer", "list") == [] and ctl.json("audit", "list") == []

    out = ctl.ok("apply", "-f", plan_file).stdout
    assert "applied: 10 to create, 0 to update, 0 to delete" in out
    accounts = {a["id"]: a for a in ctl.json("account", "list")}
    assert accounts["1111"]["dids"] == ["964111222333"]
    assert accounts["2222"]["dids"] == ["22245123456"]
    assert ctl.json("carrier", "show", "TATA")["throughput"] == 100
    assert ctl.json("connection", "show", "to-env4")["window"] == 20
    assert len(ctl.json("audit", "list")) == 10

    assert ctl.ok("apply", "-f", plan_file).stdout.strip() == "no changes"
    assert len(ctl.json("audit", "list")) == 10


def test_apply_updates_deletes_and_moves_dids(ctl, tmp_path) -> None:
    ctl.ok("apply", "-f", write(tmp_path, PLAN))
    changed = yaml.safe_load(yaml.safe_dump(PLAN))
    changed["carriers"][0]["throughput"] = 200
    changed["carriers"][0]["password"] = "newpass1"
    # 111222333 moves from 1111 to 2222 while 1111 gets a new one
    changed["accounts"][0]["dids"] = ["0111222000"]
    changed["accounts"][1]["dids"] = ["+22245123456", "111222333"]
    del changed["accounts"][0]["password"]  # an existing account keeps its password
    changed["products"] = changed["products"][:1]  # "Call only" goes
    del changed["policies"]  # an absent section is left alone
    out = ctl.ok("apply", "-f", write(tmp_path, changed)).stdout
    assert "~ carrier 'TATA': throughput: 100 -> 200; password changed" in out
    assert "~ account '1111': dids: [964111222333] -> [964111222000]" in out
    assert "- product 'Call only'" in out
    assert "applied: 0 to create, 3 to update, 1 to delete" in out
    accounts = {a["id"]: a for a in ctl.json("account", "list")}
    assert accounts["1111"]["dids"] == ["964111222000"]
    assert accounts["2222"]["dids"] == ["22245123456", "964111222333"]
    assert [p["name"] for p in ctl.json("product", "list")] == ["Call & Chat"]
    assert len(ctl.json("policy", "list")) == 1
    log = ctl.ok("audit", "list", "--entity", "carrier").stdout
    assert "throughput: 100 -> 200" in log and "password changed" in log


def test_a_failure_anywhere_changes_nothing(ctl, tmp_path) -> None:
    ctl.ok("apply", "-f", write(tmp_path, PLAN))
    before = everything(ctl)
    audit_before = ctl.json("audit", "list")
    broken = yaml.safe_load(yaml.safe_dump(PLAN))
    broken["carriers"][0]["throughput"] = 300  # would be applied first ...
    broken["accounts"].append(  # ... but this account names an unknown product
        {"id": "3333", "customer": "John Doe", "product": "Nope", "password": "pw-3333-xyz"}
    )
    line = ctl.refused("apply", "-f", write(tmp_path, broken), contains="accounts[2].product")
    assert "no product named 'Nope'" in line
    assert everything(ctl) == before and ctl.json("audit", "list") == audit_before


def test_deleting_something_still_used_is_refused(ctl, tmp_path) -> None:
    ctl.ok("apply", "-f", write(tmp_path, PLAN))
    without_customers = {"customers": [{"name": "Jane Roe"}]}
    ctl.refused(
        "apply",
        "-f",
        write(tmp_path, without_customers),
        contains="customer 'John Doe' has accounts",
    )


def test_file_errors_name_the_place(ctl, tmp_path) -> None:
    cases = [
        ({"carrier": []}, "unknown section"),
        ({"carriers": {"name": "x"}}, "carriers: expected a list"),
        (
            {
                "carriers": [
                    {
                        "name": "T",
                        "system_id": "T",
                        "password": "p",
                        "allow_ip": ["10.0.0.0/8"],
                        "colour": "red",
                    }
                ]
            },
            "carriers[0].colour: unknown field for a carrier",
        ),
        (
            {"accounts": [{"id": "1", "customer": "c", "product": "p"}]},
            "accounts[0].password: required for a new account",
        ),
        (
            {"customers": [{"name": "A"}, {"name": "A"}]},
            "customers[1]: customer 'A' is listed twice",
        ),
        (
            {"tariffs": [{"carrier": "T", "prefix": "964", "price": "abc", "currency": "USD"}]},
            "tariffs[0].price: 'abc' is not a number",
        ),
        (
            {
                "carriers": [
                    {"name": "T", "system_id": "T", "password": "p", "allow_ip": ["10.0.0.0/33"]}
                ]
            },
            "carriers[0].allow_ip[0]",
        ),
    ]
    for document, expected in cases:
        ctl.refused("apply", "-f", write(tmp_path, document), contains=expected)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("customers: [\n", encoding="utf-8")
    ctl.refused("apply", "-f", str(bad_yaml), contains="YAML error at line 2")
    ctl.refused("apply", "-f", str(tmp_path / "missing.yaml"), contains="file not found")
    assert ctl.json("audit", "list") == []


def test_numbers_in_a_file_are_read_as_written(ctl, tmp_path) -> None:
    """Unquoted 0.01 is exact money and 0111222333 a national DID, not a float or octal."""
    path = tmp_path / "plain.yaml"
    path.write_text(
        "customers: [{name: John Doe}]\n"
        "products: [{name: Call & Chat}]\n"
        "accounts:\n"
        "  - {id: 1111, customer: John Doe, product: Call & Chat, password: john-Secret-1,\n"
        "     dids: [0111222333, 111222444]}\n"
        "carriers:\n"
        "  - {name: TATA, system_id: TATA, password: tata1234, allow_ip: [203.0.113.7]}\n"
        "tariffs:\n"
        "  - {carrier: TATA, prefix: 964, price: 0.010, currency: usd, from: 2026-01-01}\n",
        encoding="utf-8",
    )
    ctl.ok("apply", "-f", str(path))
    assert ctl.json("account", "show", "1111")["dids"] == ["964111222333", "964111222444"]
    [tariff] = ctl.json("tariff", "list")
    assert (tariff["price"], tariff["currency"]) == ("0.010", "USD")
    assert ctl.json("carrier", "show", "TATA")["allow_ip"] == ["203.0.113.7/32"]
    assert ctl.ok("apply", "-f", str(path)).stdout.strip() == "no changes"
