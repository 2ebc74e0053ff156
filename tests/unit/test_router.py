# Tests of routing/router.py: local DIDs, refused DIDs, policies, failover, rejects, a reference.
"""Destination resolution against hand-written cases and a brute-force reference."""

from __future__ import annotations

import functools
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidInput
from routing.router import Decision, LocalAccount, Route, RoutingTable

VENDOR = "Messages to vendor via SMPP"
JOHN = ("964111222333", 1, "1111", True, True)


def table(dids=(), policies=(), pool=()) -> RoutingTable:
    return RoutingTable.build(dids=dids, policies=policies, pool=pool)


def connections(decision: Decision) -> list[str]:
    return [route.name for route in decision.routes]


def test_scenario_local_did_of_an_enabled_messaging_account_is_local() -> None:
    routes = table(dids=[JOHN], policies=[("%", 7, VENDOR, 0, True)])
    decision = routes.resolve("964111222333")
    assert decision == Decision(
        "local",
        LocalAccount(account=1, account_id="1111", did="964111222333"),
        (),
        "964111222333 is a DID of account 1111",
    )
    # The same account's other numbers are not local; the catch-all takes them.
    assert routes.resolve("964111222334").kind == "forward"


def test_scenario_2_pattern_222_forwards_to_the_vendor_connection() -> None:
    routes = table(dids=[JOHN], policies=[("222%", 7, VENDOR, 0, True)])
    decision = routes.resolve("2222")
    assert decision.kind == "forward"
    assert decision.local is None
    assert decision.routes == (Route(7, VENDOR, "222%", 0),)
    assert decision.reason == f"2222 matches 222%: connection {VENDOR!r}"


@pytest.mark.parametrize(
    ("enabled", "messaging", "why"),
    [
        (False, True, "which is disabled"),
        (True, False, "which has a product without messaging"),
        (False, False, "which is disabled and has a product without messaging"),
    ],
)
def test_did_of_an_account_that_cannot_take_messages_is_rejected_not_forwarded(
    enabled: bool, messaging: bool, why: str
) -> None:
    routes = table(
        dids=[("964111222333", 1, "1111", enabled, messaging)],
        policies=[("%", 7, VENDOR, 0, True), ("964111222333", 8, "exact", 0, True)],
    )
    decision = routes.resolve("964111222333")
    assert decision == Decision("reject", None, (), f"964111222333 is a DID of account 1111, {why}")


def test_did_in_the_pool_is_rejected_not_forwarded() -> None:
    routes = table(policies=[("964%", 7, VENDOR, 0, True)], pool=["964111222399"])
    decision = routes.resolve("964111222399")
    assert decision.kind == "reject"
    assert decision.reason == (
        "964111222399 is a DID of this environment that is not assigned to any account"
    )
    assert routes.resolve("964111222398").kind == "forward"
    assert routes.did_count == 1 and routes.policy_count == 1


def test_underscore_is_one_digit_and_percent_any_digits() -> None:
    routes = table(
        policies=[
            ("96477_______", 1, "exact-length", 0, True),
            ("9647_%", 2, "prefix", 0, True),
        ]
    )
    assert connections(routes.resolve("964771234567")) == ["exact-length", "prefix"]
    assert connections(routes.resolve("9647712345678")) == ["prefix"]  # one digit too many
    assert connections(routes.resolve("96477123456")) == ["prefix"]  # one digit short
    assert connections(routes.resolve("964781234567")) == ["prefix"]  # 8 is not 7
    assert connections(routes.resolve("96471")) == ["prefix"]  # % matches no digits
    assert routes.resolve("9647").kind == "reject"  # _ needs a digit


def test_most_specific_pattern_beats_a_better_priority() -> None:
    routes = table(
        policies=[
            ("%", 1, "catch-all", -100, True),
            ("22%", 2, "region", -10, True),
            ("222%", 3, "country", 50, True),
            ("2221_%", 4, "operator", 99, True),
            ("22212%", 5, "range", 99, True),
        ]
    )
    assert connections(routes.resolve("222123")) == [
        "range",
        "operator",
        "country",
        "region",
        "catch-all",
    ]
    assert connections(routes.resolve("2229")) == ["country", "region", "catch-all"]


def test_same_pattern_orders_by_priority_then_connection_name() -> None:
    policies = [
        ("222%", 3, "charlie", 5, True),
        ("222%", 1, "bravo", 0, True),
        ("222%", 2, "alpha", 0, True),
        ("+222%", 4, "delta", -1, True),
    ]
    expected = ["delta", "alpha", "bravo", "charlie"]
    assert connections(table(policies=policies).resolve("2221")) == expected
    assert connections(table(policies=policies[::-1]).resolve("2221")) == expected
    assert table(policies=policies).resolve("2221").routes[0].pattern == "222%"  # normalised


def test_connection_matched_by_several_patterns_is_listed_once_at_its_best_place() -> None:
    routes = table(
        policies=[
            ("222%", 1, "primary", 0, True),
            ("22%", 2, "backup", 0, True),
            ("2%", 1, "primary", 0, True),
            ("222%", 1, "primary", 9, True),
        ]
    )
    decision = routes.resolve("2221")
    assert decision.routes == (Route(1, "primary", "222%", 0), Route(2, "backup", "22%", 0))
    assert decision.reason.endswith("(then 1 more for failover)")


def test_disabled_connections_are_not_routes() -> None:
    routes = table(
        policies=[
            ("2221%", 1, "down-for-maintenance", 0, False),
            ("222%", 2, "primary", 0, True),
            ("22%", 3, "old", 0, False),
        ]
    )
    assert connections(routes.resolve("22215")) == ["primary"]
    decision = routes.resolve("2231")
    assert decision == Decision(
        "reject",
        None,
        (),
        "no route for 2231: the matching policies point only at disabled connections "
        "('old' via 22%)",
    )


def test_reject_reason_names_at_most_three_disabled_connections() -> None:
    routes = table(policies=[("1%", n, f"c{n}", n, False) for n in range(5)])
    assert routes.resolve("12").reason == (
        "no route for 12: the matching policies point only at disabled connections "
        "('c0' via 1%, 'c1' via 1%, 'c2' via 1% and 2 more)"
    )


def test_failover_next_route_skips_connections_that_are_down() -> None:
    routes = table(
        policies=[
            ("222%", 1, "primary", 0, True),
            ("222%", 2, "secondary", 1, True),
            ("%", 3, "last-resort", 0, True),
        ]
    )
    decision = routes.resolve("2221")
    assert [r.connection for r in decision.routes] == [1, 2, 3]
    assert routes.next_route(decision, down=set()) == decision.routes[0]
    assert routes.next_route(decision, down={1}) == decision.routes[1]
    assert routes.next_route(decision, down=frozenset({1, 2})) == decision.routes[2]
    assert routes.next_route(decision, down={2}) == decision.routes[0]
    assert routes.next_route(decision, down=[1, 2, 3]) is None
    assert routes.next_route(routes.resolve("x"), down=()) is None
    local = table(dids=[JOHN]).resolve("964111222333")
    assert routes.next_route(local, down=()) is None


def test_reject_reasons() -> None:
    routes = table(dids=[JOHN], policies=[("222%", 7, VENDOR, 0, True)])
    assert routes.resolve("96455501234") == Decision(
        "reject", None, (), "no route for 96455501234: no local DID and no policy matches"
    )
    for bad in ("", "+964111222333", "96411122_333", "1" * 16, "٩٦٤"):
        decision = routes.resolve(bad)
        assert decision.kind == "reject"
        assert decision.reason == f"{bad!r} is not an E.164 number (1 to 15 digits without '+')"
    assert table().resolve("1").reason == "no route for 1: no local DID and no policy matches"


def test_a_bad_pattern_is_located() -> None:
    with pytest.raises(InvalidInput) as caught:
        table(policies=[("222%", 1, "a", 0, True), ("22%2", 2, "b", 0, True)])
    assert caught.value.field == "policies[1].pattern"


def test_snapshot_is_immutable_and_independent_of_its_inputs() -> None:
    dids = [JOHN]
    policies = [("222%", 7, VENDOR, 0, True)]
    routes = table(dids=dids, policies=policies)
    dids.clear()
    policies.clear()
    assert routes.resolve("964111222333").kind == "local"
    assert routes.resolve("2221").kind == "forward"
    with pytest.raises(AttributeError):
        routes.extra = 1  # type: ignore[attr-defined]


# --- a brute-force reference, written without routing.patterns --------------------------


@functools.cache
def like(pattern: str) -> re.Pattern[str]:
    body = pattern.removeprefix("+")
    wildcard = body.endswith("%")
    body = body.removesuffix("%")
    regex = "".join("[0-9]" if c == "_" else re.escape(c) for c in body)
    return re.compile(regex + ("[0-9]*" if wildcard else ""))


def reference(dids, policies, pool, destination: str) -> Decision:
    for e164, account, account_id, enabled, messaging in dids:
        if e164 == destination:
            if enabled and messaging:
                return Decision("local", LocalAccount(account, account_id, e164), (), "")
            return Decision("reject", None, (), "")
    if destination in pool:
        return Decision("reject", None, (), "")
    if not re.fullmatch("[0-9]{1,15}", destination):
        return Decision("reject", None, (), "")

    def order(policy):
        pattern, connection, name, priority, _ = policy
        body = pattern.removeprefix("+")
        wildcard = body.endswith("%")
        positions = body.removesuffix("%")
        fixed = tuple(c == "_" for c in positions)
        return (wildcard, -len(positions), fixed, priority, name, connection)

    matching = sorted(
        (p for p in policies if p[4] and like(p[0]).fullmatch(destination)), key=order
    )
    routes: list[Route] = []
    for pattern, connection, name, priority, _ in matching:
        if all(r.connection != connection for r in routes):
            routes.append(Route(connection, name, pattern.removeprefix("+"), priority))
    if routes:
        return Decision("forward", None, tuple(routes), "")
    return Decision("reject", None, (), "")


def same(actual: Decision, expected: Decision) -> None:
    assert (actual.kind, actual.local, actual.routes) == (
        expected.kind,
        expected.local,
        expected.routes,
    )
    assert actual.reason


DIGITS = "0123"
numbers = st.text(alphabet=DIGITS, min_size=1, max_size=6)
pattern_text = st.builds(
    lambda body, plus, wildcard: ("+" if plus else "") + body + ("%" if wildcard else ""),
    st.text(alphabet=DIGITS[:3] + "_", min_size=0, max_size=5),
    st.booleans(),
    st.booleans(),
).filter(lambda p: p.removeprefix("+") != "")
connection = st.integers(min_value=1, max_value=6)
policy = st.builds(
    lambda pattern, conn, priority, enabled: (pattern, conn, f"conn-{conn}", priority, enabled),
    pattern_text,
    connection,
    st.integers(min_value=-2, max_value=2),
    st.booleans(),
)
did = st.builds(
    lambda number, account, enabled, messaging: (
        number,
        account,
        str(1000 + account),
        enabled,
        messaging,
    ),
    numbers,
    st.integers(min_value=1, max_value=5),
    st.booleans(),
    st.booleans(),
)


def unique_policies(rows):
    """The store keeps one policy per (pattern, connection) and one name per connection."""
    kept = {}
    for row in rows:
        kept.setdefault((row[0].removeprefix("+"), row[1]), row)
    return list(kept.values())


@settings(max_examples=300, deadline=None)
@given(
    dids=st.lists(did, max_size=6, unique_by=lambda d: d[0]),
    policies=st.lists(policy, max_size=12).map(unique_policies),
    pool=st.lists(numbers, max_size=3),
    destinations=st.lists(numbers, min_size=1, max_size=10),
)
def test_resolve_agrees_with_the_reference(dids, policies, pool, destinations) -> None:
    pool = [p for p in pool if p not in {d[0] for d in dids}]
    routes = table(dids=dids, policies=policies, pool=pool)
    for destination in [*destinations, *(d[0] for d in dids), *pool]:
        same(routes.resolve(destination), reference(dids, policies, pool, destination))


def test_ten_thousand_dids_and_a_thousand_policies_agree_with_the_reference() -> None:
    rng = random.Random(5)

    def number() -> str:
        return rng.choice(["964", "222", "2227", "1"]) + "".join(
            rng.choice("0123456789") for _ in range(rng.randint(1, 8))
        )

    dids = []
    seen = set()
    while len(dids) < 10_000:
        e164 = number()
        if e164 not in seen:
            seen.add(e164)
            account = rng.randint(1, 3000)
            dids.append((e164, account, f"acc{account}", rng.random() > 0.1, rng.random() > 0.1))
    pool = [n for n in (number() for _ in range(500)) if n not in seen]
    rows = []
    for _ in range(1000):
        base = number()[: rng.randint(1, 6)]
        body = "".join("_" if rng.random() < 0.2 else c for c in base)
        pattern = body + ("%" if rng.random() < 0.8 else "")
        conn = rng.randint(1, 60)
        rows.append((pattern, conn, f"conn-{conn:02d}", rng.randint(0, 3), rng.random() > 0.1))
    policies = unique_policies(rows)
    routes = table(dids=dids, policies=policies, pool=pool)
    assert routes.did_count == len(dids) + len(set(pool))
    assert routes.policy_count == len(policies)

    by_number = {d[0]: d for d in dids}
    kinds = {"local": 0, "forward": 0, "reject": 0}
    pool_set = set(pool)
    candidates = [number() for _ in range(3000)] + rng.sample(sorted(seen), 500) + pool[:100]
    for destination in candidates:
        found = by_number.get(destination)
        expected = reference([found] if found else [], policies, pool_set, destination)
        decision = routes.resolve(destination)
        same(decision, expected)
        kinds[decision.kind] += 1
    assert all(count > 50 for count in kinds.values()), kinds
