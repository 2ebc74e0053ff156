# Unit tests of the decision on SMPP connections before their bind (gateway/smpp/intake.py).
from __future__ import annotations

import ipaddress

from gateway.smpp.carriers import Carrier
from gateway.smpp.intake import AllowedAddresses, Refusal, RefusalLog, UnboundCounter


def carrier(*networks: str, cid: int = 1) -> Carrier:
    return Carrier(
        id=cid,
        name=f"C{cid}",
        system_id=f"C{cid}",
        password_hash="-",
        networks=tuple(ipaddress.ip_network(n) for n in networks),
        max_binds=1,
        throughput=None,
        receipt_id="dec",
        alphabet="gsm",
        enabled=True,
    )


def test_an_address_is_allowed_when_any_carrier_allows_it() -> None:
    allowed = AllowedAddresses()
    carriers = (carrier("127.0.0.2/32"), carrier("10.0.0.0/8", "2001:db8::/32", cid=2))
    assert allowed.allows("127.0.0.2", carriers)
    assert allowed.allows("10.200.1.1", carriers)
    assert allowed.allows("2001:db8::7", carriers)
    assert allowed.allows("::ffff:10.1.2.3", carriers)  # an IPv4 peer on a dual-stack socket
    assert not allowed.allows("127.0.0.3", carriers)
    assert not allowed.allows("2001:db9::1", carriers)
    assert not allowed.allows("?", carriers)  # no peer name: not an address anyone allows


def test_no_carrier_or_an_empty_allow_list_allows_nothing_as_at_bind() -> None:
    allowed = AllowedAddresses()
    assert not allowed.allows("127.0.0.1", ())
    empty = carrier()
    assert not empty.allows("127.0.0.1")  # the bind's rule, kept at connect
    assert not allowed.allows("127.0.0.1", (empty,))


def test_a_reloaded_directory_is_seen_at_once() -> None:
    allowed = AllowedAddresses()
    assert not allowed.allows("192.0.2.9", (carrier("127.0.0.1/32"),))
    assert allowed.allows("192.0.2.9", (carrier("127.0.0.1/32"), carrier("192.0.2.0/24", cid=2)))
    assert not allowed.allows("192.0.2.9", (carrier("127.0.0.1/32"),))


def test_unbound_connections_are_capped_per_address_and_in_all() -> None:
    counter = UnboundCounter(per_address=2, total=3)
    assert counter.admit("a") is None
    assert counter.admit("a") is None
    assert counter.admit("a") is Refusal.PER_ADDRESS
    assert counter.admit("b") is None
    assert counter.admit("c") is Refusal.TOTAL
    assert (counter.count, counter.of("a"), counter.of("b")) == (3, 2, 1)
    counter.release("a")  # one of a's bound or went away
    assert counter.admit("c") is None
    counter.release("zz")  # never admitted: nothing to give back
    assert counter.count == 3
    for address in ("a", "b", "c"):
        counter.release(address)
    assert (counter.count, counter.of("a"), counter.of("b"), counter.of("c")) == (0, 0, 0, 0)


def test_refusals_are_logged_once_a_minute_per_address_and_summed_up() -> None:
    refusals = RefusalLog(every=60.0)
    assert refusals.refused("10.0.0.1", Refusal.PER_ADDRESS, 0.0)
    assert not refusals.pending
    logged = sum(refusals.refused("10.0.0.1", Refusal.PER_ADDRESS, t / 10) for t in range(1, 300))
    assert logged == 0 and refusals.pending
    assert refusals.refused("10.0.0.2", Refusal.UNKNOWN_ADDRESS, 31.0)  # another address
    line = refusals.summary(60.0)
    assert line is not None
    assert "refused 301 connections" in line and "per_address 299" not in line
    assert "per_address 300" in line and "unknown_address 1" in line
    assert "from 2 addresses" in line and "299 of them not logged" in line
    assert not refusals.pending and refusals.summary(61.0) is None  # nothing new
    assert not refusals.refused("10.0.0.2", Refusal.UNKNOWN_ADDRESS, 62.0)  # 31 s after
    assert refusals.refused("10.0.0.1", Refusal.PER_ADDRESS, 62.0)  # a minute after its last


def test_a_flood_from_many_addresses_keeps_the_refusal_log_bounded() -> None:
    refusals = RefusalLog(every=60.0, max_addresses=100)
    logged = sum(refusals.refused(f"10.0.{i // 256}.{i % 256}", Refusal.TOTAL, 1.0) for i in
                 range(10_000))  # fmt: skip
    assert logged == 100  # one line each for the first ones, then only the summary
    assert len(refusals._logged) == 100 and len(refusals._addresses) == 100
    line = refusals.summary(2.0)
    assert line is not None and "refused 10000 connections" in line and "100+ addresses" in line
    assert refusals.refused("10.9.9.9", Refusal.TOTAL, 61.5)  # the old entries were forgotten
