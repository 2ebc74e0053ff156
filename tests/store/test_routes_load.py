# The routing table read from a store provisioned with gatewayctl, and its cache; both stores.
from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from sqlalchemy import Engine, event

from gateway.routes import RoutingCache, load_routing_table, read_routing_rows
from gateway.store.engine import make_engine
from routing.router import LocalAccount, Route

PW = "john-Secret-1"
PEER_PW = "peerpw12"
VENDOR = "Messages to vendor via SMPP"


def add_account(ctl, account_id: str, product: str, *numbers: str) -> None:
    extra = [arg for number in numbers for arg in ("--did", number)]
    ctl.ok(
        "account", "add", account_id, "--customer", "John Doe", "--product", product,
        "--password", PW, *extra,
    )  # fmt: skip


def add_connection(ctl, name: str, port: int) -> None:
    ctl.ok(
        "connection", "add", name, "--host", "127.0.0.1", "--port", str(port),
        "--system-id", "GW-ENV1", "--password", PEER_PW,
    )  # fmt: skip


def provision(ctl) -> None:
    """The scenarios of sections 1-3 (tests/scenarios/) in env1, plus the cases an operator gets wrong."""
    ctl.ok("customer", "add", "John Doe")
    ctl.ok("product", "add", "Call & Chat", "--messaging")
    ctl.ok("product", "add", "Calls only", "--no-messaging")
    add_account(ctl, "1111", "Call & Chat", "111222333")
    add_account(ctl, "3333", "Calls only", "111222444")
    add_account(ctl, "4444", "Call & Chat", "111222555")
    ctl.ok("account", "disable", "4444")
    ctl.ok("did", "assign", "111222666", "--account", "1111")
    ctl.ok("did", "release", "111222666")  # back to the pool
    add_connection(ctl, VENDOR, 2776)
    add_connection(ctl, "backup", 2777)
    add_connection(ctl, "retired", 2778)
    ctl.ok("connection", "disable", "retired")
    ctl.ok("policy", "add", "--pattern", "222%", "--connection", VENDOR)
    ctl.ok("policy", "add", "--pattern", "222%", "--connection", "backup", "--priority", "5")
    ctl.ok("policy", "add", "--pattern", "+333%", "--connection", "retired")


@pytest.fixture
def engine(ctl) -> Iterator[Engine]:
    engine = make_engine(yaml.safe_load(ctl.config.read_text())["database"])
    yield engine
    engine.dispose()


def count_queries(engine: Engine) -> list[str]:
    statements: list[str] = []
    event.listen(
        engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: statements.append(statement),
    )
    return statements


def test_loaded_table_routes_scenarios_1_to_3(ctl, engine) -> None:
    provision(ctl)
    statements = count_queries(engine)
    with engine.connect() as conn:
        table = load_routing_table(conn)
    assert len(statements) == 2  # one per table, joins instead of a query per row

    local = table.resolve("964111222333")
    assert local.kind == "local"
    assert local.local is not None and local.local.account_id == "1111"
    assert local.local == LocalAccount(local.local.account, "1111", "964111222333")

    forward = table.resolve("2222")
    assert forward.kind == "forward"
    assert [(r.name, r.pattern, r.priority) for r in forward.routes] == [
        (VENDOR, "222%", 0),
        ("backup", "222%", 5),
    ]
    primary, backup = forward.routes
    assert table.next_route(forward, down={primary.connection}) == backup
    assert table.next_route(forward, down={primary.connection, backup.connection}) is None

    assert table.resolve("964111222444").reason == (
        "964111222444 is a DID of account 3333, which has a product without messaging"
    )
    assert table.resolve("964111222555").reason == (
        "964111222555 is a DID of account 4444, which is disabled"
    )
    assert table.resolve("964111222666").reason == (
        "964111222666 is a DID of this environment that is not assigned to any account"
    )
    assert table.resolve("3331").reason == (
        "no route for 3331: the matching policies point only at disabled connections "
        "('retired' via 333%)"
    )
    assert table.resolve("96455501234").reason == (
        "no route for 96455501234: no local DID and no policy matches"
    )
    assert table.did_count == 4 and table.policy_count == 3


def test_empty_store_rejects_everything(ctl, engine) -> None:
    with engine.connect() as conn:
        table = load_routing_table(conn)
    assert table.did_count == 0 and table.policy_count == 0
    assert table.resolve("964111222333").kind == "reject"


def test_cache_reloads_only_when_provisioning_changed(ctl, engine) -> None:
    cache = RoutingCache(engine)
    with pytest.raises(RuntimeError, match="not been loaded"):
        _ = cache.table
    assert cache.version == 0

    provision(ctl)
    assert cache.load() is True
    assert cache.version == 1
    first = cache.table
    assert first.resolve("4441").kind == "reject"

    assert cache.load() is False  # same rows: same table, same version
    assert cache.version == 1 and cache.table is first

    ctl.ok("policy", "add", "--pattern", "444_", "--connection", "backup")
    assert cache.load() is True
    assert cache.version == 2
    [route] = cache.table.resolve("4441").routes
    assert (route.name, route.pattern, route.priority) == ("backup", "444_", 0)
    assert route == Route(route.connection, "backup", "444_", 0)
    assert first.resolve("4441").kind == "reject"  # the old snapshot is unchanged

    ctl.ok("account", "enable", "4444")
    assert cache.load() is True and cache.version == 3
    assert cache.table.resolve("964111222555").kind == "local"

    ctl.ok("connection", "disable", VENDOR)
    assert cache.load() is True and cache.version == 4
    assert [r.name for r in cache.table.resolve("2222").routes] == ["backup"]

    ctl.ok("did", "assign", "111222666", "--account", "1111")
    assert cache.load() is True and cache.version == 5
    assert cache.table.resolve("964111222666").kind == "local"

    ctl.ok("did", "release", "111222333")
    assert cache.load() is True and cache.version == 6
    assert cache.table.resolve("964111222333").kind == "reject"


def test_a_failed_reload_keeps_the_table_in_service(ctl, engine, monkeypatch) -> None:
    provision(ctl)
    cache = RoutingCache(engine)
    cache.load()
    table = cache.table

    def broken(_conn):
        raise ConnectionError("store unreachable")

    monkeypatch.setattr("gateway.routes.read_routing_rows", broken)
    with pytest.raises(ConnectionError):
        cache.load()
    assert cache.table is table and cache.version == 1


def test_rows_are_read_in_a_stable_order(ctl, engine) -> None:
    provision(ctl)
    with engine.connect() as conn:
        rows = read_routing_rows(conn)
        again = read_routing_rows(conn)
    assert rows == again
    assert [row[0] for row in rows.dids] == sorted(row[0] for row in rows.dids)
    pool = [row for row in rows.dids if row[1] is None]
    assert pool == [("964111222666", None, None, None, None)]
    assert [(p[0], p[2], p[3], p[4]) for p in rows.policies] == [
        ("222%", VENDOR, 0, True),
        ("222%", "backup", 5, True),
        ("333%", "retired", 0, False),
    ]
