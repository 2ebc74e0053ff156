# Tests of gateway/sip/registrar.py: §19.1.4 contact comparison, §10.3 steps 1-2, contact hosts.
"""Contacts compare per RFC 3261 §19.1.4 (one binding per contact, however it is spelled);
the Request-URI domain, Require and the Contact host are checked as the server needs."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from gateway.sip.message import Request, SipError, parse_message, parse_uri
from gateway.sip.registrar import (
    MAX_UNSUPPORTED,
    Binding,
    Bindings,
    foreign_contact,
    same_uri,
    serves_domain,
    unsupported_options,
)

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
SOURCE = ("198.51.100.7", 40123)

# RFC 3261 §19.1.4: "the URIs within each of the following sets are equivalent"
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
    # and what apps actually vary
    (
        "sip:1111@198.51.100.7:40123;transport=tcp;ob",
        "sip:1111@198.51.100.7:40123;ob;transport=TCP",
    ),
    ("sip:1111@[2001:db8::1]:5060", "sip:1111@[2001:DB8:0::1]:5060"),
]
# "The URIs within each of the following sets are not equivalent"
NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),  # user
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),  # can resolve to different ports
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),  # different transports
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),  # port and transport
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),  # header
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),  # even if it resolves to it
    # the other rules of §19.1.4
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:alice:pw@atlanta.com", "sip:alice:PW@atlanta.com"),
    ("sip:alice@atlanta.com;user=phone", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com;ttl=1", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com;method=INVITE", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com;maddr=239.255.255.1", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com;newparam=5", "sip:alice@atlanta.com;newparam=6"),
    ("sip:alice@atlanta.com:5060", "sip:alice@atlanta.com:5061"),
    ("sip:a%3bb@atlanta.com", "sip:a;b@atlanta.com"),  # an escaped reserved character
]


@pytest.mark.parametrize(("one", "other"), EQUIVALENT)
def test_rfc3261_equivalent_uris(one: str, other: str) -> None:
    assert same_uri(one, other)
    assert same_uri(other, one)
    assert same_uri(parse_uri(one), other)


@pytest.mark.parametrize(("one", "other"), NOT_EQUIVALENT)
def test_rfc3261_non_equivalent_uris(one: str, other: str) -> None:
    assert not same_uri(one, other)
    assert not same_uri(other, one)


def register(*contacts: str, cseq: int = 1, expires: str | None = "600") -> Request:
    lines = [
        "REGISTER sip:env1.example.net SIP/2.0",
        "Via: SIP/2.0/TCP 198.51.100.7:40123;branch=z9hG4bK-1;rport",
        "Max-Forwards: 70",
        "To: <sip:1111@env1.example.net>",
        "From: <sip:1111@env1.example.net>;tag=abc",
        "Call-ID: reg-1@app",
        f"CSeq: {cseq} REGISTER",
        *(f"Contact: {c}" for c in contacts),
    ]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    parsed = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(parsed, Request)
    return parsed


def do(reg: Bindings, request: Request, now: datetime = T0):
    return reg.register(7, "1111", request, transport="tcp", source=SOURCE, now=now)


def test_case_and_parameter_order_variants_are_one_binding() -> None:
    """The attack of issue 15: two spellings of one contact were two bindings, so one
    MESSAGE was forked twice to the same app."""
    reg = Bindings()
    assert do(reg, register("<sip:1111@198.51.100.7:40123;transport=tcp;ob>")).status == 200
    variant = "<SIP:1111@198.51.100.7:40123;ob;Transport=TCP>"
    result = do(reg, register(variant, cseq=2), T0 + timedelta(seconds=10))
    assert result.status == 200
    [binding] = reg.contacts(7, T0 + timedelta(seconds=10))
    assert binding.contact == "sip:1111@198.51.100.7:40123;ob;Transport=TCP"  # the latest form
    assert binding.expires_at == T0 + timedelta(seconds=610)
    assert len(reg) == 1
    # an equivalent spelling removes it
    do(reg, register("<sip:1111@198.51.100.7:40123;TRANSPORT=tcp;ob>", cseq=3, expires="0"))
    assert len(reg) == 0


def test_equivalent_contacts_in_one_request_are_one_binding() -> None:
    reg = Bindings()
    a = "<sip:1111@198.51.100.7:40123;transport=tcp>"
    b = "<sip:1111@198.51.100.7:40123;TRANSPORT=TCP>;expires=300"
    result = do(reg, register(a, b))
    [binding] = result.current
    assert binding.expires_at == T0 + timedelta(seconds=300)  # the last one counts


def test_an_older_cseq_is_refused_for_an_equivalent_contact() -> None:
    reg = Bindings()
    do(reg, register("<sip:1111@198.51.100.7:40123>", cseq=5))
    result = do(reg, register("<sip:1111@198.51.100.7:40123;newparam=1>", cseq=4))
    assert result.status == 500  # §10.3 step 6 applies to the equivalent binding


def test_different_contacts_stay_two_bindings() -> None:
    reg = Bindings()
    do(reg, register("<sip:1111@198.51.100.7:40123>", "<sip:1111@198.51.100.7:40123;user=ip>"))
    assert len(reg) == 2


def test_load_keeps_the_latest_of_equivalent_stored_contacts() -> None:
    def stored(contact: str, minutes: int) -> Binding:
        return Binding(
            7, "1111", contact, T0 + timedelta(hours=1), "c", 1, None, "udp", SOURCE, None,
            T0 + timedelta(minutes=minutes),
        )  # fmt: skip

    reg = Bindings()
    reg.load(
        [
            stored("sip:1111@198.51.100.7:5060;transport=udp", 2),
            stored("sip:1111@198.51.100.7:5060;TRANSPORT=UDP", 1),
            stored("sip:1111@198.51.100.7:5062", 0),
        ]
    )
    assert sorted(b.contact for b in reg) == [
        "sip:1111@198.51.100.7:5060;transport=udp",
        "sip:1111@198.51.100.7:5062",
    ]
    assert len(reg) == 2
    gone = reg.expire(T0 + timedelta(hours=2))  # the dropped twin is not expired twice
    assert sorted(b.contact for b in gone) == [
        "sip:1111@198.51.100.7:5060;transport=udp",
        "sip:1111@198.51.100.7:5062",
    ]
    assert len(reg) == 0


# -- §10.3 step 1: the Request-URI's domain -----------------------------------------------------
def test_request_uri_must_name_our_domain_or_address() -> None:
    ours = ["127.0.0.1", "2001:db8::5"]
    assert serves_domain(parse_uri("sip:env1.example.net"), "env1.example.net", ours)
    assert serves_domain(parse_uri("sip:ENV1.Example.NET:5060"), "env1.example.net", ours)
    assert serves_domain(parse_uri("sip:127.0.0.1:5070;transport=tcp"), "env1.example.net", ours)
    assert serves_domain(parse_uri("sip:[2001:DB8::5]"), "env1.example.net", ours)
    assert not serves_domain(parse_uri("sip:evil.example.com"), "env1.example.net", ours)
    assert not serves_domain(parse_uri("sip:127.0.0.2"), "env1.example.net", ours)
    assert not serves_domain(parse_uri("sip:example.net"), "env1.example.net", ours)


# -- §10.3 step 2 / §8.2.2.3: Require ---------------------------------------------------------
def with_headers(*extra: str) -> Request:
    request = register("<sip:1111@198.51.100.7:40123>")
    for line in extra:
        name, _, value = line.partition(": ")
        request.headers.add(name, value)
    return request


def test_require_lists_each_unsupported_option_once() -> None:
    assert unsupported_options(with_headers()) == []
    request = with_headers("Require: foo, bar", "Require: foo,,100rel")
    assert unsupported_options(request) == ["foo", "bar", "100rel"]
    assert unsupported_options(request, frozenset({"foo"})) == ["bar", "100rel"]
    many = with_headers("Require: " + ", ".join(f"opt{i}" for i in range(100)))
    assert len(unsupported_options(many)) == MAX_UNSUPPORTED


def test_require_that_is_not_option_tags_is_400() -> None:
    with pytest.raises(SipError) as caught:
        unsupported_options(with_headers('Require: "quoted"'))
    assert caught.value.status == 400


# -- the Contact host ---------------------------------------------------------------------------
NETS = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(
    ("contact", "foreign"),
    [
        ("<sip:1111@198.51.100.7:40123;transport=tcp>", None),  # the source, any port
        ("<sip:1111@198.51.100.7:5060>", None),
        ("<sip:1111@127.0.0.1:19999;transport=tcp>", "127.0.0.1"),  # the SSRF of issue 15
        ("<sip:1111@10.1.2.3:5060>", None),  # in contact_networks
        ("<sip:1111@phone.example.com>", "phone.example.com"),  # a name is not an address
        ("*", None),
        ("<sip:1111@127.0.0.1:19999>;expires=0", None),  # removing reaches nothing
    ],
)
def test_contact_host_must_be_the_source_or_allowed(contact: str, foreign: str | None) -> None:
    request = register(contact, expires="0" if contact == "*" else "600")
    assert foreign_contact(request, SOURCE, NETS) == foreign


def test_contact_host_compares_addresses_not_spellings() -> None:
    request = register("<sip:1111@[::ffff:198.51.100.7]:5060>")
    assert foreign_contact(request, SOURCE) is None
    request = register("<sip:1111@[2001:db8::7]:5060>")
    assert foreign_contact(request, ("2001:DB8:0::7", 5060)) is None
    assert foreign_contact(register("<sip:1111@10.1.2.3>"), SOURCE) == "10.1.2.3"  # no networks
