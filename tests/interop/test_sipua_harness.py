# Self-test of the pjsua2 SIP app harness (tests/interop/sipua.py), without the gateway: UAs
# talk to each other directly, and to a tiny in-test registrar (digest auth, MESSAGE relay).
# ``sip_ua`` (tests/interop/conftest.py) makes SipUAs and closes them after each test.
from __future__ import annotations

import contextlib
import hashlib
import queue
import re
import secrets
import socket
import ssl
import threading
from dataclasses import dataclass, field

import pytest
import trustme

from tests.interop.sipua import MAX_ACCOUNTS, SipUA, SipUAError, make_tls_files

ARABIC = "مرحبا بالعالم 123"
REALM = "registrar.test"


def _pair(sip_ua, transport: str) -> tuple[SipUA, SipUA]:
    common = {"transport": transport, "registrar": None, "domain": "127.0.0.1", "password": "x"}
    return sip_ua(username="alice", **common), sip_ua(username="bob", **common)


# --------------------------------------------------------------------------- direct UA to UA


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_direct_message_both_ways(sip_ua, transport) -> None:
    alice, bob = _pair(sip_ua, transport)
    assert bob.contact_uri == (
        f"sip:bob@127.0.0.1:{bob.port}" + ("" if transport == "udp" else f";transport={transport}")
    )

    assert alice.send_message(bob.contact_uri, ARABIC) == 200
    got = bob.next_message(timeout=5)
    assert got.body == ARABIC
    assert got.content_type == "text/plain"
    assert "alice@127.0.0.1" in got.from_uri
    assert got.request_uri == bob.contact_uri
    assert got.raw.startswith(f"MESSAGE {bob.contact_uri} SIP/2.0")
    assert got.header("Via").startswith(f"SIP/2.0/{transport.upper()} ")
    assert got.header("CSeq").endswith(" MESSAGE")

    assert bob.send_message(alice.contact_uri, "ok " + ARABIC) == 200
    assert alice.next_message(timeout=5).body == "ok " + ARABIC


def test_content_type_params_and_extra_headers(sip_ua) -> None:
    alice, bob = _pair(sip_ua, "tcp")
    status = alice.send_message(
        bob.contact_uri,
        ARABIC,
        content_type="text/plain; charset=UTF-8",
        headers={"X-Test-Id": "42"},
    )
    assert status == 200
    got = bob.next_message(timeout=5)
    assert got.content_type == "text/plain; charset=UTF-8"
    assert got.header("x-test-id") == "42"
    assert got.body.encode() == ARABIC.encode("utf-8")


def test_two_devices_of_one_user_are_told_apart(sip_ua) -> None:
    common = {"transport": "tcp", "registrar": None, "domain": "127.0.0.1", "password": "x"}
    phone = sip_ua(username="1111", contact_user="1111-phone", **common)
    tablet = sip_ua(username="1111", contact_user="1111-tablet", **common)
    sender = sip_ua(username="carol", **common)
    assert sender.send_message(tablet.contact_uri, "to the tablet") == 200
    assert sender.send_message(phone.contact_uri, "to the phone") == 200
    assert tablet.next_message(timeout=5).body == "to the tablet"
    assert phone.next_message(timeout=5).body == "to the phone"
    phone.expect_no_message(timeout=0.2)
    tablet.expect_no_message(timeout=0.2)


def test_set_answer_other_than_200_is_a_documented_limitation(sip_ua) -> None:
    # pjsua answers an out-of-dialog MESSAGE with 200 itself, before onInstantMessage runs.
    alice, bob = _pair(sip_ua, "udp")
    bob.set_answer(200)
    with pytest.raises(NotImplementedError, match="200"):
        bob.set_answer(486)
    assert alice.send_message(bob.contact_uri, "still 200") == 200
    assert bob.next_message(timeout=5).body == "still 200"


def test_tls_verifies_the_server_certificate(sip_ua, tmp_path) -> None:
    # bob's TLS listener presents a certificate from the harness CA; a UA trusting another CA
    # refuses it (and a UA trusting the harness CA's ca.pem accepts it).
    _alice, bob = _pair(sip_ua, "tls")
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    stranger = sip_ua(
        transport="tls",
        registrar=None,
        domain="127.0.0.1",
        username="eve",
        password="x",
        ca_file=str(other),
    )
    assert stranger.port != bob.port  # its own TLS transport, trusting only the other CA
    code, reason, _ = stranger.send_message_full(bob.contact_uri, "hello", timeout=5)
    assert code == 503 and "verif" in reason.lower()
    bob.expect_no_message(timeout=0.2)

    ca_file, cert_file, key_file = make_tls_files(tmp_path / "gw")
    assert ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in key_file.read_text()
    assert cert_file.read_text().count("BEGIN CERTIFICATE") >= 1
    friend = sip_ua(
        transport="tls",
        registrar=None,
        domain="127.0.0.1",
        username="frank",
        password="x",
        ca_file=str(ca_file),
    )
    assert friend.send_message(bob.contact_uri, ARABIC) == 200
    assert bob.next_message(timeout=5).body == ARABIC


def test_waits_time_out_with_a_clear_assertion(sip_ua) -> None:
    alice, _bob = _pair(sip_ua, "udp")
    with pytest.raises(AssertionError, match="no MESSAGE within"):
        alice.next_message(timeout=0.2)
    with pytest.raises(AssertionError, match="does not register"):
        alice.wait_registered(timeout=0.2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        with pytest.raises(AssertionError, match="no final response to MESSAGE"):
            alice.send_message(f"sip:nobody@127.0.0.1:{port}", "lost", timeout=0.5)


def test_bad_targets_raise_clear_errors(sip_ua) -> None:
    alice, _bob = _pair(sip_ua, "udp")
    with pytest.raises(SipUAError, match="Invalid URI"):
        alice.send_message("not a uri", "x")
    with pytest.raises(ValueError, match="over tcp"):
        alice.send_message("sip:bob@127.0.0.1:5060;transport=tcp", "x")
    carol = sip_ua(transport="tcp", registrar=None, domain="127.0.0.1", username="c", password="x")
    with pytest.raises(ValueError, match=";transport=tcp"):
        carol.send_message("sip:bob@127.0.0.1:5060", "x")
    with pytest.raises(ValueError, match="transport must be"):
        SipUA(transport="sctp", registrar=None, domain="d", username="u", password="p")


def test_account_limit_is_an_exception_not_an_abort(sip_ua) -> None:
    made = []
    with pytest.raises(RuntimeError, match=f"allows {MAX_ACCOUNTS} accounts"):
        for i in range(MAX_ACCOUNTS + 1):
            made.append(
                sip_ua(
                    transport="udp",
                    registrar=None,
                    domain="127.0.0.1",
                    username=f"u{i}",
                    password="x",
                )
            )
    assert 0 < len(made) <= MAX_ACCOUNTS
    made[-1].close()  # a slot is free again
    sip_ua(transport="udp", registrar=None, domain="127.0.0.1", username="again", password="x")


def test_calls_from_other_python_threads(sip_ua) -> None:
    alice, bob = _pair(sip_ua, "tcp")
    results: dict[int, int | BaseException] = {}

    def send(i: int) -> None:
        try:
            results[i] = alice.send_message(bob.contact_uri, f"{ARABIC} #{i}")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == {i: 200 for i in range(4)}
    bodies = sorted(bob.next_message(timeout=5).body for _ in range(4))
    assert bodies == sorted(f"{ARABIC} #{i}" for i in range(4))


# --------------------------------------------------------------------------- with a registrar


@dataclass
class _Request:
    method: str
    uri: str
    headers: list[tuple[str, str]]
    body: bytes
    reply: object  # callable(bytes) sending on the flow the request came from

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)


def _parse(data: bytes, reply) -> _Request:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    method, uri, _ = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return _Request(method, uri, headers, body, reply)


@dataclass
class FakeRegistrar:
    """Just enough of a registrar/proxy for the harness: digest-challenges REGISTER, keeps the
    flow of each binding, answers MESSAGE 202 and can send a MESSAGE down a binding's flow."""

    transport: str
    passwords: dict[str, str]
    tls_context: ssl.SSLContext | None = None
    tls_errors: list[str] = field(default_factory=list)
    requests: list[_Request] = field(default_factory=list)
    bindings: dict[str, tuple[str, object]] = field(default_factory=dict)  # user -> contact, reply
    responses: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _sockets: list[socket.socket] = field(default_factory=list)

    def start(self) -> tuple[str, int]:
        """Listen on 127.0.0.1, a random port; TLS when ``tls_context`` is set."""
        kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        self._sockets.append(sock)
        if self.transport == "udp":
            self._spawn(self._serve_udp, sock)
        else:
            sock.listen()
            self._spawn(self._serve_tcp, sock)
        self.port = sock.getsockname()[1]
        return "127.0.0.1", self.port

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve_udp(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if data.strip():
                self._handle(data, lambda out, addr=addr: sock.sendto(out, addr))

    def _serve_tcp(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._sockets.append(conn)
            self._spawn(self._serve_conn, conn)

    def _serve_conn(self, conn: socket.socket) -> None:
        if self.tls_context is not None:
            conn.settimeout(5)
            try:
                conn = self.tls_context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                with self._cond:
                    self.tls_errors.append(repr(exc))
                    self._cond.notify_all()
                return
            self._sockets.append(conn)
        conn.settimeout(0.05)
        # One thread per connection does all reads and writes (an SSL socket must not be
        # used by two threads at once): others queue what they send.
        outbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        buffer = b""
        while not self._stop.is_set():
            try:
                while True:
                    conn.sendall(outbox.get_nowait())
            except queue.Empty:
                pass
            except OSError:
                return
            try:
                chunk = conn.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while True:
                buffer = buffer.lstrip(b"\r\n")  # RFC 5626 keep-alives
                head_end = buffer.find(b"\r\n\r\n")
                if head_end < 0:
                    break
                match = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", buffer[:head_end])
                end = head_end + 4 + (int(match.group(1)) if match else 0)
                if len(buffer) < end:
                    break
                message, buffer = buffer[:end], buffer[end:]
                self._handle(message, outbox.put)

    def _handle(self, data: bytes, reply) -> None:
        if data.startswith(b"SIP/2.0 "):
            with self._cond:
                self.responses.append(data.decode())
                self._cond.notify_all()
            return
        request = _parse(data, reply)
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()
        if request.method == "REGISTER":
            self._register(request)
        elif request.method == "MESSAGE":
            reply(self._response(request, 202, "Accepted"))
        else:
            reply(self._response(request, 501, "Not Implemented"))

    def _register(self, request: _Request) -> None:
        auth = request.header("Authorization")
        if not auth:
            challenge = f'Digest realm="{REALM}", nonce="{secrets.token_hex(8)}", algorithm=MD5'
            request.reply(
                self._response(request, 401, "Unauthorized", [("WWW-Authenticate", challenge)])
            )
            return
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', auth))
        user = fields.get("username", "")
        password = self.passwords.get(user)

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()  # SIP digest is MD5

        expected = None
        if password is not None:
            ha1 = md5(f"{user}:{REALM}:{password}")
            expected = md5(
                f"{ha1}:{fields.get('nonce')}:{md5('REGISTER:' + fields.get('uri', ''))}"
            )
        if expected is None or fields.get("response") != expected:
            request.reply(self._response(request, 403, "Forbidden"))
            return
        contact = request.header("Contact") or ""
        expires = request.header("Expires") or "300"
        if ";expires=" in contact:
            expires = contact.rsplit(";expires=", 1)[1].split(";")[0]
        with self._cond:
            if expires.strip() == "0":
                self.bindings.pop(user, None)
            else:
                uri = contact.split("<", 1)[1].split(">", 1)[0]
                self.bindings[user] = (uri, request.reply)
        extra = [("Contact", f"{contact.split(';expires=')[0]};expires={expires}")]
        extra.append(("Expires", expires))
        request.reply(self._response(request, 200, "OK", extra))

    @staticmethod
    def _response(request: _Request, code: int, reason: str, extra=()) -> bytes:
        lines = [f"SIP/2.0 {code} {reason}"]
        for name, value in request.headers:
            lname = name.lower()
            if lname in ("via", "v", "from", "f", "call-id", "i", "cseq"):
                lines.append(f"{name}: {value}")
            elif lname in ("to", "t"):
                lines.append(f"{name}: {value}" if ";tag=" in value else f"{name}: {value};tag=fr1")
        lines += [f"{name}: {value}" for name, value in extra]
        lines += ["Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode()

    def wait_request(self, method: str, count: int = 1, timeout: float = 5) -> list[_Request]:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: len([r for r in self.requests if r.method == method]) >= count, timeout
            )
            seen = [r for r in self.requests if r.method == method]
        assert ok, f"registrar saw {len(seen)} {method} (wanted {count})"
        return seen

    def send_message(self, user: str, text: str, timeout: float = 5) -> str:
        """MESSAGE to ``user``'s binding over its flow; returns the response's status line."""
        with self._cond:
            contact, reply = self.bindings[user]
            before = len(self.responses)
        body = text.encode()
        via = f"SIP/2.0/{self.transport.upper()} 127.0.0.1:{self.port};branch=z9hG4bK{secrets.token_hex(6)}"
        request = "\r\n".join(
            [
                f"MESSAGE {contact} SIP/2.0",
                f"Via: {via}",
                "Max-Forwards: 70",
                f"From: <sip:+9647701234567@{REALM}>;tag={secrets.token_hex(4)}",
                f"To: <sip:{user}@{REALM}>",
                f"Call-ID: {secrets.token_hex(8)}@127.0.0.1",
                "CSeq: 1 MESSAGE",
                "Content-Type: text/plain;charset=UTF-8",
                f"Content-Length: {len(body)}",
                "",
                "",
            ]
        ).encode()
        reply(request + body)
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.responses) > before, timeout)
            assert ok, "no response to the registrar's MESSAGE"
            return self.responses[before].split("\r\n", 1)[0]


@pytest.fixture(params=["udp", "tcp", "tls"])
def registrar(request, tmp_path):
    context = None
    if request.param == "tls":
        _ca, cert, key = make_tls_files(tmp_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
    fake = FakeRegistrar(request.param, {"1111": "john-Secret-1"}, tls_context=context)
    fake.start()
    yield fake
    fake.stop()


def test_register_with_digest_then_message_both_ways(sip_ua, registrar) -> None:
    app = sip_ua(
        transport=registrar.transport,
        registrar=("127.0.0.1", registrar.port),
        domain=REALM,
        username="1111",
        password="john-Secret-1",
        expires=120,
    )
    assert app.wait_registered(timeout=10) == 200
    assert app.registered
    assert app.wait_registered(timeout=0.1) == 200  # already registered: returns at once
    first, second = registrar.wait_request("REGISTER", 2)
    transport_param = f";transport={registrar.transport}"
    assert first.uri == f"sip:127.0.0.1:{registrar.port}{transport_param}"
    assert first.header("Route") is None  # REGISTER goes straight to the registrar
    assert first.header("From").startswith(f"<sip:1111@{REALM}>")
    assert first.header("Authorization") is None
    assert 'username="1111"' in second.header("Authorization")
    contact = second.header("Contact")
    assert contact.startswith("<sip:1111@127.0.0.1:") and ";ob>" in contact
    if registrar.transport == "udp":
        assert contact.startswith(f"<sip:1111@127.0.0.1:{app.port};ob>")
    else:  # pjsua puts the connection's local (ephemeral) port and RFC 5626 parameters
        assert f";transport={registrar.transport.upper()};ob>" in contact
        assert f'+sip.instance="{app.instance_id}"' in contact and "reg-id=1" in contact

    # gateway -> app, down the registration's flow (for TCP: the same connection)
    assert registrar.send_message("1111", ARABIC) == "SIP/2.0 200 OK"
    got = app.next_message(timeout=5)
    assert got.body == ARABIC
    assert got.content_type == "text/plain;charset=UTF-8"
    assert "+9647701234567" in got.from_uri

    # app -> gateway: through the outbound proxy, the Request-URI is the target
    target = f"sip:+9647701234567@{REALM}"
    assert app.send_message(target, ARABIC) == 202
    (message,) = registrar.wait_request("MESSAGE")
    assert message.uri == target
    assert message.header("Route") == f"<sip:127.0.0.1:{registrar.port}{transport_param};lr>"
    assert message.body.decode("utf-8") == ARABIC

    assert app.unregister(timeout=10) == 200
    assert not app.registered
    last = registrar.wait_request("REGISTER", 3)[-1]
    assert "expires=0" in (last.header("Contact") or "") or last.header("Expires") == "0"
    assert app.register(timeout=10) == 200


def test_contact_user_is_the_registered_contact(sip_ua, registrar) -> None:
    common = {"transport": registrar.transport, "registrar": ("127.0.0.1", registrar.port)}
    phone = sip_ua(
        domain=REALM, username="1111", password="john-Secret-1", contact_user="ph", **common
    )
    assert phone.wait_registered(timeout=10) == 200
    contact = registrar.wait_request("REGISTER", 2)[-1].header("Contact")
    assert contact.startswith(f"<{phone.contact_uri}>")
    assert registrar.send_message("1111", ARABIC) == "SIP/2.0 200 OK"
    got = phone.next_message(timeout=5)
    assert (got.request_uri, got.body) == (phone.contact_uri, ARABIC)


def test_registration_failure_is_final_and_reported(sip_ua, registrar) -> None:
    app = sip_ua(
        transport=registrar.transport,
        registrar=("127.0.0.1", registrar.port),
        domain=REALM,
        username="1111",
        password="wrong",
    )
    assert app.wait_registration_failed(timeout=10) == 403
    assert not app.registered
    other = sip_ua(
        transport=registrar.transport,
        registrar=("127.0.0.1", registrar.port),
        domain=REALM,
        username="2222",
        password="whatever",
    )
    with pytest.raises(AssertionError, match="REGISTER failed: 403"):
        other.wait_registered(timeout=10)


def test_tls_registrar_with_an_untrusted_certificate_is_refused(sip_ua, tmp_path) -> None:
    foreign = trustme.CA().issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    foreign.configure_cert(context)
    fake = FakeRegistrar("tls", {"1111": "john-Secret-1"}, tls_context=context)
    fake.start()
    try:
        app = sip_ua(
            transport="tls",
            registrar=("127.0.0.1", fake.port),
            domain=REALM,
            username="1111",
            password="john-Secret-1",
        )
        assert app.wait_registration_failed(timeout=10) == 503
        assert "verif" in app.reg_events[-1].reason.lower()
        assert not fake.requests
    finally:
        fake.stop()


def test_no_registration_when_asked_not_to(sip_ua, registrar) -> None:
    app = sip_ua(
        transport=registrar.transport,
        registrar=("127.0.0.1", registrar.port),
        domain=REALM,
        username="1111",
        password="john-Secret-1",
        register=False,
    )
    # still uses the registrar as outbound proxy for MESSAGE
    assert app.send_message(f"sip:+9647701234567@{REALM}", "hi") == 202
    assert not [r for r in registrar.requests if r.method == "REGISTER"]


def test_unreachable_registrar_fails_registration(sip_ua) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    app = sip_ua(
        transport="tcp",
        registrar=("127.0.0.1", port),
        domain=REALM,
        username="1111",
        password="x",
    )
    code = app.wait_registration_failed(timeout=10)
    assert code >= 400
    with contextlib.suppress(AssertionError):
        app.wait_registered(timeout=0.1)
