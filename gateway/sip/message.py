# SIP message parse/serialise, bounded (RFC 3261 §7, §8.2.6, §18.3, §20, §25; RFC 5626 §3.5.1).
"""Bytes <-> ``Request``/``Response`` for SIP, sans-IO and bounded.

Every failure is a ``SipError`` carrying the status to answer with (400, 413, 414, 415, 416,
505). Nothing else escapes ``parse_message`` or ``StreamParser.feed``.

Decisions beyond RFC 3261's grammar:

* Header values are stored unfolded (a continuation line becomes one SP) and stripped; names
  keep their case and compact form for output, lookups are case-insensitive and compact-aware.
* A message's equality ignores Content-Length: ``to_bytes`` always recomputes it from the body.
* Requests need To, From, CSeq, Call-ID and Via (400 "Missing <Header>"). Max-Forwards may be
  absent (§8.1.1.6 says SHOULD; RFC 2543 peers omit it) but, when present, is 0..255.
  Responses need the same set minus Max-Forwards.
* To/From/Contact are checked for syntax while parsing, but a URI scheme other than sip/sips/tel
  there is left to higher layers (RFC 4475's unksm2 is well-formed): ``to_header()``
  and friends then raise SipError 416. In the Request-URI it is 416 at once; URI headers
  (``?``) in the Request-URI are 400 (§19.1.1 table).
* UDP (``parse_message``): without Content-Length the body is the rest of the datagram; extra
  octets beyond Content-Length are dropped (§18.3), fewer are 400.
* Streams (``StreamParser``): Content-Length is required; a double CRLF between messages is an
  RFC 5626 ping reported as ``KeepAlive``; a single CRLF (pong/stray) is dropped. A framed but
  invalid message is reported as ``BadMessage`` so the connection survives; a framing error
  raises and the connection must be closed (the parser refuses further input).
* ``text_body`` decodes by the Content-Type charset (default UTF-8); an unknown charset or
  undecodable body is 415 Unsupported Media Type (§8.2.3: bodies the UAS cannot process).
* A URI password is kept (``str(uri)`` is wire form) but masked in ``repr``, so never logged.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from gateway.errors import GatewayError

MAX_MESSAGE_SIZE = 65_535
MAX_HEADERS = 128
MAX_LINE_LENGTH = 8_192
MAX_CSEQ = 2**31 - 1


class SipError(GatewayError):
    """A SIP message we cannot accept, with the response ``status`` and ``reason`` to answer."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}")


@dataclass(frozen=True)
class Limits:
    """Bounds applied by a parser (docs/architecture.md rule 5)."""

    max_message_size: int = MAX_MESSAGE_SIZE
    """Whole message, start line to end of body (over it: 413)."""
    max_headers: int = MAX_HEADERS
    """Header fields after unfolding (over it: 400)."""
    max_line_length: int = MAX_LINE_LENGTH
    """One physical line (over it: 400; 414 when it is the Request-URI)."""
    max_body: int = MAX_MESSAGE_SIZE
    """Body octets (over it: 413)."""


DEFAULT_LIMITS = Limits()

# RFC 3261 §7.3.3, RFC 3262, 3515, 3841, 3892, 4028, 4474, 6665 compact forms.
COMPACT_FORMS = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
    "v": "via", "o": "event", "u": "allow-events", "r": "refer-to", "b": "referred-by",
    "x": "session-expires", "a": "accept-contact", "j": "reject-contact",
    "d": "request-disposition", "y": "identity", "n": "identity-info",
}  # fmt: skip

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1, §20 and extensions).
LIST_HEADERS = frozenset({
    "via", "contact", "route", "record-route", "allow", "supported", "require",
    "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
    "content-encoding", "content-language", "allow-events", "alert-info", "call-info",
    "error-info", "in-reply-to", "warning", "path", "service-route",
    "p-associated-uri", "p-asserted-identity", "p-preferred-identity",
    "accept-contact", "reject-contact", "request-disposition", "security-client",
    "security-server", "security-verify", "history-info", "reason",
})  # fmt: skip

_SINGLE = ("To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Length")
_MANDATORY = (("to", "To"), ("from", "From"), ("cseq", "CSeq"), ("call-id", "Call-ID"),
              ("via", "Via"))  # fmt: skip

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*)")
_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")
_PASSWORD_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,%]*")
_TEL_RE = re.compile(r"[0-9A-Fa-f+\-.()*#%]+")
_PARAM_VALUE_RE = re.compile(r"[^\s\";,]+")
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALL_ID_RE = re.compile(rf"{_WORD}(?:@{_WORD})?")
_WS_RE = re.compile(r"\s")
_VERSION_RE = re.compile(r"SIP/\d+\.\d+", re.IGNORECASE)
_DATE_RE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")


def _key(name: str) -> str:
    low = name.lower()
    return COMPACT_FORMS.get(low, low)


def _bad(reason: str) -> SipError:
    return SipError(400, reason)


def split_outside(text: str, sep: str, *, angles: bool = True) -> list[str]:
    """Split ``text`` at ``sep`` except inside quoted strings (and ``<...>`` if ``angles``).

    Parts are stripped; an unterminated quoted string is a 400.
    """
    if '"' not in text and (not angles or "<" not in text):
        return [part.strip() for part in text.split(sep)]
    parts: list[str] = []
    start = 0
    quoted = escaped = False
    depth = 0
    for i, ch in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif angles and ch == "<":
            depth += 1
        elif angles and ch == ">" and depth:
            depth -= 1
        elif ch == sep and not depth:
            parts.append(text[start:i].strip())
            start = i + 1
    if quoted:
        raise _bad("Unterminated quoted string")
    parts.append(text[start:].strip())
    return parts


def _parse_params(text: str, where: str) -> dict[str, str | None]:
    """``;name=value;flag`` (leading ``;`` already removed) -> ordered dict; 400 when bad."""
    params: dict[str, str | None] = {}
    for part in split_outside(text, ";", angles=False):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not _TOKEN_RE.fullmatch(name):
            raise _bad(f"Bad parameter in {where}")
        if not eq:
            params[name] = None
            continue
        value = value.strip()
        if value.startswith('"'):
            if _closing_quote(value) != len(value) - 1:
                raise _bad(f"Bad quoted parameter in {where}")
        elif not _PARAM_VALUE_RE.fullmatch(value):
            raise _bad(f"Bad parameter value in {where}")
        params[name] = value
    return params


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _parse_hostport(text: str, where: str) -> tuple[str, int | None]:
    """``host[:port]`` with IPv6 in brackets -> (host without brackets, port)."""
    port_text = ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _bad(f"Bad IPv6 reference in {where}")
        host = text[1:end]
        rest = text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise _bad(f"Bad host in {where}")
            port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _bad(f"Bad IPv6 address in {where}") from None
    else:
        host, colon, port_text = text.partition(":")
        if not _HOST_RE.fullmatch(host):
            raise _bad(f"Bad host in {where}")
        if colon and not port_text:
            raise _bad(f"Bad port in {where}")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not port_text.isascii() or int(port_text) > 65535:
        raise _bad(f"Bad port in {where}")
    return host, int(port_text)


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass
class Uri:
    """A sip:, sips: or tel: URI (RFC 3261 §19.1, RFC 3966); tel: keeps the number in ``user``."""

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None

    def __str__(self) -> str:
        if self.scheme == "tel":
            out = f"tel:{self.user or ''}"
        else:
            userinfo = ""
            if self.user is not None:
                userinfo = self.user
                if self.password is not None:
                    userinfo += ":" + self.password
                userinfo += "@"
            out = f"{self.scheme}:{userinfo}{_format_host(self.host)}"
            if self.port is not None:
                out += f":{self.port}"
        out += _format_params(self.params)
        if self.headers is not None:
            out += "?" + self.headers
        return out

    def __repr__(self) -> str:
        password = "" if self.password is None else ", password='***'"
        return (
            f"Uri(scheme={self.scheme!r}, user={self.user!r}{password}, host={self.host!r}, "
            f"port={self.port!r}, params={self.params!r}, headers={self.headers!r})"
        )

    def param(self, name: str) -> str | None:
        """A parameter's value by case-insensitive name (``None`` if absent or a flag)."""
        low = name.lower()
        for k, v in self.params.items():
            if k.lower() == low:
                return v
        return None

    def has_param(self, name: str) -> bool:
        low = name.lower()
        return any(k.lower() == low for k in self.params)


def parse_uri(text: str) -> Uri:
    """Parse a sip:, sips: or tel: URI; another scheme is SipError 416, bad syntax 400."""
    if not text or _WS_RE.search(text):
        raise _bad("Bad URI")
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise _bad("Bad URI")
    scheme = scheme.lower()
    if scheme not in ("sip", "sips", "tel"):
        raise SipError(416, "Unsupported URI Scheme")
    if scheme == "tel":
        number, _, param_text = rest.partition(";")
        if not _TEL_RE.fullmatch(number):
            raise _bad("Bad tel URI")
        params = _parse_uri_params(param_text) if param_text else {}
        return Uri("tel", user=number, params=params)
    user = password = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if not _USER_RE.fullmatch(user) or (colon and not _PASSWORD_RE.fullmatch(pw)):
            raise _bad("Bad URI user")
        password = pw if colon else None
    rest, qmark, headers = rest.partition("?")
    hostport, _, param_text = rest.partition(";")
    host, port = _parse_hostport(hostport, "URI")
    params = _parse_uri_params(param_text) if param_text or rest.endswith(";") else {}
    return Uri(scheme, user, password, host, port, params, headers if qmark else None)


def _parse_uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if not name or (eq and not value):
            raise _bad("Bad URI parameter")
        params[name] = value if eq else None
    return params


@dataclass
class NameAddr:
    """``"Display" <uri>;params`` or a bare addr-spec (RFC 3261 §20.10, §25.1 name-addr)."""

    uri: Uri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        out = f"<{self.uri}>"
        if self.display_name is not None:
            quoted = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            out = f'"{quoted}" {out}'
        return out + _format_params(self.params)


def _unquote(text: str) -> str:
    """Contents of a quoted-string without its quotes, quoted-pairs resolved."""
    out: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    return "".join(out)


def _closing_quote(text: str) -> int:
    """Index of the quote closing the quoted-string opening at ``text[0]``; 400 if none."""
    i = 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i
        i += 1
    raise _bad("Unterminated quoted string")


def parse_name_addr(text: str) -> NameAddr:
    """Parse a From/To/Contact/Route value; SipError 400 on bad syntax, 416 on foreign scheme."""
    text = text.strip()
    display: str | None = None
    if text.startswith('"'):
        end = _closing_quote(text)
        display = _unquote(text[1:end])
        text = text[end + 1 :].lstrip()
        if not text.startswith("<"):
            raise _bad("Expected <URI> after display name")
    if "<" in text:
        lt = text.index("<")
        if display is None:
            words = text[:lt].split()
            if any(not _TOKEN_RE.fullmatch(w) for w in words):
                raise _bad("Bad display name")
            display = " ".join(words) if words else None
        gt = text.find(">", lt)
        if gt < 0:
            raise _bad("Unterminated <URI>")
        uri_text, rest = text[lt + 1 : gt], text[gt + 1 :].strip()
        if rest and not rest.startswith(";"):
            raise _bad("Bad text after <URI>")
        param_text = rest[1:]
        has_params = bool(rest)
    else:
        uri_text, semi, param_text = text.partition(";")
        uri_text = uri_text.rstrip()
        has_params = bool(semi)
        if "?" in uri_text or "," in uri_text:
            raise _bad("URI with '?' or ',' must be enclosed in <>")
    params = _parse_params(param_text, "name-addr") if has_params else {}
    return NameAddr(parse_uri(uri_text), display, params)


@dataclass
class Via:
    """One Via value (RFC 3261 §20.42, RFC 3581 rport); ``transport`` is any token."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport_requested(self) -> bool:
        """True when ``rport`` is present, as a flag or with a value."""
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        value = self.params.get("rport")
        return int(value) if value is not None else None

    def __str__(self) -> str:
        sent_by = _format_host(self.host) + ("" if self.port is None else f":{self.port}")
        return f"SIP/2.0/{self.transport} {sent_by}{_format_params(self.params)}"


def parse_via(text: str) -> Via:
    """Parse one Via value (already split from its list)."""
    head, semi, param_text = text.partition(";")
    parts = head.split("/", 2)
    if len(parts) != 3 or parts[0].strip().upper() != "SIP" or parts[1].strip() != "2.0":
        raise _bad("Bad Via protocol")
    transport_sent_by = parts[2].split(None, 1)
    if len(transport_sent_by) != 2 or not _TOKEN_RE.fullmatch(transport_sent_by[0]):
        raise _bad("Bad Via transport")
    host, port = _parse_hostport("".join(transport_sent_by[1].split()), "Via")
    params = _parse_params(param_text, "Via") if semi else {}
    rport = params.get("rport")
    if rport is not None and not (rport.isascii() and rport.isdigit() and int(rport) <= 65535):
        raise _bad("Bad Via rport")
    received = params.get("received")
    if received is not None and not _HOST_RE.fullmatch(received):
        try:
            ipaddress.ip_address(received)
        except ValueError:
            raise _bad("Bad Via received") from None
    return Via(transport_sent_by[0].upper(), host, port, params)


@dataclass(frozen=True)
class CSeq:
    """CSeq (RFC 3261 §20.16): sequence number 0..2**31-1 and method."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(text: str) -> CSeq:
    parts = text.split()
    if len(parts) != 2 or not parts[0].isascii() or not parts[0].isdigit():
        raise _bad("Bad CSeq")
    if len(parts[0]) > 12 or int(parts[0]) > MAX_CSEQ:
        raise _bad("CSeq number out of range")
    if not _TOKEN_RE.fullmatch(parts[1]):
        raise _bad("Bad CSeq method")
    return CSeq(int(parts[0]), parts[1])


class Headers:
    """Ordered multi-map of header fields keeping original names; lookups ignore case and
    accept compact forms (``v`` == ``Via``)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = [(n, v, _key(n)) for n, v in items]

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value, _key(name)))

    def set(self, name: str, value: str) -> None:
        """Replace every field of that name by one, at the first one's place (or the end)."""
        key = _key(name)
        idx = next((i for i, item in enumerate(self._items) if item[2] == key), None)
        self.remove(name)
        if idx is None:
            self._items.append((name, value, key))
        else:
            self._items.insert(idx, (name, value, key))

    def remove(self, name: str) -> int:
        key = _key(name)
        before = len(self._items)
        self._items = [item for item in self._items if item[2] != key]
        return before - len(self._items)

    def get(self, name: str) -> str | None:
        key = _key(name)
        return next((v for _, v, k in self._items if k == key), None)

    def get_raw(self, name: str) -> list[str]:
        """Every field value of that name as received (lists not split)."""
        key = _key(name)
        return [v for _, v, k in self._items if k == key]

    def get_all(self, name: str) -> list[str]:
        """Every value; list headers are split at commas outside quotes and ``<...>``."""
        key = _key(name)
        raw = [v for _, v, k in self._items if k == key]
        if key not in LIST_HEADERS:
            return raw
        out: list[str] = []
        for value in raw:
            out.extend(part for part in split_outside(value, ",") if part)
        return out

    def copy(self) -> Headers:
        return Headers((n, v) for n, v, _ in self._items)

    def without(self, name: str) -> Headers:
        key = _key(name)
        return Headers((n, v) for n, v, k in self._items if k != key)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter([(n, v) for n, v, _ in self._items])

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name)
        return any(k == key for _, _, k in self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for _, v, k in self._items] == [(k, v) for _, v, k in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({[(n, v) for n, v, _ in self._items]!r})"


class _Message:
    """Helpers shared by requests and responses."""

    headers: Headers
    body: bytes

    def _one(self, key: str, label: str) -> str:
        value = self.headers.get(key)
        if value is None:
            raise _bad(f"Missing {label}")
        return value

    def from_header(self) -> NameAddr:
        return parse_name_addr(self._one("from", "From"))

    def to_header(self) -> NameAddr:
        return parse_name_addr(self._one("to", "To"))

    def call_id(self) -> str:
        return self._one("call-id", "Call-ID")

    def cseq(self) -> CSeq:
        return parse_cseq(self._one("cseq", "CSeq"))

    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("via")]

    def contacts(self) -> list[NameAddr]:
        """Contact values; ``Contact: *`` (REGISTER wildcard) yields an empty list."""
        return [parse_name_addr(v) for v in self.headers.get_all("contact") if v != "*"]

    def content_type(self) -> tuple[str, dict[str, str | None]] | None:
        """(``type/subtype`` lower-cased, params with lower-cased names, unquoted values)."""
        value = self.headers.get("content-type")
        if value is None:
            return None
        mime, semi, param_text = value.partition(";")
        mime = "/".join(p.strip() for p in mime.split("/")).lower()
        if mime.count("/") != 1 or not all(_TOKEN_RE.fullmatch(p) for p in mime.split("/")):
            raise _bad("Bad Content-Type")
        params = _parse_params(param_text, "Content-Type") if semi else {}
        return mime, {
            k.lower(): (_unquote(v[1:-1]) if v is not None and v.startswith('"') else v)
            for k, v in params.items()
        }

    def text_body(self) -> str:
        """The body decoded by its charset (default UTF-8); SipError 415 if it cannot be."""
        ctype = self.content_type()
        charset = (ctype[1].get("charset") if ctype else None) or "utf-8"
        try:
            return self.body.decode(charset)
        except (LookupError, UnicodeError):
            raise SipError(415, "Unsupported Media Type") from None

    def _serialise(self, start_line: str) -> bytes:
        lines = [start_line]
        length_done = False
        for name, value in self.headers:
            if _key(name) == "content-length":
                if length_done:
                    continue
                value = str(len(self.body))
                length_done = True
            lines.append(f"{name}: {value}")
        if not length_done:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass(eq=False)
class Request(_Message):
    method: str
    uri: Uri
    headers: Headers
    body: bytes = b""

    def to_bytes(self) -> bytes:
        return self._serialise(f"{self.method} {self.uri} SIP/2.0")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (self.method, self.uri, self.body) == (other.method, other.uri, other.body) and (
            self.headers.without("content-length") == other.headers.without("content-length")
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(eq=False)
class Response(_Message):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def to_bytes(self) -> bytes:
        return self._serialise(f"SIP/2.0 {self.status} {self.reason}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return (self.status, self.reason, self.body) == (
            other.status,
            other.reason,
            other.body,
        ) and self.headers.without("content-length") == other.headers.without("content-length")

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class KeepAlive:
    """An RFC 5626 §3.5.1 double-CRLF ping on a stream: answer with a single CRLF."""


@dataclass(frozen=True)
class BadMessage:
    """A framed but invalid message on a stream: answer ``error.status`` if it can be."""

    error: SipError
    data: bytes


# --- parsing --------------------------------------------------------------------------------


def _split_head(head: bytes, limits: Limits) -> tuple[str, list[tuple[str, str]]]:
    """Start line and unfolded (name, value) pairs of a header section (no blank line)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("Header section is not UTF-8") from None
    lines = text.split("\n")
    start = lines[0].removesuffix("\r")
    if len(lines[0]) > limits.max_line_length:
        if not start.startswith("SIP/") and start.count(" ") >= 2:
            raise SipError(414, "Request-URI Too Long")
        raise _bad("Start line too long")
    fields: list[list[str]] = []
    for raw in lines[1:]:
        if len(raw) > limits.max_line_length:
            raise _bad("Header line too long")
        line = raw.removesuffix("\r")
        if line[:1] in (" ", "\t"):
            if not fields:
                raise _bad("Continuation line before any header")
            fields[-1][1] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _TOKEN_RE.fullmatch(name):
            raise _bad("Malformed header line")
        fields.append([name, value.strip()])
        if len(fields) > limits.max_headers:
            raise _bad("Too many header fields")
    return start, [(n, v.strip()) for n, v in fields]


def _check_version(version: str) -> None:
    if version.upper() != "SIP/2.0":
        if _VERSION_RE.fullmatch(version):
            raise SipError(505, "Version Not Supported")
        raise _bad("Bad SIP version")


def _content_length(headers: Headers) -> int | None:
    values = headers.get_raw("content-length")
    if not values:
        return None
    if len(values) > 1:
        raise _bad("Multiple Content-Length")
    value = values[0]
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise _bad("Bad Content-Length")
    return int(value)


def _build(start: str, headers: Headers, body: bytes) -> Request | Response:
    """Interpret the start line and check the headers every element relies on."""
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2:
            raise _bad("Bad status line")
        _check_version(parts[0])
        code = parts[1]
        if len(code) != 3 or not code.isascii() or not code.isdigit() or code[0] in "0789":
            raise _bad("Bad status code")
        message: Request | Response = Response(int(code), parts[2] if len(parts) > 2 else "",
                                               headers, body)  # fmt: skip
        method = None
    else:
        parts = start.split(" ")
        if len(parts) != 3:
            raise _bad("Bad request line")
        method, uri_text, version = parts
        if not _TOKEN_RE.fullmatch(method):
            raise _bad("Bad method")
        _check_version(version)
        uri = parse_uri(uri_text)
        if uri.headers is not None:
            raise _bad("Headers not allowed in Request-URI")
        message = Request(method, uri, headers, body)
    _validate(message, method)
    return message


def _validate(message: Request | Response, method: str | None) -> None:
    headers = message.headers
    for key, label in _MANDATORY:
        if key not in headers:
            raise _bad(f"Missing {label}")
    for key in _SINGLE:
        if len(headers.get_raw(key)) > 1:
            raise _bad(f"Multiple {key} header fields")  # RFC 4475 multi01
    cseq = message.cseq()
    if method is not None and cseq.method != method:
        raise _bad("CSeq method does not match request method")
    if not _CALL_ID_RE.fullmatch(message.call_id()):
        raise _bad("Bad Call-ID")
    max_forwards = headers.get("max-forwards")
    if max_forwards is not None and not (
        max_forwards.isascii() and max_forwards.isdigit() and int(max_forwards) <= 255
    ):
        raise _bad("Bad Max-Forwards")
    if not message.vias():
        raise _bad("Missing Via")
    for key in ("from", "to"):
        _check_name_addr(headers.get(key) or "")
    for value in headers.get_all("contact"):
        if value != "*":
            _check_name_addr(value)
    date = headers.get("date")
    if date is not None and not _DATE_RE.fullmatch(date):
        raise _bad("Bad Date")


def _check_name_addr(value: str) -> None:
    try:
        parse_name_addr(value)
    except SipError as exc:
        if exc.status != 416:  # a foreign scheme is the higher layers' business
            raise


def _find_blank_line(data: bytes, start: int = 0) -> tuple[int, int]:
    """(end of header section, start of body), or (-1, -1)."""
    idx = data.find(b"\r\n\r\n", start)
    if idx >= 0:
        return idx, idx + 4
    idx = data.find(b"\n\n", start)
    if idx >= 0:
        return idx, idx + 2
    return -1, -1


def parse_message(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Request | Response:
    """Parse one complete message, e.g. a UDP datagram (RFC 3261 §7, §18.3)."""
    if len(data) > limits.max_message_size:
        raise SipError(413, "Request Entity Too Large")
    data = data.lstrip(b"\r\n")
    head_end, body_start = _find_blank_line(data)
    if head_end < 0:
        raise _bad("Missing blank line after headers")
    start, fields = _split_head(data[:head_end], limits)
    headers = Headers(fields)
    length = _content_length(headers)
    body = data[body_start:]
    if length is not None:
        if length > len(body):
            raise _bad("Content-Length larger than message")
        body = body[:length]
    if len(body) > limits.max_body:
        raise SipError(413, "Request Entity Too Large")
    return _build(start, headers, body)


class StreamParser:
    """Frames messages on a TCP/TLS stream by Content-Length (RFC 3261 §18.3)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buffer = bytearray()
        self._scanned = 0
        self._pending: tuple[str, Headers, int, int] | None = None
        self._failed: SipError | None = None

    @property
    def buffered(self) -> int:
        """Octets held while waiting for the rest of a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Request | Response | KeepAlive | BadMessage]:
        """Add received octets; return what they complete. Raises SipError when framing is
        lost (the connection must then be closed; later calls raise the same error)."""
        if self._failed is not None:
            raise self._failed
        self._buffer += data
        out: list[Request | Response | KeepAlive | BadMessage] = []
        try:
            while self._step(out):
                pass
        except SipError as exc:
            self._failed = exc
            self._buffer.clear()
            self._pending = None
            raise
        return out

    def _step(self, out: list[Request | Response | KeepAlive | BadMessage]) -> bool:
        buf = self._buffer
        if self._pending is None:
            if buf[:1] in (b"\r", b"\n"):
                return self._skip_crlf(out)
            head_end, body_start = _find_blank_line(buf, max(0, self._scanned - 3))
            if head_end < 0:
                self._scanned = len(buf)
                if len(buf) > self.limits.max_message_size:
                    raise SipError(413, "Request Entity Too Large")
                return False
            self._scanned = 0
            start, fields = _split_head(bytes(buf[:head_end]), self.limits)
            headers = Headers(fields)
            length = _content_length(headers)
            if length is None:
                raise _bad("Missing Content-Length")
            total = body_start + length
            if total > self.limits.max_message_size or length > self.limits.max_body:
                raise SipError(413, "Request Entity Too Large")
            self._pending = (start, headers, body_start, total)
        start, headers, body_start, total = self._pending
        if len(buf) < total:
            return False
        raw = bytes(buf[:total])
        del buf[:total]
        self._pending = None
        try:
            out.append(_build(start, headers, raw[body_start:]))
        except SipError as exc:
            out.append(BadMessage(exc, raw))
        return True

    def _skip_crlf(self, out: list[Request | Response | KeepAlive | BadMessage]) -> bool:
        buf = self._buffer
        if buf.startswith(b"\r\n\r\n"):
            del buf[:4]
            out.append(KeepAlive())
            return True
        if b"\r\n\r\n".startswith(bytes(buf[:4])):
            return False  # maybe the rest of a ping is on its way
        if buf.startswith(b"\r\n"):
            del buf[:2]  # a pong or stray CRLF (RFC 3261 §7.5 lets it precede a message)
        else:
            del buf[:1]
        return True


# --- building responses -----------------------------------------------------------------------

REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    410: "Gone", 413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 423: "Interval Too Brief", 429: "Provide Referrer Identity",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip


def build_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """A response to ``request`` per RFC 3261 §8.2.6: Via (all, in order), From, To (with
    ``to_tag`` added when it has none), Call-ID, CSeq; Timestamp too for a 100 (§8.2.6.1)."""
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} is not a SIP status code")
    headers = Headers()
    for value in request.headers.get_raw("via"):
        headers.add("Via", value)
    for key, label in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq")):
        value = request.headers.get(key)
        if value is None:
            continue
        if key == "to" and to_tag is not None and "tag" not in _to_params(value):
            value = f"{value};tag={to_tag}"
        headers.add(label, value)
    if status == 100 and (timestamp := request.headers.get("timestamp")) is not None:
        headers.add("Timestamp", timestamp)
    for name, value in extra_headers:
        headers.add(name, value)
    if reason is None:
        reason = REASON_PHRASES.get(status, REASON_PHRASES[status // 100 * 100])
    return Response(status, reason, headers, b"")


def _to_params(value: str) -> dict[str, str | None]:
    try:
        return {k.lower(): v for k, v in parse_name_addr(value).params.items()}
    except SipError:
        return {}
