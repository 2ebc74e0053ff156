# Tests of gateway/sip/message.py: round trips, RFC 4475 torture messages, bounds and fuzzing.
import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sip.message import (
    BadMessage,
    Headers,
    KeepAlive,
    Limits,
    Request,
    Response,
    SipError,
    StreamParser,
    Uri,
    build_response,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
)

TORTURE = Path(__file__).parent / "sip_torture"


def torture(name: str) -> bytes:
    return (TORTURE / f"{name}.dat").read_bytes()


MESSAGE = (
    b"MESSAGE sip:+15551230000@gw.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP app.example.net:5061;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice, A." <sip:alice@example.net>;tag=49583\r\n'
    b"To: <sip:+15551230000@gw.example.com>\r\n"
    b"Call-ID: asd88asd77a@app.example.net\r\n"
    b"CSeq: 1 MESSAGE\r\n"
    b"Content-Type: text/plain;charset=UTF-8\r\n"
    b"Content-Length: 6\r\n"
    b"\r\n"
    b"h\xc3\xa9llo"
)


# --- round trips -------------------------------------------------------------------------


def test_message_request_parses_and_round_trips():
    req = parse_message(MESSAGE)
    assert isinstance(req, Request)
    assert req.method == "MESSAGE"
    assert req.uri == Uri("sip", "+15551230000", None, "gw.example.com")
    assert req.call_id() == "asd88asd77a@app.example.net"
    assert req.cseq().number == 1 and req.cseq().method == "MESSAGE"
    assert req.from_header().display_name == "Alice, A."
    assert req.from_header().tag == "49583"
    assert req.content_type() == ("text/plain", {"charset": "UTF-8"})
    assert req.text_body() == "héllo"
    via = req.vias()[0]
    assert (via.transport, via.host, via.port, via.branch) == (
        "TCP",
        "app.example.net",
        5061,
        "z9hG4bK776asdhds",
    )
    assert via.rport_requested and via.rport is None
    assert req.to_bytes() == MESSAGE
    assert parse_message(req.to_bytes()) == req


def test_response_round_trip_and_content_length_recomputed():
    resp = parse_message(torture("unreason"))
    assert isinstance(resp, Response)
    assert resp.status == 200
    assert resp.reason.startswith("= 2**3 * 5**2 но")
    resp.body = b"short"
    again = parse_message(resp.to_bytes())
    assert again == resp
    assert again.headers.get("Content-Length") == "5"


def test_noreason_has_empty_reason():
    resp = parse_message(torture("noreason"))
    assert isinstance(resp, Response)
    assert (resp.status, resp.reason) == (100, "")
    assert parse_message(resp.to_bytes()) == resp


def test_content_length_added_when_absent():
    data = MESSAGE.replace(b"Content-Length: 6\r\n", b"")
    req = parse_message(data)
    assert req.body == b"h\xc3\xa9llo"
    assert b"Content-Length: 6\r\n" in req.to_bytes()
    assert parse_message(req.to_bytes()) == req


def test_compact_forms_and_case_insensitive_lookup():
    req = parse_message(torture("esc01"))
    assert req.headers.get("call-id") == req.headers.get("i")
    assert req.headers.get("CONTENT-TYPE") == "application/sdp"
    assert "c" in req.headers and "Content-Type" in req.headers
    names = [name for name, _ in req.headers]
    assert "i" in names and "C" in names  # original spelling kept for output
    assert b"\r\ni: esc01." in req.to_bytes()


def test_multi_value_splitting_respects_quotes_and_angles():
    headers = Headers(
        [
            ("Contact", '"Doe, John" <sip:j@a.example;x=1,2>;q=0.5, <sip:k@b.example>'),
            ("m", "sip:l@c.example"),
            ("Subject", "a, b"),
            ("Allow", "INVITE, MESSAGE,OPTIONS"),
        ]
    )
    assert headers.get_all("contact") == [
        '"Doe, John" <sip:j@a.example;x=1,2>;q=0.5',
        "<sip:k@b.example>",
        "sip:l@c.example",
    ]
    assert headers.get_all("Subject") == ["a, b"]
    assert headers.get_all("allow") == ["INVITE", "MESSAGE", "OPTIONS"]
    assert headers.get("M") == headers.get("contact")


def test_headers_set_remove_and_iteration_order():
    headers = Headers([("Via", "a"), ("To", "x"), ("v", "b")])
    headers.set("via", "c")
    assert list(headers) == [("via", "c"), ("To", "x")]
    assert headers.remove("To") == 1
    headers.add("Subject", "hi")
    assert list(headers) == [("via", "c"), ("Subject", "hi")]
    assert headers.get("to") is None and headers.get_all("to") == []


def test_folding_is_unfolded():
    req = parse_message(torture("wsinv"))
    assert req.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert req.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert req.cseq().number == 9 and req.cseq().method == "INVITE"
    assert req.headers.get("Max-Forwards") == "0068"
    assert [(v.transport, v.host, v.branch) for v in req.vias()] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert req.to_header().tag == "1918181833n"
    assert req.from_header().display_name == 'J Rosenberg \\"'
    (contact,) = req.contacts()
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert req.headers.get("s") == ""
    assert parse_message(req.to_bytes()) == req


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:alice@[2001:db8::10]:5070;transport=tcp", "2001:db8::10", 5070),
        ("sips:[::1]", "::1", None),
        ("sip:bob:secret@192.0.2.4:5060;lr;transport=tls?subject=hi&x=y", "192.0.2.4", 5060),
    ],
)
def test_uri_round_trip(text, host, port):
    uri = parse_uri(text)
    assert (uri.host, uri.port) == (host, port)
    assert str(uri) == text


def test_uri_parts_and_password_not_in_repr():
    uri = parse_uri("sip:bob:secret@192.0.2.4:5060;lr;transport=tls?subject=hi")
    assert (uri.user, uri.password) == ("bob", "secret")
    assert uri.params == {"lr": None, "transport": "tls"}
    assert uri.param("TRANSPORT") == "tls" and uri.has_param("lr")
    assert uri.headers == "subject=hi"
    assert "secret" not in repr(uri)


def test_tel_uri():
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert (uri.scheme, uri.user, uri.host) == ("tel", "+1-201-555-0123", "")
    assert uri.params == {"phone-context": "example.com"}
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("http://example.com", 416),
        ("mailto:a@example.com", 416),
        ("<sip:a@example.com>", 400),
        ("sip:a@example.com;", 400),
        ("sip:a@[2001:db8::zz]", 400),
        ("sip:a@[::1", 400),
        ("sip:a@example.com:99999", 400),
        ("sip:a b@example.com", 400),
        ("sip:", 400),
        ("", 400),
    ],
)
def test_uri_errors(text, status):
    with pytest.raises(SipError) as info:
        parse_uri(text)
    assert info.value.status == status


def test_name_addr_forms():
    bare = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam")
    assert bare.params == {"unknownparam": None} and bare.uri.params == {}
    angled = parse_name_addr("<sip:+19725552222@gw1.example.net;unknownparam>")
    assert angled.params == {} and angled.uri.params == {"unknownparam": None}
    token = parse_name_addr("A. Bell <sip:a.g.bell@example.com>;tag=x")
    assert token.display_name == "A. Bell" and token.tag == "x"
    assert str(parse_name_addr(str(token))) == str(token)


def test_via_forms():
    via = parse_via("SIP/2.0/UDP [2001:db8::9:1]:5060;branch=z9hG4bKx;received=2001:db8::9:255")
    assert (via.host, via.port, via.received) == ("2001:db8::9:1", 5060, "2001:db8::9:255")
    assert parse_via("SIP/2.0/UDP h.example.com;rport=5070").rport == 5070
    assert parse_via(str(via)) == via
    for bad in ("SIP/2.0 h.example.com", "SIP/3.0/UDP h", "SIP/2.0/UDP h;rport=x", ";"):
        with pytest.raises(SipError):
            parse_via(bad)


def test_text_body_bad_charset_is_415():
    req = parse_message(MESSAGE.replace(b"charset=UTF-8", b"charset=no-such-charset"))
    with pytest.raises(SipError) as info:
        req.text_body()
    assert info.value.status == 415
    req = parse_message(MESSAGE.replace(b"h\xc3\xa9llo", b"h\xff\xfello"))
    with pytest.raises(SipError) as info:
        req.text_body()
    assert info.value.status == 415
    latin = parse_message(
        MESSAGE.replace(b"charset=UTF-8", b'charset="iso-8859-1"').replace(
            b"Content-Length: 6\r\n\r\nh\xc3\xa9llo", b"Content-Length: 5\r\n\r\nh\xe9llo"
        )
    )
    assert latin.text_body() == "héllo"


# --- build_response ---------------------------------------------------------------------------


def test_build_response_copies_rfc3261_8_2_6_2_headers():
    req = parse_message(torture("wsinv"))
    resp = build_response(req, 200, to_tag="ignored", extra_headers=[("Server", "gw")])
    assert resp.reason == "OK"
    assert resp.headers.get_raw("Via") == req.headers.get_raw("via")
    assert resp.vias() == req.vias()
    assert resp.from_header() == req.from_header()
    assert resp.to_header().tag == "1918181833n"  # already tagged: kept
    assert resp.call_id() == req.call_id() and resp.cseq() == req.cseq()
    assert resp.headers.get("Server") == "gw"
    assert "Route" not in resp.headers and "Contact" not in resp.headers
    assert parse_message(resp.to_bytes()) == resp


def test_build_response_adds_to_tag_and_timestamp_for_100():
    req = parse_message(
        MESSAGE.replace(b"CSeq: 1 MESSAGE\r\n", b"CSeq: 1 MESSAGE\r\nTimestamp: 54\r\n")
    )
    resp = build_response(req, 202, to_tag="abc")
    assert resp.reason == "Accepted" and resp.to_header().tag == "abc"
    assert "Timestamp" not in resp.headers
    assert build_response(req, 100).headers.get("Timestamp") == "54"
    assert build_response(req, 499).reason == "Bad Request"
    assert build_response(req, 415, "Nope").reason == "Nope"
    with pytest.raises(ValueError):
        build_response(req, 99)


# --- RFC 4475 torture messages ---------------------------------------------------------------

VALID = [
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
    "semiuri", "transports", "mpart01", "unreason", "noreason",
    # syntactically valid; RFC 4475 leaves the rejection to a higher layer:
    "badbranch",  # transaction layer: not an RFC 3261 branch (no magic cookie suffix)
    "zeromf",  # proxy answers 483; a UAS answers normally
    "cparam01", "cparam02",  # contact vs URI parameter
    "regaut01",  # auth layer: unknown scheme -> 401
    "regescrt",  # registrar rejects a Contact with escaped headers (400)
    "sdp01",  # UAS answers 415 (Accept says it cannot take SDP)
    "inv2543",  # RFC 2543 peer: no Max-Forwards, no branch, no tags
    "unksm2",  # registrar answers 400/416: To/From/Contact schemes are not SIP
    "ipv6good",
]  # fmt: skip

INVALID = {
    "badinv01": 400, "clerr": 400, "ncl": 400, "scalar02": 400, "scalarlg": 400,
    "quotbal": 400, "ltgtruri": 400, "lwsruri": 400, "lwsstart": 400, "trws": 400,
    "escruri": 400, "baddate": 400, "regbadct": 400, "badaspec": 400, "baddn": 400,
    "badvers": 505, "mismatch01": 400, "mismatch02": 400, "bigcode": 400, "insuf": 400,
    "unkscm": 416, "mcl01": 400, "multi01": 400, "ipv6bad": 400,
}  # fmt: skip


def test_every_torture_file_is_classified():
    assert {p.stem for p in TORTURE.glob("*.dat")} == set(VALID) | set(INVALID)


@pytest.mark.parametrize("name", VALID)
def test_valid_torture_messages_parse(name):
    data = torture(name)
    msg = parse_message(data)
    assert parse_message(msg.to_bytes()) == msg
    stream = StreamParser()
    whole = stream.feed(data)
    assert whole[0] == msg
    stream = StreamParser()
    got = [item for i in range(len(data)) for item in stream.feed(data[i : i + 1])]
    assert got == whole


@pytest.mark.parametrize(("name", "status"), sorted(INVALID.items()))
def test_invalid_torture_messages_rejected(name, status):
    with pytest.raises(SipError) as info:
        parse_message(torture(name))
    assert info.value.status == status


def test_torture_details():
    intmeth = parse_message(torture("intmeth"))
    assert intmeth.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert intmeth.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert intmeth.to_header().display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert intmeth.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    esc02 = parse_message(torture("esc02"))
    assert esc02.method == "RE%47IST%45R" and len(esc02.contacts()) == 2
    assert esc02.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    semiuri = parse_message(torture("semiuri"))
    assert (semiuri.uri.user, semiuri.uri.host) == ("user;par=u%40example.net", "example.com")
    assert len(semiuri.headers.get_all("Accept")) == 6
    transports = parse_message(torture("transports"))
    assert [v.transport for v in transports.vias()] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert parse_message(torture("lwsdisp")).from_header().display_name == "caller"
    longreq = parse_message(torture("longreq"))
    assert len(longreq.vias()) == 34
    unksm2 = parse_message(torture("unksm2"))
    with pytest.raises(SipError) as info:
        unksm2.to_header()
    assert info.value.status == 416
    assert parse_message(torture("regescrt")).contacts()[0].uri.headers is not None
    assert "Max-Forwards" not in parse_message(torture("inv2543")).headers
    mpart = parse_message(torture("mpart01"))
    assert mpart.content_type() == ("multipart/mixed", {"boundary": "7a9cbec02ceef655"})
    assert bytes(range(256)) in mpart.body


def test_dblreq_datagram_keeps_first_request_only_and_stream_yields_both():
    data = torture("dblreq")
    first = parse_message(data)
    assert first.method == "REGISTER" and first.body == b""
    items = StreamParser().feed(data)
    assert [type(i) for i in items] == [Request, Request]
    assert items[1].method == "INVITE" and len(items[1].body) == 150


# --- bounds -----------------------------------------------------------------------------------


def test_oversize_message_is_413():
    with pytest.raises(SipError) as info:
        parse_message(MESSAGE + b"x" * 70_000)
    assert info.value.status == 413
    with pytest.raises(SipError) as info:
        parse_message(MESSAGE, Limits(max_body=3))
    assert info.value.status == 413


def test_long_request_uri_is_414_and_long_header_400():
    long_uri = MESSAGE.replace(b"gw.example.com SIP", b"gw.example.com;x=" + b"a" * 9000 + b" SIP")
    with pytest.raises(SipError) as info:
        parse_message(long_uri)
    assert info.value.status == 414
    long_header = MESSAGE.replace(b"CSeq:", b"X-Long: " + b"a" * 9000 + b"\r\nCSeq:")
    with pytest.raises(SipError) as info:
        parse_message(long_header)
    assert info.value.status == 400


def test_too_many_headers_is_400():
    many = MESSAGE.replace(b"CSeq:", b"X-A: 1\r\n" * 130 + b"CSeq:")
    with pytest.raises(SipError) as info:
        parse_message(many)
    assert (info.value.status, info.value.reason) == (400, "Too many header fields")
    assert parse_message(many, Limits(max_headers=200)).method == "MESSAGE"


@pytest.mark.parametrize(
    ("old", "new", "status", "reason"),
    [
        (b"Max-Forwards: 70\r\n", b"", None, None),
        (b"Call-ID: asd88asd77a@app.example.net\r\n", b"", 400, "Missing Call-ID"),
        (b"CSeq: 1 MESSAGE", b"CSeq: 1 OPTIONS", 400, None),
        (b"SIP/2.0\r\n", b"SIP/3.0\r\n", 505, None),
        (b"Max-Forwards: 70", b"Max-Forwards: 256", 400, None),
        (b"CSeq: 1 ", b"CSeq: 2147483648 ", 400, None),
        (b"alice@example.net", b"alic\xe9@example.net", 400, None),
        (b"\r\n\r\n", b"\r\n", 400, None),
    ],
)
def test_request_checks(old, new, status, reason):
    data = MESSAGE.replace(old, new, 1)
    if status is None:
        assert parse_message(data).headers.get("Max-Forwards") is None
        return
    with pytest.raises(SipError) as info:
        parse_message(data)
    assert info.value.status == status
    if reason:
        assert info.value.reason == reason


# --- streams ----------------------------------------------------------------------------------


def test_stream_keepalives_and_split_messages():
    parser = StreamParser()
    data = b"\r\n\r\n" + MESSAGE + b"\r\n" + MESSAGE + b"\r\n\r\n"
    assert parser.feed(data[:7]) == [KeepAlive()]
    rest = parser.feed(data[7:])
    assert [type(i) for i in rest] == [Request, Request, KeepAlive]
    assert parser.buffered == 0


def test_stream_requires_content_length_and_then_refuses_input():
    parser = StreamParser()
    with pytest.raises(SipError) as info:
        parser.feed(MESSAGE.replace(b"Content-Length: 6\r\n", b""))
    assert (info.value.status, info.value.reason) == (400, "Missing Content-Length")
    with pytest.raises(SipError):
        parser.feed(MESSAGE)


def test_stream_framed_but_invalid_message_is_reported_and_stream_continues():
    bad = MESSAGE.replace(b"CSeq: 1 MESSAGE", b"CSeq: 1 INVITE")
    items = StreamParser().feed(bad + MESSAGE)
    assert isinstance(items[0], BadMessage) and items[0].error.status == 400
    assert items[0].data == bad
    assert isinstance(items[1], Request)


def test_stream_buffer_bounded():
    parser = StreamParser(Limits(max_message_size=1000))
    with pytest.raises(SipError) as info:
        for _ in range(20):
            parser.feed(b"X-Header: " + b"a" * 100)
    assert info.value.status == 413
    parser = StreamParser(Limits(max_message_size=1000))
    with pytest.raises(SipError) as info:
        parser.feed(MESSAGE.replace(b"Content-Length: 6", b"Content-Length: 5000"))
    assert info.value.status == 413


# --- fuzzing ----------------------------------------------------------------------------------

SEEDS = [MESSAGE, *(torture(n) for n in VALID[:13])]


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(
                st.sampled_from([b"\r\n", b" ", b";", b",", b'"', b"<", b">", b":", b"@", b"\x00"])
            )
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        else:
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 50))]
    return bytes(data)


def _exercise(msg):
    """Every accessor on a parsed message either works or raises SipError."""
    for call in (msg.from_header, msg.to_header, msg.cseq, msg.vias, msg.contacts,
                 msg.content_type, msg.text_body, msg.call_id):  # fmt: skip
        with contextlib.suppress(SipError):
            call()
    assert parse_message(msg.to_bytes()) == msg


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.one_of(st.binary(max_size=2000), mutated()))
def test_fuzz_parse_message_only_raises_sip_error(data):
    try:
        msg = parse_message(data)
    except SipError:
        return
    _exercise(msg)


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=300), mutated()), max_size=5), st.integers(1, 97))
def test_fuzz_stream_parser_only_raises_sip_error_and_stays_bounded(chunks, step):
    limits = Limits(max_message_size=4000)
    parser = StreamParser(limits)
    data = b"".join(chunks)
    try:
        for i in range(0, len(data), step):
            for item in parser.feed(data[i : i + step]):
                if isinstance(item, Request | Response):
                    _exercise(item)
            assert parser.buffered <= limits.max_message_size + step
    except SipError:
        pass
