# SIP digest auth: credentials, nonces, challenges, verification (RFC 7616, 2617, 3261 §22).
"""Digest authentication for SIP requests, sans-IO: the caller passes ``now`` and the HA1.

Server side, in the order the registrar uses it:

* :func:`challenges` / :func:`challenge` build ``WWW-Authenticate`` values (RFC 7616 §3.3),
  SHA-256 first and MD5 second (RFC 7616 §3.7), always ``qop="auth"``.
* :func:`parse_credentials` reads an ``Authorization``/``Proxy-Authorization`` value into
  :class:`Credentials`; anything malformed or unsupported raises :class:`AuthError` (400).
* The caller picks the stored HA1 column from :attr:`Credentials.algorithm`
  (:data:`HA1_COLUMNS`) and, per RFC 2617 §3.2.2.5, checks that :attr:`Credentials.uri`
  names the Request-URI (400 if not).
* :func:`verify` gives a :class:`Verdict`: ``ok``, ``stale`` (answer a fresh challenge with
  ``stale=true``) or ``bad`` (answer 401/403; the reason is for the log and never holds the
  response value).

Decisions:

* Only ``qop=auth``. A response without qop (RFC 2069 compatibility) is refused by
  :func:`verify` (``bad``): it has no cnonce/nc, hence no replay protection, and the clients
  we serve (Zoiper, PJSIP, Linphone) always answer ``qop=auth`` when it is offered.
  ``auth-int``, the ``-sess`` algorithms, ``username*`` and ``userhash=true`` are refused at
  parse time (400): we never offer them.
* Nonces (:class:`NonceManager`) are ``base64(timestamp_ms | epoch | salt | HMAC-SHA256(
  secret, label | timestamp_ms | epoch | salt | realm)[:24])``: checking one needs no server
  state. The 8 random salt bytes keep two nonces issued in the same millisecond apart, so
  nonce-count tracking of one client never collides with another's.
* Nonce counts are tracked in memory only, so a nonce must not outlive the manager that
  tracks it: the ``epoch`` (8 random bytes per manager, i.e. per boot of a node) is signed
  into each nonce, and a nonce of another epoch (before a restart, or from another node
  sharing the key) is ``stale``, never ``valid``. A captured request replayed after a
  restart gets a fresh challenge with ``stale=true`` (RFC 7616 §3.3: the client retries with
  the new nonce without asking its user, so apps are not refused after a restart) and binds
  nothing.
* ``stale`` is only answered when the response was right for the expired nonce (RFC 7616
  §3.3: the client then retries without asking its user again); a wrong response to an
  expired nonce is ``bad``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from gateway.errors import GatewayError
from gateway.secrets import DigestAlgorithm

MAX_HEADER_LENGTH = 4096
"""Longest credentials header value accepted, in characters (rule 5: every input bounded)."""
MAX_PARAMS = 32
"""Most auth-params in one credentials value."""
MAX_NONCE_LENGTH = 256
"""Longest nonce :meth:`NonceManager.check` will decode (ours are 64 characters)."""
EPOCH_BYTES = 8
"""Length of a :class:`NonceManager` epoch (random per boot)."""

HA1_COLUMNS: dict[DigestAlgorithm, str] = {"MD5": "sip_ha1_md5", "SHA-256": "sip_ha1_sha256"}
"""The account column holding the HA1 for each digest algorithm."""
CHALLENGE_ALGORITHMS: tuple[DigestAlgorithm, ...] = ("SHA-256", "MD5")
"""Algorithms offered, in RFC 7616 §3.7 order (preferred first)."""

_HASHES: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256"}
_HEX_LENGTHS: dict[str, int] = {"MD5": 32, "SHA-256": 64}

NonceState = Literal["valid", "stale", "invalid"]


class AuthError(GatewayError):
    """A credentials header that cannot be used: answer ``status`` (400 Bad Request)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}")


# --- credentials -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """The digest response of a client (RFC 7616 §3.4). Its repr hides ``response``."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str = field(repr=False)
    """Lowercase hex request-digest; never logged."""
    algorithm: DigestAlgorithm = "MD5"
    """RFC 2617 §3.2.2: MD5 when the client names none."""
    cnonce: str | None = None
    opaque: str | None = None
    qop: Literal["auth"] | None = None
    nc: str | None = None
    """The nonce count as sent (8 hex digits); it enters the digest verbatim."""

    @property
    def nonce_count(self) -> int | None:
        """The nonce count as a number, for replay protection."""
        return int(self.nc, 16) if self.nc is not None else None


_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_TOKEN_RE = re.compile(rf"{_TCHAR}+")
# qdtext and quoted-pair (RFC 3261 §25.1), without control characters or lone surrogates.
_TEXT = r"\t\x20-\x7e\xa0-\ud7ff\ue000-\U0010ffff"
_QDTEXT = r"\t\x20\x21\x23-\x5b\x5d-\x7e\xa0-\ud7ff\ue000-\U0010ffff"
_VALUE_RE = re.compile(rf'"((?:[{_QDTEXT}]|\\[{_TEXT}])*)"|({_TCHAR}+)')
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_FOLD_RE = re.compile(r"\r?\n[ \t]+")
_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")
_REQUIRED = ("username", "realm", "nonce", "uri", "response")


def _shown(value: str, limit: int = 32) -> str:
    """A client-supplied value safe to put in a reason: repr'd and truncated."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _skip_ows(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _parse_params(text: str, pos: int) -> dict[str, str]:
    """The auth-params of ``text`` from ``pos``: lowercase names to unescaped values."""
    params: dict[str, str] = {}
    end = len(text)
    while True:
        # empty list elements and surrounding whitespace are allowed (RFC 7230 §7)
        while pos < end and text[pos] in " \t,":
            pos += 1
        if pos >= end:
            return params
        name_match = _TOKEN_RE.match(text, pos)
        if name_match is None:
            raise AuthError(f"expected a parameter name at character {pos + 1}")
        name = name_match.group().lower()
        pos = _skip_ows(text, name_match.end())
        if pos >= end or text[pos] != "=":
            raise AuthError(f"parameter {_shown(name)} has no '=' and value")
        pos = _skip_ows(text, pos + 1)
        value_match = _VALUE_RE.match(text, pos)
        if value_match is None:
            if text.startswith('"', pos):
                raise AuthError(
                    f"parameter {_shown(name)}: unterminated quoted string "
                    "or control character in it"
                )
            raise AuthError(f"parameter {_shown(name)}: value is neither a token nor quoted")
        quoted, token = value_match.groups()
        value = _ESCAPE_RE.sub(r"\1", quoted) if quoted is not None else token
        if name in params:
            raise AuthError(f"parameter {_shown(name)} appears twice")
        if len(params) >= MAX_PARAMS:
            raise AuthError(f"more than {MAX_PARAMS} parameters")
        params[name] = value
        pos = _skip_ows(text, value_match.end())
        if pos < end and text[pos] != ",":
            raise AuthError(f"expected ',' after parameter {_shown(name)}")


def _algorithm(value: str | None) -> DigestAlgorithm:
    if value is None:
        return "MD5"
    upper = value.upper()
    if upper == "MD5":
        return "MD5"
    if upper == "SHA-256":
        return "SHA-256"
    if upper.endswith("-SESS"):
        raise AuthError(
            f"algorithm {_shown(value)} is not supported: session variants are not offered, "
            "use MD5 or SHA-256"
        )
    raise AuthError(f"algorithm {_shown(value)} is not supported: use SHA-256 or MD5")


def parse_credentials(header_value: str) -> Credentials:
    """The Digest credentials in an ``Authorization``/``Proxy-Authorization`` value.

    Parameter names are case-insensitive and in any order; values are tokens or quoted
    strings with ``\\`` escapes; unknown parameters are ignored (RFC 7616 §3.4). Raises
    :class:`AuthError` (400) for anything malformed or unsupported.
    """
    if len(header_value) > MAX_HEADER_LENGTH:
        raise AuthError(f"credentials longer than {MAX_HEADER_LENGTH} characters")
    text = _FOLD_RE.sub(" ", header_value).strip(" \t")
    scheme_match = _TOKEN_RE.match(text)
    if scheme_match is None:
        raise AuthError("credentials do not start with an auth scheme")
    scheme = scheme_match.group()
    if scheme.lower() != "digest":
        raise AuthError(f"auth scheme {_shown(scheme)} is not supported: use Digest")
    pos = scheme_match.end()
    if pos < len(text) and text[pos] not in " \t":
        raise AuthError("expected a space after Digest")
    params = _parse_params(text, pos)

    if "username*" in params:
        raise AuthError("username* (RFC 7616 §3.4.4) is not supported: send username")
    if params.get("userhash", "false").lower() != "false":
        raise AuthError("userhash is not supported: send the username in clear")
    for name in _REQUIRED:
        if not params.get(name):
            raise AuthError(f"parameter {name} is missing or empty")
    algorithm = _algorithm(params.get("algorithm"))

    response = params["response"]
    digits = _HEX_LENGTHS[algorithm]
    if len(response) != digits or not _HEX_RE.fullmatch(response):
        raise AuthError(f"response is not {digits} hex digits as {algorithm} needs")

    qop = params.get("qop")
    cnonce = params.get("cnonce")
    nc = params.get("nc")
    if qop is None:
        if cnonce is not None or nc is not None:
            raise AuthError("cnonce and nc are only allowed with qop")
    else:
        if qop.lower() != "auth":
            raise AuthError(f"qop {_shown(qop)} is not supported: use auth")
        if not cnonce:
            raise AuthError("qop=auth needs a non-empty cnonce")
        if nc is None or not _NC_RE.fullmatch(nc):
            raise AuthError("qop=auth needs nc as 8 hex digits")

    return Credentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=response.lower(),
        algorithm=algorithm,
        cnonce=cnonce,
        opaque=params.get("opaque"),
        qop="auth" if qop is not None else None,
        nc=nc,
    )


def _quote(value: str, what: str) -> str:
    """``value`` as a quoted-string; ValueError for characters that cannot be sent."""
    if not re.fullmatch(f"[{_TEXT}]*", value):
        raise ValueError(f"{what} has a character that cannot appear in a quoted string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_credentials(credentials: Credentials) -> str:
    """An ``Authorization`` value for ``credentials`` (for our UAC and for tests)."""
    c = credentials
    parts = [
        f"username={_quote(c.username, 'username')}",
        f"realm={_quote(c.realm, 'realm')}",
        f"nonce={_quote(c.nonce, 'nonce')}",
        f"uri={_quote(c.uri, 'uri')}",
        f'response="{c.response}"',
        f"algorithm={c.algorithm}",
    ]
    if c.cnonce is not None:
        parts.append(f"cnonce={_quote(c.cnonce, 'cnonce')}")
    if c.opaque is not None:
        parts.append(f"opaque={_quote(c.opaque, 'opaque')}")
    if c.qop is not None:
        parts.append(f"qop={c.qop}")
    if c.nc is not None:
        parts.append(f"nc={c.nc}")
    return "Digest " + ", ".join(parts)


# --- challenges ------------------------------------------------------------------------------


def challenge(
    realm: str,
    nonce: str,
    *,
    algorithm: DigestAlgorithm,
    stale: bool = False,
    opaque: str | None = None,
) -> str:
    """A ``WWW-Authenticate``/``Proxy-Authenticate`` value (RFC 7616 §3.3), qop="auth"."""
    if algorithm not in _HASHES:
        raise ValueError(f"{algorithm!r} is not a digest algorithm: use MD5 or SHA-256")
    parts = [f"realm={_quote(realm, 'realm')}", f"nonce={_quote(nonce, 'nonce')}"]
    if opaque is not None:
        parts.append(f"opaque={_quote(opaque, 'opaque')}")
    parts += [f"algorithm={algorithm}", 'qop="auth"']
    if stale:
        parts.append("stale=true")
    return "Digest " + ", ".join(parts)


def challenges(
    realm: str,
    nonce: str,
    *,
    stale: bool = False,
    opaque: str | None = None,
    algorithms: Sequence[DigestAlgorithm] = CHALLENGE_ALGORITHMS,
) -> list[str]:
    """One challenge per algorithm, in the order given (preferred first, RFC 7616 §3.7);
    by default :data:`CHALLENGE_ALGORITHMS`, SHA-256 first."""
    return [
        challenge(realm, nonce, algorithm=alg, stale=stale, opaque=opaque) for alg in algorithms
    ]


# --- nonces ----------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_NONCE_LABEL = b"gateway sip digest nonce\x00"
_SALT_BYTES = 8
_MAC_BYTES = 24  # HMAC-SHA256 truncated to 192 bits (RFC 2104 §5 allows it): 64-character nonces
_NONCE_BYTES = 8 + EPOCH_BYTES + _SALT_BYTES + _MAC_BYTES
_SALT_AT = 8 + EPOCH_BYTES
_MAC_AT = _SALT_AT + _SALT_BYTES
_FUTURE_SKEW_MS = 1000


def _millis(now: datetime) -> int:
    """Milliseconds since the epoch; a naive ``now`` is taken as UTC (rule 9)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return (now - _EPOCH) // _MS


def _decode_nonce(nonce: str) -> bytes | None:
    """The bytes of a nonce shaped like ours (not yet authenticated), or None."""
    if len(nonce) > MAX_NONCE_LENGTH:
        return None
    try:
        raw = base64.b64decode(nonce, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == _NONCE_BYTES else None


class NonceChecker(Protocol):
    """What :func:`verify` needs of nonces; tests may pass a stub."""

    def check(self, nonce: str, now: datetime, realm: str) -> NonceState: ...

    def use(self, nonce: str, nc: int, now: datetime) -> bool: ...


class NonceManager:
    """Issues nonces that verify without server state, and tracks nonce counts for replay.

    ``check`` needs only the secret and the epoch: a nonce signed with the secret but issued
    under another epoch (a previous boot, another node) is ``stale``, since this manager never
    saw its nonce counts. ``use`` remembers the highest nc seen per nonce for at
    most ``lifetime`` after its first use (a nonce is stale by then anyway) and at most
    ``max_tracked`` nonces; when that cap evicts a nonce, every untracked nonce issued no
    later than it is refused from then on, so eviction never reopens a replay.
    """

    def __init__(
        self,
        secret: bytes,
        lifetime: timedelta = timedelta(minutes=5),
        max_tracked: int = 100_000,
        *,
        entropy: Callable[[int], bytes] = os.urandom,
        epoch: bytes | None = None,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the nonce secret needs at least 16 bytes")
        if lifetime <= timedelta(0):
            raise ValueError("the nonce lifetime must be positive")
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self._secret = secret
        self._lifetime_ms = lifetime // _MS
        self._max_tracked = max_tracked
        self._entropy = entropy
        self.epoch = entropy(EPOCH_BYTES) if epoch is None else epoch
        """Signed into every nonce issued here; random per manager (per boot)."""
        if len(self.epoch) != EPOCH_BYTES:
            raise ValueError(f"the nonce epoch must be {EPOCH_BYTES} bytes")
        # nonce -> (first use in ms, issue time in ms, highest nc); oldest first use first
        self._seen: OrderedDict[str, tuple[int, int, int]] = OrderedDict()
        self._evicted_up_to: int | None = None

    def __len__(self) -> int:
        """How many nonces are tracked for nonce counts."""
        return len(self._seen)

    def _mac(self, signed: bytes, realm: str) -> bytes:
        data = _NONCE_LABEL + signed + realm.encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, data, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue(self, now: datetime, realm: str) -> str:
        """A fresh nonce for ``realm`` (64 base64 characters)."""
        stamp = _millis(now).to_bytes(8, "big", signed=True)
        signed = stamp + self.epoch + self._entropy(_SALT_BYTES)
        return base64.b64encode(signed + self._mac(signed, realm)).decode("ascii")

    def check(self, nonce: str, now: datetime, realm: str) -> NonceState:
        """``valid``; ``stale`` when older than the lifetime (or from a clock that went
        back) or issued under another epoch (before a restart, or by another node sharing
        the secret); ``invalid`` when not issued by this secret for ``realm``."""
        raw = _decode_nonce(nonce)
        if raw is None or not hmac.compare_digest(raw[_MAC_AT:], self._mac(raw[:_MAC_AT], realm)):
            return "invalid"
        if not hmac.compare_digest(raw[8:_SALT_AT], self.epoch):
            return "stale"  # its nonce counts were tracked elsewhere: never valid here
        age = _millis(now) - int.from_bytes(raw[:8], "big", signed=True)
        if age > self._lifetime_ms or age < -_FUTURE_SKEW_MS:
            return "stale"
        return "valid"

    def use(self, nonce: str, nc: int, now: datetime) -> bool:
        """Record nonce count ``nc`` for ``nonce``; False if it is not above the last one.

        Call it only for a nonce :meth:`check` found valid and a response that verified.
        """
        now_ms = _millis(now)
        self._forget_older_than(now_ms - self._lifetime_ms)
        seen = self._seen.get(nonce)
        if seen is None:
            raw = _decode_nonce(nonce)
            if raw is None or raw[8:_SALT_AT] != self.epoch:
                return False  # not ours, or of another epoch: its counts are unknown here
            issued = int.from_bytes(raw[:8], "big", signed=True)
            if self._evicted_up_to is not None and issued <= self._evicted_up_to:
                return False
            if nc < 1:
                return False
            while len(self._seen) >= self._max_tracked:
                _, (_, evicted_issue, _) = self._seen.popitem(last=False)
                if self._evicted_up_to is None or evicted_issue > self._evicted_up_to:
                    self._evicted_up_to = evicted_issue
            # kept until the nonce is surely stale, even if it came from a clock ahead of ours
            self._seen[nonce] = (max(now_ms, issued), issued, nc)
            return True
        first_use, issued, last_nc = seen
        if nc <= last_nc:
            return False
        self._seen[nonce] = (first_use, issued, nc)
        return True

    def _forget_older_than(self, limit_ms: int) -> None:
        while self._seen:
            nonce, (first_use, _, _) = next(iter(self._seen.items()))
            if first_use >= limit_ms:
                return
            del self._seen[nonce]


# --- responses -------------------------------------------------------------------------------


def _h(hash_name: str, text: str) -> str:
    return hashlib.new(
        hash_name, text.encode("utf-8", "surrogatepass"), usedforsecurity=False
    ).hexdigest()


def _digest(
    algorithm: str,
    ha1: str,
    *,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None,
    nc: str | None,
    cnonce: str | None,
) -> str:
    hash_name = _HASHES[algorithm]
    ha2 = _h(hash_name, f"{method}:{uri}")
    if qop is None:
        return _h(hash_name, f"{ha1}:{nonce}:{ha2}")
    return _h(hash_name, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def response_for(
    ha1: str,
    *,
    algorithm: DigestAlgorithm,
    method: str,
    uri: str,
    nonce: str,
    qop: Literal["auth"] | None = "auth",
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The request-digest a client sends (RFC 7616 §3.4.1; RFC 2069 form when qop is None).

    ``ha1`` is :func:`gateway.secrets.ha1` of the user's password; ``nc`` is formatted as 8
    lowercase hex digits.
    """
    if algorithm not in _HASHES:
        raise ValueError(f"{algorithm!r} is not a digest algorithm: use MD5 or SHA-256")
    if qop is not None and cnonce is None:
        raise ValueError("qop=auth needs a cnonce")
    return _digest(
        algorithm,
        ha1.lower(),
        method=method,
        uri=uri,
        nonce=nonce,
        qop=qop,
        nc=f"{nc:08x}" if qop is not None else None,
        cnonce=cnonce if qop is not None else None,
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of :func:`verify`; ``reason`` is for the log."""

    outcome: Literal["ok", "stale", "bad"]
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Whether the request is authenticated."""
        return self.outcome == "ok"


def verify(
    credentials: Credentials,
    *,
    method: str,
    ha1: str,
    nonces: NonceChecker,
    realm: str,
    now: datetime,
) -> Verdict:
    """Check ``credentials`` for a request with ``method`` against the stored ``ha1``.

    ``ha1`` must be the value for ``credentials.algorithm`` (:data:`HA1_COLUMNS`).
    The digest is compared in constant time; the nonce count is recorded only for a
    response that verified on a valid nonce.
    """
    c = credentials
    if c.algorithm not in _HASHES:
        return Verdict("bad", f"unknown algorithm {_shown(str(c.algorithm))}")
    if c.realm != realm:
        return Verdict("bad", f"realm mismatch: got {_shown(c.realm)}")
    if c.qop != "auth" or c.cnonce is None or c.nc is None or not _NC_RE.fullmatch(c.nc):
        return Verdict("bad", "no qop=auth: RFC 2069 digest without qop is not accepted")
    stored = ha1.lower()
    if len(stored) != _HEX_LENGTHS[c.algorithm] or not _HEX_RE.fullmatch(stored):
        return Verdict("bad", f"no usable {c.algorithm} HA1 stored for this user")
    state = nonces.check(c.nonce, now, realm)
    if state == "invalid":
        return Verdict("bad", "invalid nonce (not issued here for this realm)")
    expected = _digest(
        c.algorithm,
        stored,
        method=method,
        uri=c.uri,
        nonce=c.nonce,
        qop=c.qop,
        nc=c.nc,
        cnonce=c.cnonce,
    )
    given = c.response.lower().encode("ascii", "replace")
    if not hmac.compare_digest(expected.encode("ascii"), given):
        return Verdict("bad", "wrong response (password or HA1 mismatch)")
    if state == "stale":
        return Verdict("stale", "nonce expired; the response was right")
    count = int(c.nc, 16)
    if not nonces.use(c.nonce, count, now):
        return Verdict("bad", f"replayed nonce count {count}")
    return Verdict("ok")
