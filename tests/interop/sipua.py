# A SIP app (user agent) for tests: PJSIP's pjsua2 as a phone or tablet registering with the
# gateway and exchanging SIP MESSAGEs (RFC 3428), with event-driven waits and bounded timeouts.
"""pjsua2 test harness.

One process has exactly one pjsua2 ``Endpoint``: it is created lazily on first use (with one
PJSIP worker thread, so no polling is needed) and destroyed by an ``atexit`` hook, after every
still-open :class:`SipUA` has been closed. Transports are created lazily as well, one per kind
(``udp``, ``tcp``, ``tls``) and process, each bound to 127.0.0.1 on a random port; every
account is locked to the transport of its kind.

Every call into pjsua2 from a Python thread that PJSIP did not create is preceded by
``libRegisterThread`` (see :func:`_ensure_thread`). Callbacks arrive on the PJSIP worker thread
and only touch Python state guarded by a ``threading.Condition`` or a ``queue.Queue``; they
never call back into pjsua2 and never let an exception escape into C++.

PJSIP's own log (level 5, SIP messages included) goes to :data:`LOG_FILE` (``$SIPUA_LOG_FILE``
or a per-process file in the temp folder); nothing goes to the console. AssertionError and
SipUAError messages name the log file.

Known pjsua2 2.15 limitations, see :meth:`SipUA.set_answer`: an incoming out-of-dialog MESSAGE
is always answered ``200 OK`` by pjsua itself, before the application callback runs.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import os
import queue
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pjsua2 as pj

__all__ = [
    "LOG_FILE",
    "Received",
    "RegEvent",
    "SipUA",
    "SipUAError",
    "harness_ca",
    "make_tls_files",
    "transport_port",
]

LOCALHOST = "127.0.0.1"
TRANSPORTS = ("udp", "tcp", "tls")
MAX_TIMEOUT = 60.0
#: PJSUA_MAX_ACC of the pjsua2-python build: one more account makes pjsua_acc_add abort().
MAX_ACCOUNTS = 8
#: Buddies (one per MESSAGE target) kept per UA; pjsua aborts past PJSUA_MAX_BUDDIES (256).
MAX_BUDDIES_PER_UA = 24

#: PJSIP's log of this process (level 5, with every SIP message sent and received).
LOG_FILE = os.environ.get("SIPUA_LOG_FILE") or str(
    Path(tempfile.gettempdir()) / f"pjsua2-harness-{os.getpid()}.log"
)

_PJ_TYPES = {
    "udp": pj.PJSIP_TRANSPORT_UDP,
    "tcp": pj.PJSIP_TRANSPORT_TCP,
    "tls": pj.PJSIP_TRANSPORT_TLS,
}

# Compact header forms (RFC 3261 7.3.3 and friends) -> full lower-case names.
_COMPACT = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "x": "session-expires",
}


# --------------------------------------------------------------------------- TLS material


_ca_lock = threading.Lock()
_ca: Any = None  # trustme.CA, created on first use


def harness_ca() -> Any:
    """The process-wide test CA (``trustme.CA``) that signs every certificate the harness makes.

    One CA per process on purpose: pjsua2's TLS transport is process-wide, and trusting one CA
    lets every gateway started with :func:`make_tls_files` be verified by every TLS SipUA.
    """
    global _ca
    with _ca_lock:
        if _ca is None:
            import trustme

            _ca = trustme.CA(organization_name="sipua test CA")
        return _ca


def make_tls_files(tmp_path: Path | str) -> tuple[Path, Path, Path]:
    """A server certificate for the gateway: ``(ca.pem, cert.pem, key.pem)`` in ``tmp_path``.

    The certificate is valid for ``127.0.0.1`` and ``localhost`` and signed by
    :func:`harness_ca`, which TLS SipUAs trust (and verify the server against) by default.
    ``cert.pem`` holds the full chain (leaf first).
    """
    folder = Path(tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    ca = harness_ca()
    leaf = ca.issue_cert(LOCALHOST, "localhost")
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)  # the gateway refuses a private key others can read
    return ca_file, cert_file, key_file


# --------------------------------------------------------------------------- the Endpoint


class _Endpoint(pj.Endpoint):
    """The pjsua2 Endpoint; records transport state changes (TLS verification problems)."""

    def __init__(self) -> None:
        super().__init__()
        self.transport_events: list[str] = []
        self._events_lock = threading.Lock()

    def onTransportState(self, prm: Any) -> None:
        with contextlib.suppress(BaseException):
            text = f"transport state {prm.state} (last error {prm.lastError})"
            tls = prm.tlsInfo
            if tls is not None and tls.verifyMsgs:
                text += f" TLS verify status {tls.verifyStatus}: {list(tls.verifyMsgs)}"
            with self._events_lock:
                self.transport_events.append(text)
                del self.transport_events[:-50]


@dataclass
class _Transport:
    id: int
    kind: str
    port: int


@contextlib.contextmanager
def _fds_to_log() -> Iterator[None]:
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(LOG_FILE, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


class _Runtime:
    """Lazily created process-wide pjsua2 state: the Endpoint, its transports, the open UAs."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.ep: _Endpoint | None = None
        self.destroyed = False
        self.transports: dict[Any, _Transport] = {}
        self.uas: list[SipUA] = []
        self.retired: list[SipUA] = []  # closed, account not deleted yet (see SipUA.close)
        self.uas_lock = threading.Lock()  # only ever held briefly, never around pjsua2 calls
        self.tmpdir: tempfile.TemporaryDirectory | None = None
        self.thread_names = itertools.count(1)

    def endpoint(self) -> _Endpoint:
        with self.lock:
            if self.destroyed:
                raise RuntimeError("the pjsua2 endpoint was already destroyed (interpreter exit)")
            if self.ep is None:
                self.ep = self._start()
                atexit.register(_shutdown)
            return self.ep

    @staticmethod
    def _start() -> _Endpoint:
        ep = _Endpoint()
        # libCreate logs at level 4 to the console before any LogConfig applies: send those
        # lines (fd level, they come from C) to the log file instead.
        with _fds_to_log():
            ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 1  # PJSIP polls its sockets itself
        cfg.uaConfig.mainThreadOnly = False  # callbacks run on that worker thread
        cfg.uaConfig.maxCalls = 4
        cfg.uaConfig.userAgent = f"sipua-test-harness (pjsua2 {ep.libVersion().full})"
        cfg.logConfig.level = 5
        cfg.logConfig.consoleLevel = 0  # errors surface as exceptions naming LOG_FILE
        cfg.logConfig.msgLogging = True
        cfg.logConfig.filename = LOG_FILE
        cfg.logConfig.fileFlags = 0  # truncate
        cfg.medConfig.threadCnt = 1
        cfg.medConfig.noVad = True
        ep.libInit(cfg)
        ep.libStart()
        with contextlib.suppress(pj.Error):
            ep.audDevManager().setNullDev()  # no sound card needed, MESSAGE only
        return ep

    def tmp(self) -> Path:
        with self.lock:
            if self.tmpdir is None:
                self.tmpdir = tempfile.TemporaryDirectory(prefix="sipua-")
            return Path(self.tmpdir.name)

    def transport(self, kind: str, ca_file: str | None = None) -> _Transport:
        """The transport of ``kind``; for TLS one per trusted CA (normally one per process)."""
        if kind not in _PJ_TYPES:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {kind!r}")
        key: Any = kind
        if kind == "tls":
            ca_pem = Path(ca_file).read_bytes() if ca_file else harness_ca().cert_pem.bytes()
            key = ("tls", hashlib.sha256(ca_pem).hexdigest())
        with self.lock:
            found = self.transports.get(key)
            if found is not None:
                return found
            ep = self.endpoint()
            _ensure_thread()
            tcfg = pj.TransportConfig()
            tcfg.port = 0
            tcfg.boundAddress = LOCALHOST
            tcfg.publicAddress = LOCALHOST
            if kind == "tls":
                self._tls_config(tcfg.tlsConfig, ca_file)
            with _pj_call(f"creating the {kind} transport"):
                tid = ep.transportCreate(_PJ_TYPES[kind], tcfg)
            info = ep.transportGetInfo(tid)
            port = int(str(info.localName).rsplit(":", 1)[1])
            created = _Transport(tid, kind, port)
            self.transports[key] = created
            return created

    def _tls_config(self, tls: Any, ca_file: str | None) -> None:
        """Client side: trust ``ca_file`` (or the harness CA) and verify the server's
        certificate (chain and name, e.g. IP SAN 127.0.0.1). Server side (a gateway connecting
        to our Contact): present a 127.0.0.1/localhost certificate from the harness CA."""
        folder = self.tmp() / f"tls-{len(self.transports)}"
        folder.mkdir()
        ca, cert, key = make_tls_files(folder)
        tls.CaListFile = str(ca_file) if ca_file else str(ca)
        tls.certFile = str(cert)
        tls.privKeyFile = str(key)
        tls.method = pj.PJSIP_TLSV1_2_METHOD
        tls.proto = pj.PJ_SSL_SOCK_PROTO_TLS1_2 | pj.PJ_SSL_SOCK_PROTO_TLS1_3
        tls.verifyServer = True
        tls.verifyClient = False
        tls.requireClientCert = False
        tls.msecTimeout = 10_000

    def shutdown(self) -> None:
        with self.lock:
            if self.ep is None or self.destroyed:
                self.destroyed = True
                return
            with self.uas_lock:
                uas = list(self.uas)
            for ua in uas:
                with contextlib.suppress(Exception):
                    ua.close()
            with contextlib.suppress(Exception):
                _reap()
            ep = self.ep
            self.destroyed = True
            with contextlib.suppress(Exception):
                _ensure_thread()
                # No unregistration and no waiting for transactions: the process is leaving.
                ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)
            # Never run the C++ destructor from interpreter teardown (it would destroy again).
            with contextlib.suppress(Exception):
                ep.__disown__()
            self.ep = None
            _graveyard.append(ep)
            if self.tmpdir is not None:
                with contextlib.suppress(Exception):
                    self.tmpdir.cleanup()


_runtime = _Runtime()
_graveyard: list[Any] = []  # pjsua2 objects deliberately never destroyed by Python


def _shutdown() -> None:
    _runtime.shutdown()


_thread_local = threading.local()


def _ensure_thread() -> None:
    """Register the calling Python thread with PJSIP (needed once per thread before any call)."""
    if getattr(_thread_local, "registered", False):
        return
    ep = _runtime.ep
    if ep is None:
        return
    if not ep.libIsThreadRegistered():
        ep.libRegisterThread(f"py-{threading.current_thread().name}-{next(_runtime.thread_names)}")
    _thread_local.registered = True


def transport_port(kind: str, ca_file: str | None = None) -> int:
    """The local port of this process's pjsua2 transport of ``kind`` (created if needed)."""
    return _runtime.transport(kind, ca_file).port


def _log_hint(ua: SipUA | None = None) -> str:
    ep = _runtime.ep
    recent = ""
    if ua is not None and ua._callback_errors:
        recent += f"; errors in its pjsua2 callbacks: {ua._callback_errors[-3:]}"
    if ep is not None:
        with ep._events_lock:
            if ep.transport_events:
                recent += f"; recent transport events: {ep.transport_events[-3:]}"
    return f" (PJSIP log: {LOG_FILE}{recent})"


class SipUAError(RuntimeError):
    """A pjsua2 call failed (``pj.Error`` carries its text in attributes, not in ``str()``)."""


@contextlib.contextmanager
def _pj_call(what: str) -> Iterator[None]:
    try:
        yield
    except pj.Error as err:
        raise SipUAError(
            f"{what}: {err.reason} [{err.title}, status {err.status}]{_log_hint()}"
        ) from None


# --------------------------------------------------------------------------- received data


def _parse_message(raw: str) -> tuple[str, list[tuple[str, str]]]:
    """(start line, [(lower-case full header name, value)]) of a raw SIP message."""
    head = raw.split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n") if "\r\n" in head else head.split("\n")
    start = lines[0] if lines else ""
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        headers.append((_COMPACT.get(name, name), value.strip()))
    return start, headers


def _uri_user(uri: str) -> str:
    """The user part of a SIP URI, with or without <> and display name."""
    inner = uri
    if "<" in inner:
        inner = inner.split("<", 1)[1].split(">", 1)[0]
    inner = inner.strip()
    for scheme in ("sips:", "sip:", "tel:"):
        if inner.lower().startswith(scheme):
            inner = inner[len(scheme) :]
            break
    if "@" not in inner:
        return ""
    return inner.split("@", 1)[0].split(";", 1)[0]


@dataclass(frozen=True)
class Received:
    """An incoming SIP MESSAGE as the app saw it."""

    from_uri: str
    to_uri: str
    body: str
    content_type: str  # the full Content-Type header when known (with charset etc.)
    contact_uri: str = ""
    request_uri: str = ""
    src_address: str = ""
    raw: str = ""  # the whole SIP request as received (start line, headers, body)
    headers: tuple[tuple[str, str], ...] = ()  # (lower-case full name, value), in order

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive, compact forms understood)."""
        key = name.lower()
        key = _COMPACT.get(key, key)
        for hname, value in self.headers:
            if hname == key:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        key = name.lower()
        key = _COMPACT.get(key, key)
        return [value for hname, value in self.headers if hname == key]


@dataclass(frozen=True)
class RegEvent:
    """One final outcome of a REGISTER (or un-REGISTER) transaction."""

    code: int
    reason: str
    expiration: int
    status: int  # pj_status_t, 0 when a SIP response arrived
    raw: str = ""  # the response when one was received


@dataclass
class _Pending:
    to_uri: str
    body: str
    done: threading.Event = field(default_factory=threading.Event)
    code: int = 0
    reason: str = ""
    raw: str = ""


# --------------------------------------------------------------------------- the account


def _safe(method: Callable[..., None]) -> Callable[..., None]:
    """Never let a Python exception propagate from a pjsua2 callback into C++."""

    def wrapper(self: Any, prm: Any) -> None:
        try:
            method(self, prm)
        except BaseException as exc:  # noqa: BLE001 - a callback must not raise into PJSIP
            ua = getattr(self, "ua", None)
            if ua is not None:
                ua._callback_errors.append(repr(exc))

    wrapper.__name__ = method.__name__
    return wrapper


class _Account(pj.Account):
    def __init__(self, ua: SipUA) -> None:
        super().__init__()
        self.ua: SipUA | None = ua

    @_safe
    def onRegState(self, prm: Any) -> None:
        ua = self.ua
        if ua is not None:
            raw = ""
            with contextlib.suppress(Exception):
                raw = str(prm.rdata.wholeMsg)
            ua._on_reg_state(
                RegEvent(int(prm.code), str(prm.reason), int(prm.expiration), int(prm.status), raw)
            )

    @_safe
    def onInstantMessage(self, prm: Any) -> None:
        ua = self.ua
        if ua is not None:
            ua._on_incoming(prm)

    @_safe
    def onInstantMessageStatus(self, prm: Any) -> None:
        ua = self.ua
        if ua is not None:
            raw = ""
            with contextlib.suppress(Exception):
                raw = str(prm.rdata.wholeMsg)
            ua._on_message_status(
                str(prm.toUri), str(prm.msgBody), int(prm.code), str(prm.reason), raw
            )


class SipUA:
    """One pjsua2 account = one app instance (a phone or a tablet) of a gateway user.

    * AOR ``sip:{username}@{domain}``; digest credentials (realm ``*``) with the plain password.
    * With ``registrar=(host, port)``: REGISTER goes to ``sip:host:port;transport=X`` (no Route
      header), and every other request (MESSAGE) is sent through the outbound proxy
      ``sip:host:port;transport=X;lr``, i.e. it carries ``Route: <sip:host:port;transport=X;lr>``
      and its Request-URI is the ``to_uri`` given to :meth:`send_message`.
    * :attr:`contact_uri` ``sip:{contact_user or username}@127.0.0.1:{port}`` (``;transport=
      tcp|tls`` for those), ``port`` being the listening port of the process-wide transport:
      where a peer reaches this UA directly. The Contact pjsua REGISTERs is that URI when
      ``contact_user`` is given (it is forced); otherwise pjsua builds it, and over TCP/TLS it
      names the *connection's* local (ephemeral) port, ``;transport=TCP;ob``: a registrar must
      then send down the registration's connection (RFC 5626), as real pjsua apps require.
    * Several UAs may share a username (one per device): give each its own ``contact_user``;
      incoming MESSAGEs are routed to the UA whose contact user is the Request-URI's user
      (then the AOR user), whichever account pjsua picked.
    * RFC 5626 outbound is on as in a real pjsua app (``;ob``; ``reg-id`` and
      ``+sip.instance`` over TCP/TLS), with a unique ``+sip.instance`` per UA so two devices of
      one user are two bindings. Contact rewriting from ``received``/``rport`` is off, and a
      failed REGISTER is not retried, so registration outcomes are deterministic.
    * At most :data:`MAX_ACCOUNTS` (8) UAs live at once per process (RuntimeError beyond).
    * TLS: trusts ``ca_file`` (default: :func:`harness_ca`) and verifies the server certificate,
      name included (the gateway must present a certificate valid for 127.0.0.1, as
      :func:`make_tls_files` makes).

    ``configure`` is an escape hatch: called with the ``pj.AccountConfig`` just before the
    account is created.
    """

    def __init__(
        self,
        *,
        transport: str,
        registrar: tuple[str, int] | None,
        domain: str,
        username: str,
        password: str,
        ca_file: str | os.PathLike[str] | None = None,
        register: bool = True,
        expires: int = 300,
        contact_user: str | None = None,
        configure: Callable[[Any], None] | None = None,
    ) -> None:
        transport = transport.lower()
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
        self.transport = transport
        self.registrar = registrar
        self.domain = domain
        self.username = username
        self.password = password
        self.contact_user = contact_user or username
        self.aor = f"sip:{username}@{domain}"
        self.will_register = bool(registrar) and register
        self._cond = threading.Condition()
        self._reg_events: list[RegEvent] = []
        self._reg_cursor = 0
        self._pending: list[_Pending] = []
        self._inbox: queue.Queue[Received] = queue.Queue()
        self.received: list[Received] = []
        self._callback_errors: list[str] = []
        self._answer = 200
        self._keep_account = False  # never delete the pjsua account (see send_message_full)
        self._buddies: dict[str, Any] = {}
        self._closed = False
        # Guards pjsua2 objects of this UA. Never taken by callbacks (PJSIP threads), so it may
        # be held while calling into pjsua2; _cond is taken by callbacks and never held then.
        self._api_lock = threading.RLock()

        self._tp = _runtime.transport(transport, str(ca_file) if ca_file else None)
        self.port = self._tp.port
        tp_param = "" if transport == "udp" else f";transport={transport}"
        #: Where a peer reaches this UA directly (no registrar): Request-URI for send_message.
        self.contact_uri = f"sip:{self.contact_user}@{LOCALHOST}:{self.port}{tp_param}"

        cfg = pj.AccountConfig()
        cfg.idUri = self.aor
        cred = pj.AuthCredInfo("digest", "*", username, 0, password)
        cfg.sipConfig.authCreds.append(cred)
        cfg.sipConfig.transportId = self._tp.id
        if contact_user:
            cfg.sipConfig.contactForced = f"<{self.contact_uri}>"
        if registrar:
            host, rport = registrar
            cfg.regConfig.registrarUri = f"sip:{host}:{rport};transport={transport}"
            cfg.sipConfig.proxies.append(f"sip:{host}:{rport};transport={transport};lr")
        cfg.regConfig.registerOnAdd = self.will_register
        cfg.regConfig.timeoutSec = expires
        cfg.regConfig.proxyUse = 0  # REGISTER straight to the registrar, without Route
        cfg.regConfig.retryIntervalSec = 0  # a failed registration stays failed
        cfg.regConfig.firstRetryIntervalSec = 0
        cfg.regConfig.unregWaitMsec = 2000
        cfg.regConfig.dropCallsOnFail = False
        cfg.natConfig.contactRewriteUse = 0
        cfg.natConfig.viaRewriteUse = 0
        cfg.natConfig.sdpNatRewriteUse = 0
        cfg.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        cfg.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        cfg.natConfig.sipOutboundUse = 1
        cfg.natConfig.sipOutboundInstanceId = f"<urn:uuid:{uuid.uuid4()}>"
        cfg.presConfig.publishEnabled = False
        cfg.mwiConfig.enabled = False
        if configure is not None:
            configure(cfg)
        self.instance_id = str(cfg.natConfig.sipOutboundInstanceId)

        self._acc: _Account | None = _Account(self)
        with _runtime.lock:
            _reap()
            _ensure_thread()
            with _runtime.uas_lock:
                live = len(_runtime.uas) + len(_runtime.retired)
                if live >= MAX_ACCOUNTS:
                    self._acc = None
                    raise RuntimeError(
                        f"pjsua2 allows {MAX_ACCOUNTS} accounts per process (PJSUA_MAX_ACC) and "
                        f"{live} are in use: close SipUAs you no longer need"
                        + (
                            f" ({len(_runtime.retired)} closed ones still await a MESSAGE status)"
                            if _runtime.retired
                            else ""
                        )
                    )
                _runtime.uas.append(self)
            try:
                with _pj_call(f"creating the account {self.aor}"):
                    self._acc.create(cfg)
            except BaseException:
                with _runtime.uas_lock:
                    _runtime.uas.remove(self)
                self._acc.ua = None
                self._acc = None
                raise

    def __repr__(self) -> str:
        return f"<SipUA {self.aor} contact {self.contact_uri} via {self.transport}>"

    def __enter__(self) -> SipUA:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ registration

    def _on_reg_state(self, event: RegEvent) -> None:
        with self._cond:
            self._reg_events.append(event)
            self._cond.notify_all()

    @property
    def reg_events(self) -> list[RegEvent]:
        """Every final REGISTER outcome so far, oldest first."""
        with self._cond:
            return list(self._reg_events)

    @property
    def registered(self) -> bool:
        with self._cond:
            last = self._reg_events[-1] if self._reg_events else None
        return last is not None and 200 <= last.code < 300 and last.expiration > 0

    def _next_reg_event(self, what: str, timeout: float) -> RegEvent:
        if not self.will_register and not self._reg_events:
            raise AssertionError(f"{self!r} does not register (registrar=None or register=False)")
        timeout = min(timeout, MAX_TIMEOUT)
        with self._cond:
            ok = self._cond.wait_for(lambda: self._reg_cursor < len(self._reg_events), timeout)
            if not ok:
                last = self._reg_events[-1] if self._reg_events else None
                state = (
                    f"last REGISTER outcome {last.code} {last.reason}"
                    if last
                    else "no final response to REGISTER"
                )
                raise AssertionError(
                    f"{self.aor}: timed out after {timeout}s waiting for {what}: {state}{_log_hint(self)}"
                )
            event = self._reg_events[self._reg_cursor]
            self._reg_cursor += 1
            return event

    def _mark_reg(self) -> None:
        with self._cond:
            self._reg_cursor = len(self._reg_events)

    def wait_registered(self, timeout: float = 10) -> int:
        """The final status of the next REGISTER outcome, which must be a 2xx with expires > 0.

        Returns at once when the UA is registered and no newer outcome is pending."""
        with self._cond:
            if self._reg_cursor == len(self._reg_events) and self._reg_events and self.registered:
                return self._reg_events[-1].code
        event = self._next_reg_event("a successful REGISTER", timeout)
        if not (200 <= event.code < 300 and event.expiration > 0):
            raise AssertionError(
                f"{self.aor}: REGISTER failed: {event.code} {event.reason}"
                f" (expires {event.expiration}, pj status {event.status}){_log_hint(self)}"
            )
        return event.code

    def wait_registration_failed(self, timeout: float = 10) -> int:
        """The non-2xx final status of the next REGISTER outcome (e.g. 401, 403; 408 or 503
        for a transport failure). Failed registrations are not retried, so this is final."""
        event = self._next_reg_event("a failed REGISTER", timeout)
        if 200 <= event.code < 300:
            raise AssertionError(
                f"{self.aor}: REGISTER unexpectedly succeeded: {event.code} {event.reason}"
                f" (expires {event.expiration})"
            )
        return event.code

    def register(self, timeout: float = 10) -> int:
        """Send a (new) REGISTER now and wait for it to succeed; returns the status code."""
        self._require_open()
        if not self.registrar:
            raise AssertionError(f"{self!r} has no registrar")
        self.will_register = True
        self._mark_reg()
        _ensure_thread()
        with _pj_call(f"{self.aor}: REGISTER"):
            self._acc.setRegistration(True)
        return self.wait_registered(timeout)

    def unregister(self, timeout: float = 10) -> int:
        """Send REGISTER with Expires: 0 and return its final status code (200 expected)."""
        self._require_open()
        if not self.registrar:
            raise AssertionError(f"{self!r} has no registrar")
        self._mark_reg()
        _ensure_thread()
        with _pj_call(f"{self.aor}: un-REGISTER"):
            self._acc.setRegistration(False)
        event = self._next_reg_event("the answer to the un-REGISTER", timeout)
        return event.code

    # ------------------------------------------------------------------ MESSAGE out

    def _on_message_status(self, to_uri: str, body: str, code: int, reason: str, raw: str) -> None:
        with self._cond:
            # Exact match only: pjsua reuses account ids, so a late status of a closed UA's
            # MESSAGE may reach a newer UA; it must not complete an unrelated send.
            match = next((p for p in self._pending if p.to_uri == to_uri and p.body == body), None)
            if match is None:
                return
            self._pending.remove(match)
            match.code, match.reason, match.raw = code, reason, raw
            match.done.set()

    def send_message(
        self,
        to_uri: str,
        text: str,
        content_type: str = "text/plain",
        timeout: float = 10,
        headers: dict[str, str] | None = None,
    ) -> int:
        """Send a SIP MESSAGE and return the final status code of its transaction (e.g. 202).

        With a registrar it goes through the gateway (outbound proxy); challenges (401/407) are
        answered with the account's credentials by pjsua. ``headers`` are added as-is."""
        return self.send_message_full(to_uri, text, content_type, timeout, headers)[0]

    def send_message_full(
        self,
        to_uri: str,
        text: str,
        content_type: str = "text/plain",
        timeout: float = 10,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, str]:
        """Like :meth:`send_message`, returning ``(code, reason, raw final response)``."""
        pending = _Pending(to_uri, text)
        _ensure_thread()
        with self._api_lock:
            self._require_open()
            self._check_target(to_uri)
            with _pj_call(f"{self.aor}: MESSAGE target {to_uri!r}"):
                buddy = self._buddy(to_uri)
            prm = pj.SendInstantMessageParam()
            prm.content = text
            prm.contentType = content_type
            for name, value in (headers or {}).items():
                hdr = pj.SipHeader()
                hdr.hName = name
                hdr.hValue = value
                prm.txOption.headers.append(hdr)
            with self._cond:
                self._pending.append(pending)
            try:
                with _pj_call(f"{self.aor}: sending MESSAGE to {to_uri}"):
                    buddy.sendInstantMessage(prm)
            except BaseException:
                with self._cond, contextlib.suppress(ValueError):
                    self._pending.remove(pending)
                # pjsip may keep the failed transaction and report it when the endpoint is
                # destroyed; deleting this account before then would abort the process.
                self._keep_account = True
                raise
        timeout = min(timeout, MAX_TIMEOUT)
        if not pending.done.wait(timeout):
            raise AssertionError(
                f"{self.aor}: no final response to MESSAGE to {to_uri} within {timeout}s{_log_hint(self)}"
            )
        return pending.code, pending.reason, pending.raw

    def _check_target(self, to_uri: str) -> None:
        """Without a registrar the request goes straight to ``to_uri``: its transport must be
        this UA's (a mismatch fails inside pjsip and leaks a transaction, see close())."""
        if self.registrar:
            return
        low = to_uri.lower()
        wanted = "udp"
        if low.startswith("sips:"):
            wanted = "tls"
        if ";transport=" in low:
            wanted = low.split(";transport=", 1)[1].split(";")[0].split(">")[0].split("?")[0]
        if wanted != self.transport:
            hint = "" if self.transport == "udp" else f" (add ;transport={self.transport})"
            raise ValueError(
                f"{self!r} cannot send to {to_uri!r} over {wanted}: no registrar, so the "
                f"Request-URI must name this UA's transport{hint}"
            )

    def _buddy(self, uri: str) -> Any:
        buddy = self._buddies.pop(uri, None)
        if buddy is None:
            while len(self._buddies) >= MAX_BUDDIES_PER_UA:
                # Least recently used first; safe with its MESSAGE in flight (the status is
                # reported through the account, not the buddy).
                del self._buddies[next(iter(self._buddies))]
            bcfg = pj.BuddyConfig()
            bcfg.uri = uri
            bcfg.subscribe = False
            buddy = pj.Buddy()
            buddy.create(self._acc, bcfg)
        self._buddies[uri] = buddy  # (re)inserted last: most recently used
        return buddy

    # ------------------------------------------------------------------ MESSAGE in

    def _on_incoming(self, prm: Any) -> None:
        raw, src = "", ""
        with contextlib.suppress(Exception):
            raw = str(prm.rdata.wholeMsg)
            src = str(prm.rdata.srcAddress)
        start, headers = _parse_message(raw)
        request_uri = start.split(" ")[1] if start.count(" ") >= 2 else ""
        content_type = next((v for n, v in headers if n == "content-type"), "") or str(
            prm.contentType
        )
        message = Received(
            from_uri=str(prm.fromUri),
            to_uri=str(prm.toUri),
            body=str(prm.msgBody),
            content_type=content_type,
            contact_uri=str(prm.contactUri),
            request_uri=request_uri,
            src_address=src,
            raw=raw,
            headers=tuple(headers),
        )
        target = _route_incoming(self, message)
        target._deliver(message)

    def _deliver(self, message: Received) -> None:
        with self._cond:
            self.received.append(message)
        self._inbox.put(message)

    def next_message(self, timeout: float = 10) -> Received:
        """The next incoming MESSAGE (in arrival order); AssertionError after ``timeout``."""
        timeout = min(timeout, MAX_TIMEOUT)
        try:
            return self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"{self.aor} ({self.contact_uri}): no MESSAGE within {timeout}s{_log_hint(self)}"
            ) from None

    def expect_no_message(self, timeout: float = 1) -> None:
        """Assert that no MESSAGE arrives within ``timeout`` (an event wait, not a sleep)."""
        try:
            message = self._inbox.get(timeout=min(timeout, MAX_TIMEOUT))
        except queue.Empty:
            return
        raise AssertionError(
            f"{self.aor}: unexpected MESSAGE {message.body!r} from {message.from_uri}"
        )

    def set_answer(self, status: int) -> None:
        """The status the app answers incoming MESSAGEs with. Only 200 is possible.

        pjsua2 2.15 cannot answer an out-of-dialog MESSAGE with anything else: pjsua's
        ``mod-pjsua-im`` module sends ``200 OK`` itself *before* ``onInstantMessage`` runs
        (pjsua_im.c, im_on_rx_request), and pjsua2 exposes no hook to answer it. Tests that need
        an app answering 4xx/5xx/6xx (or never answering) must use another UA (e.g. SIPp).
        """
        if status != 200:
            raise NotImplementedError(
                f"pjsua2 always answers incoming MESSAGE with 200 (asked for {status}); "
                "use SIPp for an app that rejects MESSAGEs"
            )
        self._answer = status

    # ------------------------------------------------------------------ lifetime

    def _require_open(self) -> None:
        if self._closed or self._acc is None:
            raise RuntimeError(f"{self!r} is closed")

    def close(self) -> None:
        """Delete the account (un-REGISTERs without waiting if registered). Idempotent.

        While a MESSAGE this UA sent still awaits its final response, the pjsua account is
        only retired (un-REGISTERed, callbacks ignored) and deleted once that response or the
        transaction timeout arrives: deleting it earlier makes pjsua2 abort the process
        (``pjsua_acc_get_user_data`` assertion) when the transaction ends."""
        with self._api_lock:
            if self._closed:
                return
            self._closed = True
            with _runtime.uas_lock:
                if self in _runtime.uas:
                    _runtime.uas.remove(self)
            buddies = list(self._buddies.values())
            self._buddies.clear()
            if _runtime.destroyed or _runtime.ep is None:
                _graveyard.extend(buddies)
                if self._acc is not None:
                    _graveyard.append(self._acc)
                return
            _ensure_thread()
            # Buddies first (their destructor deletes the pjsua buddy), in this registered
            # thread: deleting pjsua2 objects from an unregistered thread asserts in PJLIB.
            del buddies
            with self._cond:
                busy = bool(self._pending) or self._keep_account
            if busy and self._acc is not None and self.will_register:
                with contextlib.suppress(pj.Error):
                    self._acc.setRegistration(False)
            with _runtime.uas_lock:
                _runtime.retired.append(self)
        _reap()

    def _delete_account(self) -> None:
        with self._api_lock:
            acc, self._acc = self._acc, None
            if acc is None:
                return
            _ensure_thread()
            acc.ua = None
            with contextlib.suppress(pj.Error):
                acc.shutdown()
            del acc


def _reap() -> None:
    """Delete the pjsua accounts of closed UAs that no longer await a MESSAGE status."""
    with _runtime.lock:
        if _runtime.destroyed:
            return
        with _runtime.uas_lock:
            retired = list(_runtime.retired)
        for ua in retired:
            with ua._cond:
                busy = bool(ua._pending) or ua._keep_account
            if not busy:
                ua._delete_account()
                with _runtime.uas_lock:
                    _runtime.retired.remove(ua)


def _route_incoming(receiver: SipUA, message: Received) -> SipUA:
    """The UA an incoming MESSAGE is for: pjsua picks an account by the Request-URI user, which
    is wrong when several UAs share a username or transport; match contact user, then AOR
    user, preferring the transport the request came over."""
    via = message.header("via") or ""
    kind = via.split("/")[2].split()[0].lower() if via.count("/") >= 2 else receiver.transport
    user = _uri_user(message.request_uri) if message.request_uri else ""
    with _runtime.uas_lock:
        uas = list(_runtime.uas)
    if not user:
        return receiver
    for attr in ("contact_user", "username"):
        matches = [ua for ua in uas if getattr(ua, attr) == user]
        if matches:
            same_kind = [ua for ua in matches if ua.transport == kind]
            chosen = same_kind or matches
            return receiver if receiver in chosen else chosen[0]
    return receiver
