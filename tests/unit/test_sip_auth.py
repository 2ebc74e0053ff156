# Tests of gateway/sip/auth.py: RFC 7616/2617 vectors, nonces on a fake clock, replay, parsing.
"""Digest authentication: the vectors verify, and every refusal says why."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.secrets import ha1
from gateway.sip.auth import (
    CHALLENGE_ALGORITHMS,
    HA1_COLUMNS,
    MAX_HEADER_LENGTH,
    MAX_PARAMS,
    AuthError,
    Credentials,
    NonceManager,
    Verdict,
    challenge,
    challenges,
    format_credentials,
    parse_credentials,
    response_for,
    verify,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SECRET = b"0123456789abcdef-test-secret"
REALM = "sip.example.com"

# RFC 7616 §3.9.1
RFC_REALM = "http-auth@example.org"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


class TrustingNonces:
    """A nonce checker that accepts every nonce and every count (for the RFC vectors)."""

    def __init__(self, state: str = "valid") -> None:
        self.state = state
        self.used: list[tuple[str, int]] = []

    def check(self, nonce, now, realm):
        return self.state

    def use(self, nonce, nc, now):
        self.used.append((nonce, nc))
        return True


def rfc7616_header(algorithm: str) -> str:
    # as printed in the RFC: folded over several lines, parameters in its order
    return (
        'Digest username="Mufasa",\r\n'
        '       realm="http-auth@example.org",\r\n'
        '       uri="/dir/index.html",\r\n'
        f"       algorithm={algorithm},\r\n"
        f'       nonce="{RFC_NONCE}",\r\n'
        "       nc=00000001,\r\n"
        f'       cnonce="{RFC_CNONCE}",\r\n'
        "       qop=auth,\r\n"
        f'       response="{RFC_RESPONSES[algorithm]}",\r\n'
        f'       opaque="{RFC_OPAQUE}"'
    )


def client_credentials(
    nonce: str,
    *,
    password: str = "correct horse",
    algorithm: str = "SHA-256",
    nc: int = 1,
    realm: str = REALM,
    method: str = "REGISTER",
    uri: str = "sip:sip.example.com",
) -> Credentials:
    h = ha1("alice", realm, password, algorithm)
    cnonce = "0a4f113b"
    return Credentials(
        username="alice",
        realm=realm,
        nonce=nonce,
        uri=uri,
        response=response_for(
            h, algorithm=algorithm, method=method, uri=uri, nonce=nonce, nc=nc, cnonce=cnonce
        ),
        algorithm=algorithm,
        cnonce=cnonce,
        qop="auth",
        nc=f"{nc:08x}",
    )


def stored_ha1(algorithm: str = "SHA-256", password: str = "correct horse") -> str:
    return ha1("alice", REALM, password, algorithm)


def check(creds: Credentials, nonces, now=T0, *, algorithm=None, method="REGISTER") -> Verdict:
    return verify(
        creds,
        method=method,
        ha1=stored_ha1(algorithm or creds.algorithm),
        nonces=nonces,
        realm=REALM,
        now=now,
    )


# --- RFC vectors -----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_parses_and_verifies(algorithm):
    creds = parse_credentials(rfc7616_header(algorithm))
    assert creds.username == "Mufasa"
    assert creds.realm == RFC_REALM
    assert creds.uri == "/dir/index.html"
    assert creds.algorithm == algorithm
    assert creds.nonce == RFC_NONCE
    assert creds.cnonce == RFC_CNONCE
    assert creds.opaque == RFC_OPAQUE
    assert creds.qop == "auth"
    assert creds.nc == "00000001"
    assert creds.nonce_count == 1
    assert creds.response == RFC_RESPONSES[algorithm]

    stored = ha1("Mufasa", RFC_REALM, "Circle of Life", algorithm)
    nonces = TrustingNonces()
    verdict = verify(creds, method="GET", ha1=stored, nonces=nonces, realm=RFC_REALM, now=T0)
    assert verdict == Verdict("ok")
    assert verdict.ok
    assert nonces.used == [(RFC_NONCE, 1)]

    wrong_method = verify(
        creds, method="POST", ha1=stored, nonces=TrustingNonces(), realm=RFC_REALM, now=T0
    )
    assert wrong_method.outcome == "bad"


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_response_for(algorithm):
    stored = ha1("Mufasa", RFC_REALM, "Circle of Life", algorithm)
    got = response_for(
        stored,
        algorithm=algorithm,
        method="GET",
        uri="/dir/index.html",
        nonce=RFC_NONCE,
        nc=1,
        cnonce=RFC_CNONCE,
    )
    assert got == RFC_RESPONSES[algorithm]


def test_rfc2617_example():
    header = (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
        'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    creds = parse_credentials(header)
    assert creds.algorithm == "MD5"  # absent means MD5 (RFC 2617 §3.2.2)
    stored = ha1("Mufasa", "testrealm@host.com", "Circle Of Life", "MD5")
    verdict = verify(
        creds,
        method="GET",
        ha1=stored,
        nonces=TrustingNonces(),
        realm="testrealm@host.com",
        now=T0,
    )
    assert verdict.ok


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_register_as_pjsip_sends_it(algorithm):
    nonces = NonceManager(SECRET)
    nonce = nonces.issue(T0, REALM)
    uri = "sip:sip.example.com;transport=tcp"
    cnonce = "q2ZgVnQ3rZ8LmXr9o1t5"
    name = {"MD5": "md5", "SHA-256": "sha256"}[algorithm]

    def h(text: str) -> str:
        return hashlib.new(name, text.encode()).hexdigest()

    # computed here from the RFC 2617 §3.2.2.1 formulas, independently of the module
    expected = h(
        f"{h(f'alice:{REALM}:correct horse')}:{nonce}:00000001:{cnonce}:auth:{h(f'REGISTER:{uri}')}"
    )
    header = (
        f'Digest username="alice", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
        f'response="{expected}", algorithm={algorithm}, cnonce="{cnonce}", qop=auth, '
        "nc=00000001"
    )
    creds = parse_credentials(header)
    assert check(creds, nonces, T0 + timedelta(seconds=2)) == Verdict("ok")
    assert HA1_COLUMNS[creds.algorithm] in ("sip_ha1_md5", "sip_ha1_sha256")


# --- nonces: fresh, stale, forged, replayed ----------------------------------------------------


def test_issued_nonce_is_valid_within_its_lifetime_then_stale():
    nonces = NonceManager(SECRET, lifetime=timedelta(minutes=5))
    nonce = nonces.issue(T0, REALM)
    assert len(nonce) == 64
    assert nonces.check(nonce, T0, REALM) == "valid"
    assert nonces.check(nonce, T0 + timedelta(minutes=5), REALM) == "valid"
    assert nonces.check(nonce, T0 + timedelta(minutes=5, milliseconds=1), REALM) == "stale"
    # our clock went back: a nonce from the future gets a fresh challenge, not a failure
    assert nonces.check(nonce, T0 - timedelta(minutes=1), REALM) == "stale"


def test_a_nonce_is_checked_without_server_state():
    nonce = NonceManager(SECRET, epoch=b"boot-one").issue(T0, REALM)
    assert NonceManager(SECRET, epoch=b"boot-one").check(nonce, T0, REALM) == "valid"


def test_a_nonce_of_another_epoch_is_stale_never_valid():
    """After a restart (or on another node sharing the key) the nonce counts of a nonce are
    unknown, so a captured request must not be accepted again: its nonce is stale (a fresh
    challenge with stale=true), neither valid (replay) nor invalid (a 403 to a real app)."""
    before = NonceManager(SECRET)
    nonce = before.issue(T0, REALM)
    assert check(client_credentials(nonce, nc=1), before) == Verdict("ok")
    after = NonceManager(SECRET)  # the next boot: same key file, a new random epoch
    assert after.epoch != before.epoch
    assert after.check(nonce, T0, REALM) == "stale"
    verdict = check(client_credentials(nonce, nc=1), after)  # the captured REGISTER, replayed
    assert verdict.outcome == "stale"
    assert check(client_credentials(nonce, nc=2), after).outcome == "stale"
    assert after.use(nonce, 5, T0) is False  # never tracked, hence never accepted, here
    assert len(after) == 0
    # a wrong response to a foreign nonce is a failure like any other (counted as guessing)
    wrong = check(client_credentials(nonce, password="guess"), after)
    assert wrong.outcome == "bad"
    # the client's retry with the new nonce is accepted
    assert check(client_credentials(after.issue(T0, REALM), nc=1), after).ok


def test_nonce_epoch_must_have_its_size():
    with pytest.raises(ValueError, match="epoch"):
        NonceManager(SECRET, epoch=b"short")


def test_nonces_are_unique_within_one_millisecond():
    nonces = NonceManager(SECRET)
    assert len({nonces.issue(T0, REALM) for _ in range(50)}) == 50


def test_naive_now_is_taken_as_utc():
    nonces = NonceManager(SECRET)
    nonce = nonces.issue(T0.replace(tzinfo=None), REALM)
    assert nonces.check(nonce, T0, REALM) == "valid"


def test_forged_nonces_are_invalid():
    nonces = NonceManager(SECRET)
    good = nonces.issue(T0, REALM)
    raw = bytearray(base64.b64decode(good))
    raw[7] ^= 1  # move the timestamp by a millisecond
    tampered_time = base64.b64encode(bytes(raw)).decode()
    raw = bytearray(base64.b64decode(good))
    raw[-1] ^= 1
    tampered_mac = base64.b64encode(bytes(raw)).decode()
    forged = [
        tampered_time,
        tampered_mac,
        base64.b64encode(bytes(48)).decode(),
        NonceManager(b"another secret of 16+ bytes").issue(T0, REALM),
        nonces.issue(T0, "other.example.com"),  # issued for another realm
        "",
        "not base64 at all!",
        good[:-4],
        good + "AAAA",
        "é" * 64,
        "A" * 10_000,
    ]
    for nonce in forged:
        assert nonces.check(nonce, T0, REALM) == "invalid", nonce


def test_full_exchange_and_nonce_count_replay():
    nonces = NonceManager(SECRET)
    nonce = nonces.issue(T0, REALM)
    assert check(client_credentials(nonce, nc=1), nonces) == Verdict("ok")
    # the same request again: replay
    replay = check(client_credentials(nonce, nc=1), nonces)
    assert replay.outcome == "bad"
    assert "replayed nonce count 1" in replay.reason
    # the client reuses the nonce with the next count: fine (RFC 7616 §3.4)
    assert check(client_credentials(nonce, nc=2), nonces).ok
    assert check(client_credentials(nonce, nc=7), nonces).ok
    assert check(client_credentials(nonce, nc=5), nonces).outcome == "bad"
    assert check(client_credentials(nonce, nc=7), nonces).outcome == "bad"


def test_nonce_count_zero_is_refused():
    nonces = NonceManager(SECRET)
    nonce = nonces.issue(T0, REALM)
    assert nonces.use(nonce, 0, T0) is False
    assert nonces.use(nonce, 1, T0) is True


def test_stale_nonce_with_right_response_is_stale():
    nonces = NonceManager(SECRET, lifetime=timedelta(minutes=5))
    nonce = nonces.issue(T0, REALM)
    later = T0 + timedelta(minutes=6)
    verdict = check(client_credentials(nonce), nonces, later)
    assert verdict.outcome == "stale"
    assert not verdict.ok
    assert len(nonces) == 0  # a stale nonce is not recorded
    # then the new challenge says stale=true
    fresh = nonces.issue(later, REALM)
    assert challenge(REALM, fresh, algorithm="SHA-256", stale=True).endswith("stale=true")
    assert check(client_credentials(fresh), nonces, later).ok


def test_stale_nonce_with_wrong_response_is_bad():
    nonces = NonceManager(SECRET)
    nonce = nonces.issue(T0, REALM)
    creds = client_credentials(nonce, password="wrong password")
    verdict = check(creds, nonces, T0 + timedelta(hours=1))
    assert verdict.outcome == "bad"
    assert "wrong response" in verdict.reason


def test_forged_nonce_is_bad_even_with_a_right_response():
    nonces = NonceManager(SECRET)
    forged = NonceManager(b"the attacker's own secret").issue(T0, REALM)
    verdict = check(client_credentials(forged), nonces)
    assert verdict.outcome == "bad"
    assert "invalid nonce" in verdict.reason


def test_wrong_password_is_bad_and_the_reason_hides_the_response():
    nonces = NonceManager(SECRET)
    creds = client_credentials(nonces.issue(T0, REALM), password="not the password")
    verdict = check(creds, nonces)
    assert verdict == Verdict("bad", "wrong response (password or HA1 mismatch)")
    assert creds.response not in verdict.reason
    assert creds.response not in repr(creds)
    assert len(nonces) == 0  # a failed response does not consume a nonce count


def test_realm_mismatch_is_bad():
    nonces = NonceManager(SECRET)
    nonce = nonces.issue(T0, REALM)
    creds = client_credentials(nonce, realm="evil.example.com")
    verdict = verify(creds, method="REGISTER", ha1=stored_ha1(), nonces=nonces, realm=REALM, now=T0)
    assert verdict.outcome == "bad"
    assert "realm mismatch" in verdict.reason


def test_ha1_of_the_other_algorithm_is_bad():
    nonces = NonceManager(SECRET)
    creds = client_credentials(nonces.issue(T0, REALM), algorithm="SHA-256")
    verdict = check(creds, nonces, algorithm="MD5")
    assert verdict.outcome == "bad"
    assert "HA1" in verdict.reason
    verdict = verify(creds, method="REGISTER", ha1="", nonces=nonces, realm=REALM, now=T0)
    assert verdict.outcome == "bad"


def test_unknown_algorithm_in_hand_built_credentials_is_bad():
    creds = Credentials(
        "alice", REALM, "n", "sip:x", "00" * 16, "SHA-512-256", "c", None, "auth", "00000001"
    )  # type: ignore[arg-type]
    verdict = check(creds, TrustingNonces(), algorithm="MD5")
    assert verdict.outcome == "bad"
    assert "unknown algorithm" in verdict.reason


def test_digest_without_qop_is_refused():
    # RFC 2069 compatibility is off: no cnonce/nc means no replay protection
    nonces = NonceManager(SECRET)
    nonce = nonces.issue(T0, REALM)
    h = stored_ha1("MD5")
    response = response_for(
        h, algorithm="MD5", method="REGISTER", uri="sip:sip.example.com", nonce=nonce, qop=None
    )
    ha2 = hashlib.md5(b"REGISTER:sip:sip.example.com").hexdigest()
    assert response == hashlib.md5(f"{h}:{nonce}:{ha2}".encode()).hexdigest()
    creds = parse_credentials(
        f'Digest username="alice", realm="{REALM}", nonce="{nonce}", '
        f'uri="sip:sip.example.com", response="{response}"'
    )
    assert creds.qop is None
    verdict = check(creds, nonces)
    assert verdict.outcome == "bad"
    assert "qop" in verdict.reason


def test_nonce_tracking_forgets_after_the_lifetime():
    nonces = NonceManager(SECRET, lifetime=timedelta(seconds=30))
    for i in range(10):
        now = T0 + timedelta(seconds=i)
        assert nonces.use(nonces.issue(now, REALM), 1, now)
    assert len(nonces) == 10
    assert nonces.use(
        nonces.issue(T0 + timedelta(seconds=35), REALM), 1, T0 + timedelta(seconds=35)
    )
    assert len(nonces) == 6  # those first used at 0..4 s are gone; 5..9 s and the new one stay


def test_nonce_tracking_is_capped_and_eviction_never_reopens_a_replay():
    nonces = NonceManager(SECRET, max_tracked=3)
    issued = [nonces.issue(T0 + timedelta(milliseconds=i), REALM) for i in range(5)]
    for nonce in issued[:3]:
        assert nonces.use(nonce, 1, T0)
    assert nonces.use(issued[3], 1, T0)  # evicts issued[0]
    assert len(nonces) == 3
    assert nonces.use(issued[0], 1, T0) is False  # forgotten, yet not replayable
    assert nonces.use(issued[0], 2, T0) is False
    assert nonces.use(issued[4], 1, T0)  # issued after the evicted one: fine
    assert len(nonces) == 3


def test_nonce_manager_refuses_bad_settings():
    with pytest.raises(ValueError, match="16 bytes"):
        NonceManager(b"short")
    with pytest.raises(ValueError, match="lifetime"):
        NonceManager(SECRET, lifetime=timedelta(0))
    with pytest.raises(ValueError, match="max_tracked"):
        NonceManager(SECRET, max_tracked=0)


# --- challenges --------------------------------------------------------------------------------


def test_challenges_offer_sha256_first():
    assert CHALLENGE_ALGORITHMS == ("SHA-256", "MD5")
    values = challenges(REALM, "abc/def=", opaque="xyz")
    assert values == [
        'Digest realm="sip.example.com", nonce="abc/def=", opaque="xyz", '
        'algorithm=SHA-256, qop="auth"',
        'Digest realm="sip.example.com", nonce="abc/def=", opaque="xyz", algorithm=MD5, qop="auth"',
    ]


def test_challenge_quotes_and_refuses_unsendable_values():
    assert challenge('a"b\\c', "n", algorithm="MD5") == (
        'Digest realm="a\\"b\\\\c", nonce="n", algorithm=MD5, qop="auth"'
    )
    with pytest.raises(ValueError, match="realm"):
        challenge("evil\r\nVia: x", "n", algorithm="MD5")
    with pytest.raises(ValueError, match="digest algorithm"):
        challenge(REALM, "n", algorithm="SHA-1")  # type: ignore[arg-type]


# --- parsing -----------------------------------------------------------------------------------


def test_parse_is_case_insensitive_order_free_and_tolerant():
    header = (
        'digest  NC=0000000A,QOP="auth" , , Response="ABCDEF0123456789ABCDEF0123456789", '
        'URI="sip:bob@example.com", Nonce=abc123, REALM="a \\"quoted\\" realm", '
        'userName="al\\\\ice", cnonce="x", algorithm="md5", userhash=false, newthing=42, '
        'opaque=""'
    )
    creds = parse_credentials(header)
    assert creds == Credentials(
        username="al\\ice",
        realm='a "quoted" realm',
        nonce="abc123",
        uri="sip:bob@example.com",
        response="abcdef0123456789abcdef0123456789",
        algorithm="MD5",
        cnonce="x",
        opaque="",
        qop="auth",
        nc="0000000A",
    )
    assert creds.nonce_count == 10


def test_parse_accepts_utf8_usernames():
    creds = parse_credentials(
        'Digest username="jürgen", realm="r", nonce="n", uri="sip:r", '
        f'response="{"0" * 64}", algorithm=SHA-256'
    )
    assert creds.username == "jürgen"
    assert creds.algorithm == "SHA-256"


BASE = 'username="a", realm="r", nonce="n", uri="sip:r"'
MD5_RESPONSE = 'response="' + "0" * 32 + '"'
GOOD = f"Digest {BASE}, {MD5_RESPONSE}"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "do not start with an auth scheme"),
        ("   ", "do not start with an auth scheme"),
        ("Basic dXNlcjpwYXNz", "auth scheme 'Basic' is not supported: use Digest"),
        ('Digest,username="a"', "expected a space after Digest"),
        ("Digest =x", "expected a parameter name at character 8"),
        ("Digest username", "parameter 'username' has no '=' and value"),
        ('Digest username="a', "parameter 'username': unterminated quoted string"),
        ('Digest username="a\\', "unterminated quoted string"),
        ('Digest username="a\x00b"', "control character"),
        ('Digest username="a\r\nb"', "control character"),
        ("Digest username=a/b", "expected ',' after parameter 'username'"),
        ("Digest username=@", "value is neither a token nor quoted"),
        ('Digest username="a" realm="b"', "expected ',' after parameter 'username'"),
        (f'{GOOD}, username="b"', "parameter 'username' appears twice"),
        (f'{GOOD}, USERNAME="b"', "parameter 'username' appears twice"),
        (f"Digest {BASE}", "parameter response is missing or empty"),
        (f'Digest realm="r", nonce="n", uri="sip:r", {MD5_RESPONSE}', "username is missing"),
        (f'Digest username="", realm="r", nonce="n", uri="u", {MD5_RESPONSE}', "username is"),
        (f"{GOOD}, algorithm=MD5-sess", "'MD5-sess' is not supported: session variants"),
        (f"{GOOD}, algorithm=SHA-256-sess", "session variants are not offered"),
        (f"{GOOD}, algorithm=SHA-512-256", "'SHA-512-256' is not supported: use SHA-256 or MD5"),
        (f"{GOOD}, algorithm=SHA-256", "response is not 64 hex digits as SHA-256 needs"),
        (f'Digest {BASE}, response="xyz"', "response is not 32 hex digits as MD5 needs"),
        (f'Digest {BASE}, response="{"g" * 32}"', "response is not 32 hex digits"),
        (f'{GOOD}, qop=auth-int, cnonce="c", nc=00000001', "qop 'auth-int' is not supported"),
        (f"{GOOD}, qop=auth, nc=00000001", "qop=auth needs a non-empty cnonce"),
        (f'{GOOD}, qop=auth, cnonce="c"', "qop=auth needs nc as 8 hex digits"),
        (f'{GOOD}, qop=auth, cnonce="c", nc=1', "qop=auth needs nc as 8 hex digits"),
        (f'{GOOD}, qop=auth, cnonce="c", nc=0000000g', "nc as 8 hex digits"),
        (f'{GOOD}, cnonce="c"', "cnonce and nc are only allowed with qop"),
        (f"{GOOD}, username*=UTF-8''al%C3%AFce", "username* (RFC 7616 §3.4.4) is not supported"),
        (f"{GOOD}, userhash=true", "userhash is not supported"),
        (
            GOOD + "".join(f", x{i}=1" for i in range(MAX_PARAMS)),
            f"more than {MAX_PARAMS} parameters",
        ),
        (GOOD + " " * MAX_HEADER_LENGTH, f"longer than {MAX_HEADER_LENGTH} characters"),
    ],
)
def test_malformed_credentials_are_400_with_a_reason(header, reason):
    with pytest.raises(AuthError) as caught:
        parse_credentials(header)
    assert caught.value.status == 400
    assert reason in caught.value.reason
    assert isinstance(caught.value, GatewayError)
    assert str(caught.value).startswith("400 ")


def test_a_reason_never_echoes_the_response():
    secret_looking = "5" * 31
    with pytest.raises(AuthError) as caught:
        parse_credentials(f'Digest {BASE}, response="{secret_looking}"')
    assert secret_looking not in str(caught.value)


def test_good_base_header_parses():
    assert parse_credentials(GOOD).username == "a"


# --- properties --------------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=40)
_hex = st.sampled_from("0123456789abcdef")


@st.composite
def credentials(draw):
    algorithm = draw(st.sampled_from(["MD5", "SHA-256"]))
    length = 32 if algorithm == "MD5" else 64
    qop = draw(st.booleans())
    return Credentials(
        username=draw(_text.filter(bool)),
        realm=draw(_text.filter(bool)),
        nonce=draw(_text.filter(bool)),
        uri=draw(_text.filter(bool)),
        response="".join(draw(st.lists(_hex, min_size=length, max_size=length))),
        algorithm=algorithm,
        cnonce=draw(_text.filter(bool)) if qop else None,
        opaque=draw(st.none() | _text),
        qop="auth" if qop else None,
        nc=f"{draw(st.integers(1, 2**32 - 1)):08x}" if qop else None,
    )


@given(credentials())
def test_format_then_parse_round_trips(creds):
    assert parse_credentials(format_credentials(creds)) == creds


@settings(max_examples=500)
@given(st.text(max_size=300))
def test_parse_of_random_text_only_raises_auth_error(text):
    try:
        parse_credentials(text)
    except AuthError as error:
        assert error.status == 400
        assert "\n" not in error.reason and "\r" not in error.reason


_digestish = st.text(
    st.sampled_from(list('abcnorstuxDNQ=," \\\t\r\n*-0123456789é\x00')), max_size=200
)


@settings(max_examples=500)
@given(_digestish, st.sampled_from(["Digest ", "DIGEST\t", f"{GOOD}, ", f"Digest {BASE}, "]))
def test_parse_of_digest_like_text_only_raises_auth_error(text, prefix):
    try:
        parse_credentials(prefix + text)
    except AuthError as error:
        assert error.status == 400


@given(st.text(max_size=100), st.datetimes(timezones=st.just(UTC)))
def test_check_of_random_nonces_is_invalid(nonce, now):
    assert NonceManager(SECRET).check(nonce, now, REALM) == "invalid"
