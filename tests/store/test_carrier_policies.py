# Policies that target a carrier (issue 16): CLI, apply files, the routing table, cost tariffs.
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, select

from gateway.routes import load_routing_table
from gateway.store.engine import make_engine
from gateway.store.schema import carriers, policies, tariffs
from routing.router import Route

PW = "zainpw12"


def add_carrier(ctl, name: str, *extra: str) -> None:
    ctl.ok(
        "carrier", "add", name, "--system-id", name, "--password", PW,
        "--allow-ip", "127.0.0.1/32", *extra,
    )  # fmt: skip


@pytest.fixture
def engine(ctl) -> Iterator[Engine]:
    engine = make_engine(yaml.safe_load(ctl.config.read_text())["database"])
    yield engine
    engine.dispose()


def test_policy_add_carrier_routes_to_the_carrier_in_priority_order(ctl, engine) -> None:
    add_carrier(ctl, "ZAIN")
    add_carrier(ctl, "ASIA", "--concat", "sar")
    ctl.ok("policy", "add", "--pattern", "9647%", "--carrier", "ZAIN")
    ctl.ok("policy", "add", "--pattern", "9647%", "--carrier", "ASIA", "--priority", "5")
    listed = ctl.json("policy", "list")
    assert {(p["pattern"], p["carrier"], p["connection"], p["priority"]) for p in listed} == {
        ("9647%", "ZAIN", None, 0),
        ("9647%", "ASIA", None, 5),
    }
    with engine.connect() as conn:
        table = load_routing_table(conn)
        ids = dict(conn.execute(select(carriers.c.name, carriers.c.id)).all())
        concat = dict(conn.execute(select(carriers.c.name, carriers.c.concat)).all())
    decision = table.resolve("9647701234567")
    assert decision.kind == "forward"
    assert decision.routes == (
        Route(ids["ZAIN"], "ZAIN", "9647%", 0, carrier=True),
        Route(ids["ASIA"], "ASIA", "9647%", 5, carrier=True),
    )
    assert decision.routes[0].key == "carrier:ZAIN"
    assert "carrier 'ZAIN'" in decision.reason
    assert concat == {"ZAIN": "udh", "ASIA": "sar"}
    # a disabled carrier is no route; the reason says so
    ctl.ok("carrier", "disable", "ZAIN")
    ctl.ok("carrier", "disable", "ASIA")
    with engine.connect() as conn:
        decision = load_routing_table(conn).resolve("9647701234567")
    assert decision.kind == "reject"
    assert "disabled carriers" in decision.reason


def test_policy_needs_exactly_one_target(ctl) -> None:
    add_carrier(ctl, "ZAIN")
    ctl.refused("policy", "add", "--pattern", "9647%", contains="--connection or --carrier")
    ctl.refused(
        "policy", "add", "--pattern", "9647%", "--carrier", "NOPE", contains="no carrier named"
    )
    # a carrier used by a policy cannot be removed
    ctl.ok("policy", "add", "--pattern", "9647%", "--carrier", "ZAIN")
    ctl.refused("carrier", "remove", "ZAIN", contains="service policies")


def test_apply_file_with_carrier_policy_and_cost_tariff(ctl, engine, tmp_path: Path) -> None:
    plan = {
        "carriers": [
            {
                "name": "ZAIN", "system_id": "ZAIN", "password": PW,
                "allow_ip": ["127.0.0.1/32"], "concat": "sar",
            }
        ],
        "policies": [{"pattern": "9647%", "carrier": "ZAIN", "priority": 2}],
        "tariffs": [
            {"carrier": "ZAIN", "prefix": "964", "price": "0.010", "currency": "USD",
             "from": "2026-01-01"},
            {"carrier": "ZAIN", "prefix": "964", "price": "0.004", "currency": "USD",
             "from": "2026-01-01", "direction": "out"},
        ],
    }  # fmt: skip
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan), encoding="utf-8")
    ctl.ok("apply", "-f", str(path))
    assert ctl.ok("apply", "-f", str(path)).stdout.strip() == "no changes"
    with engine.connect() as conn:
        assert conn.execute(select(policies.c.carrier_id, policies.c.connection_id)).all() == [
            (1, None)
        ]
        rows = conn.execute(
            select(tariffs.c.direction, tariffs.c.price).order_by(tariffs.c.direction)
        ).all()
    assert [(d, str(p)) for d, p in rows] == [("in", "0.010"), ("out", "0.004")]


def test_tariff_add_direction_out_is_a_separate_set(ctl, engine) -> None:
    add_carrier(ctl, "ZAIN")
    base = ("tariff", "add", "--carrier", "ZAIN", "--prefix", "964", "--currency", "USD")
    ctl.ok(*base, "--price", "0.010", "--from", "2026-01-01")
    # the same prefix and day in the other direction does not collide with it
    ctl.ok(*base, "--price", "0.004", "--from", "2026-01-01", "--direction", "out")
    # a later cost ends the earlier open-ended cost, not the inbound tariff
    ctl.ok(*base, "--price", "0.005", "--from", "2026-03-01", "--direction", "out")
    listed = ctl.json("tariff", "list")
    got = sorted((t["direction"], t["price"], str(t["from"]), str(t["to"])) for t in listed)
    assert got == [
        ("in", "0.010", "2026-01-01", "None"),
        ("out", "0.004", "2026-01-01", "2026-02-28"),
        ("out", "0.005", "2026-03-01", "None"),
    ]
