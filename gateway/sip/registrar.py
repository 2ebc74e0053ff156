# SIP registrar: REGISTER per RFC 3261 §10.3 (steps 1-2 as checks, 5-8 as bindings), sans-IO.
"""The location service of the gateway: which contacts each account is registered at.

The server runs §10.3 in order: step 1 :func:`serves_domain` (a Request-URI naming another
domain is 404, RFC 3261 §21.4.5: "the domain in the Request-URI does not match any of the
domains handled by the recipient"; the gateway is no proxy, so it does not forward), step 2
:func:`unsupported_options` (420 Bad Extension with Unsupported, §8.2.2.3; also for MESSAGE),
step 3 digest, step 4 To = the account, then :func:`foreign_contact` (403 for a Contact
naming a host other than the REGISTER's source, unless in ``sip.contact_networks``: the
gateway only delivers over the registration's own flow, and refuses contacts that could
make it reach elsewhere).

``Bindings.register`` applies one REGISTER that has already passed those checks to the
bindings held in memory and returns a ``RegisterResult`` with the status, the extra response headers
and the bindings before and after, so the caller can persist them and answer only once they
are committed (or ``restore`` the previous ones if the commit fails). Nothing here does I/O
or reads a clock: ``now`` is a parameter.

Decisions beyond RFC 3261's text:

* Every check happens before anything changes, so any error leaves the bindings untouched.
* Contacts are compared per §19.1.4 (:func:`same_uri`): scheme and host without case,
  userinfo with case, escapes of unreserved characters equal to the characters, parameters in
  any order, ``transport``/``user``/``ttl``/``method``/``maddr`` compared when present in
  either URI, other parameters only when present in both, headers always, an absent port
  never equal to an explicit 5060. A Contact equivalent to a held binding updates it (stored
  in the new wire form); one equivalent to several (they can differ in a parameter only one
  of them has) updates all of them into one. The relation is not transitive, so bindings are
  kept under their wire form and matched by scanning the account's few bindings.
* ``Contact: *`` (with ``Expires: 0`` only, as the sole value) removes every binding of the
  account, after the Call-ID/CSeq check of step 6 against each of them.
* The same contact twice in one request: the last one counts.
* An expiry above ``max_expires`` is lowered to it; a non-zero one below ``min_expires`` is
  answered 423 with Min-Expires (step 7); above 2**32-1 counts as 2**32-1 (§20.19).
* More than ``max_contacts`` bindings after the request is 403 and changes nothing.
* A Contact URI longer than 512 characters or a Call-ID longer than 255 is 400 (the store's
  column sizes); a User-Agent is kept to its first 255 characters.
* The 200 lists every current binding with the seconds it has left (rounded up) and its q.
"""

from __future__ import annotations

import heapq
import ipaddress
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import lru_cache

from gateway.sip.message import Request, SipError, Uri, parse_name_addr, parse_uri

TRANSPORTS = frozenset({"udp", "tcp", "tls"})
MAX_CONTACT_LENGTH = 512
MAX_CALL_ID_LENGTH = 255
MAX_USER_AGENT_LENGTH = 255
MAX_DELTA_SECONDS = 2**32 - 1

_DIGITS_RE = re.compile(r"[0-9]+")
_QVALUE_RE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SUPPORTED_OPTIONS: frozenset[str] = frozenset()
"""Option tags (RFC 3261 §19.2) the gateway supports in Require: none."""
MAX_UNSUPPORTED = 16
"""Most option tags listed in one Unsupported header (rule 5)."""
_OPTION_TAG_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]{1,64}")


# -- §10.3 steps 1-2 and the contact host ---------------------------------------------------
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP literal (IPv4-mapped IPv6 as IPv4), or None for a name."""
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def serves_domain(uri: Uri, domain: str, addresses: Iterable[str]) -> bool:
    """§10.3 step 1: whether a Request-URI names our domain or one of our ``addresses``."""
    if uri.host.lower() == domain.lower():
        return True
    ip = _ip(uri.host)
    return ip is not None and any(ip == _ip(address) for address in addresses)


def unsupported_options(
    request: Request, supported: frozenset[str] = SUPPORTED_OPTIONS
) -> list[str]:
    """§10.3 step 2 / §8.2.2.3: the Require option tags not in ``supported``, in order and
    once each (at most :data:`MAX_UNSUPPORTED`), for a 420's Unsupported header. A value that
    is not an option tag (a token of at most 64 characters) is SipError 400."""
    found: list[str] = []
    for tag in request.headers.get_all("require"):
        tag = tag.strip()
        if not tag:
            continue
        if not _OPTION_TAG_RE.fullmatch(tag):
            raise SipError(400, "Bad Request (Require is not a list of option tags)")
        if tag not in supported and tag not in found and len(found) < MAX_UNSUPPORTED:
            found.append(tag)
    return found


def foreign_contact(
    request: Request, source: tuple[str, int], networks: Sequence[IpNetwork] = ()
) -> str | None:
    """The first Contact host of a REGISTER that is neither the source address of the
    request nor in ``networks`` (None when all are fine). ``*`` and contacts being removed
    (expires 0) are never foreign: removing can reach nothing. Malformed values are left to
    :meth:`Bindings.register`, which answers them."""
    source_ip = _ip(source[0])
    header_expires = (request.headers.get("expires") or "").strip()
    for value in request.headers.get_all("contact"):
        if value.strip() == "*":
            continue
        try:
            name_addr = parse_name_addr(value)
        except SipError:
            continue
        present, text = _param(name_addr.params, "expires")
        removing = (text or "").strip() == "0" if present else header_expires == "0"
        if removing:
            continue
        host = name_addr.uri.host
        ip = _ip(host)
        if ip is not None and (ip == source_ip or any(ip in net for net in networks)):
            continue
        return host
    return None


# -- §19.1.4 URI comparison -------------------------------------------------------------------
_ESCAPED_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_KEEP_ESCAPED = frozenset(";/?:@&=+$,%")  # RFC 2396 reserved characters, and % itself
_ALWAYS_COMPARED = frozenset({"transport", "user", "ttl", "method", "maddr"})

_UriKey = tuple[
    str, str | None, str | None, str, int | None, dict[str, str | None], tuple[str, ...]
]


def _unescape(text: str | None) -> str | None:
    """Escapes of characters outside the reserved set become the characters (§19.1.4); the
    others stay escaped, in upper case hex."""
    if text is None:
        return None

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return f"%{match.group(1).upper()}" if char in _KEEP_ESCAPED else char

    return _ESCAPED_RE.sub(one, text)


def _host_key(host: str) -> str:
    ip = _ip(host) if ":" in host else None  # IPv6 literals in any of their spellings
    return str(ip) if ip is not None else host.lower()


@lru_cache(maxsize=4096)
def _uri_key(text: str) -> _UriKey:
    """What §19.1.4 compares of a URI, normalised (a held contact is parsed once)."""
    uri = parse_uri(text)
    params: dict[str, str | None] = {}
    for name, value in uri.params.items():
        value = _unescape(value)
        params[(_unescape(name) or "").lower()] = None if value is None else value.lower()
    headers: list[str] = []
    for item in (uri.headers or "").split("&"):
        if item:
            name, _, value = item.partition("=")
            headers.append(f"{(_unescape(name) or '').lower()}={_unescape(value)}")
    return (
        uri.scheme,
        _unescape(uri.user),
        _unescape(uri.password),
        _host_key(uri.host),
        uri.port,
        params,
        tuple(sorted(headers)),
    )


def same_uri(one: str | Uri, other: str | Uri) -> bool:
    """Whether two SIP URIs are equivalent per RFC 3261 §19.1.4."""
    a = _uri_key(str(one))
    b = _uri_key(str(other))
    if a[:5] != b[:5] or a[6] != b[6]:
        return False
    params_a, params_b = a[5], b[5]
    for name in params_a.keys() | params_b.keys():
        if name in params_a and name in params_b:
            if params_a[name] != params_b[name]:
                return False
        elif name in _ALWAYS_COMPARED:
            return False
    return True


def _same_or_unparsable(one: str, other: str) -> bool:
    """same_uri, False when either is not a URI (a held contact always is one)."""
    try:
        return same_uri(one, other)
    except SipError:
        return False


@dataclass(frozen=True, slots=True)
class Binding:
    """One registered contact of an account (RFC 3261 §10.3 step 8)."""

    account: int  # accounts.id
    aor: str  # the account's account_id, for display
    contact: str  # the Contact URI in wire form: the binding's identity within the account
    expires_at: datetime  # UTC
    call_id: str
    cseq: int
    q: float | None
    transport: str  # "udp" | "tcp" | "tls": what the REGISTER arrived on
    source: tuple[str, int]  # address and port the REGISTER came from (after NAT)
    user_agent: str | None
    updated_at: datetime  # UTC

    @property
    def priority(self) -> float:
        """q, with an absent q counting as 1.0 (RFC 3261 §10.2.1.2)."""
        return 1.0 if self.q is None else self.q


@dataclass(frozen=True, slots=True)
class RegisterResult:
    """What the server answers and persists after one REGISTER."""

    status: int  # 200, or the error status
    reason: str
    headers: tuple[tuple[str, str], ...]  # extra response headers (Contact..., Date; Min-Expires)
    changed: bool  # bindings of the account changed: persist ``current``
    current: tuple[Binding, ...]  # the account's bindings after the request, best first
    previous: tuple[Binding, ...]  # the account's bindings before it (to restore on failure)


class _Refused(Exception):
    """An answer other than 200, with its extra headers; never leaves this module."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers = headers


@dataclass(frozen=True, slots=True)
class _Wanted:
    """One Contact value of a REGISTER, validated."""

    contact: str
    expires: int  # seconds, already clamped; 0 removes
    q: float | None


def _order(binding: Binding) -> tuple[float, float, str]:
    return (-binding.priority, -binding.updated_at.timestamp(), binding.contact)


def _delta_seconds(text: str, what: str) -> int:
    text = text.strip()
    if not _DIGITS_RE.fullmatch(text):
        raise _Refused(400, f"Bad {what}")
    if len(text) > 10:
        return MAX_DELTA_SECONDS
    return min(int(text), MAX_DELTA_SECONDS)


def _param(params: dict[str, str | None], name: str) -> tuple[bool, str | None]:
    """(present, value) of a header parameter by case-insensitive name."""
    for key, value in params.items():
        if key.lower() == name:
            return True, value
    return False, None


def _check_now(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError(f"naive datetime {now!r}: the registrar runs on UTC")
    return now.astimezone(UTC)


class Bindings:
    """Every account's bindings, and a heap of their expiry times for ``expire``."""

    def __init__(
        self,
        *,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        max_contacts: int = 10,
    ) -> None:
        if not 0 < min_expires <= max_expires:
            raise ValueError("need 0 < min_expires <= max_expires")
        if not min_expires <= default_expires <= max_expires:
            raise ValueError("default_expires must be within min_expires and max_expires")
        if max_contacts < 1:
            raise ValueError("max_contacts must be at least 1")
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_contacts = max_contacts
        self._by_account: dict[int, dict[str, Binding]] = {}
        self._count = 0
        # (expires_at, tie-breaker, binding); stale entries (refreshed or removed bindings) are
        # skipped when popped, and the heap is rebuilt when they outnumber the live ones.
        self._heap: list[tuple[datetime, int, Binding]] = []
        self._pushed = 0

    # -- reading ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Binding]:
        for held in self._by_account.values():
            yield from held.values()

    def contacts(self, account: int, now: datetime) -> list[Binding]:
        """Live bindings (``expires_at > now``), highest q first, then most recently updated."""
        now = _check_now(now)
        held = self._by_account.get(account, {})
        return sorted((b for b in held.values() if b.expires_at > now), key=_order)

    def held(self, account: int) -> tuple[Binding, ...]:
        """Every binding held for ``account``, expired or not yet removed ones included."""
        return tuple(sorted(self._by_account.get(account, {}).values(), key=_order))

    def accounts_with_bindings(self) -> frozenset[int]:
        return frozenset(self._by_account)

    # -- REGISTER -------------------------------------------------------------------------
    def register(
        self,
        account: int,
        aor: str,
        request: Request,
        *,
        transport: str,
        source: tuple[str, int],
        now: datetime,
    ) -> RegisterResult:
        """Apply one authenticated REGISTER for ``account``; errors only as the result's status."""
        now = _check_now(now)
        if transport not in TRANSPORTS:
            raise ValueError(f"transport {transport!r} is not one of {sorted(TRANSPORTS)}")
        source = (source[0], source[1])  # an IPv6 socket address may carry flow info and scope
        old = self._by_account.get(account, {})
        previous = tuple(sorted(old.values(), key=_order))
        try:
            new = self._apply(account, aor, request, old, transport, source, now)
        except _Refused as refused:
            return RegisterResult(
                refused.status, refused.reason, refused.headers, False, previous, previous
            )
        except SipError as exc:
            return RegisterResult(exc.status, exc.reason, (), False, previous, previous)
        if new is None:  # a query: nothing changes
            current = tuple(self.contacts(account, now))
            changed = False
        else:
            current = tuple(sorted(new.values(), key=_order))
            changed = new != old
            if changed:
                self._replace(account, current)
        headers = self._ok_headers(current, now)
        return RegisterResult(200, "OK", headers, changed, current, previous)

    def _apply(
        self,
        account: int,
        aor: str,
        request: Request,
        old: dict[str, Binding],
        transport: str,
        source: tuple[str, int],
        now: datetime,
    ) -> dict[str, Binding] | None:
        """The account's bindings after ``request`` (None for a query); raises to refuse."""
        values = request.headers.get_all("contact")
        expires_text = request.headers.get("expires")
        header_expires = None
        if expires_text is not None:
            header_expires = _delta_seconds(expires_text, "Expires")
        call_id = request.call_id()
        cseq = request.cseq().number
        if len(call_id) > MAX_CALL_ID_LENGTH:
            raise _Refused(400, "Call-ID too long")
        live = {c: b for c, b in old.items() if b.expires_at > now}
        if "*" in values:
            if len(values) != 1:
                raise _Refused(400, "Contact * must be the only Contact")
            if header_expires != 0:
                raise _Refused(400, "Contact * requires Expires: 0")
            self._check_order(live.values(), call_id, cseq)
            return {}
        if not values:
            return None
        wanted = self._wanted(values, header_expires)
        for item in wanted.values():
            if 0 < item.expires < self.min_expires:
                raise _Refused(423, "Interval Too Brief", (("Min-Expires", str(self.min_expires)),))
        matched = {item.contact: self._matching(live, item.contact) for item in wanted.values()}
        self._check_order((live[c] for found in matched.values() for c in found), call_id, cseq)
        user_agent = request.headers.get("user-agent")
        if user_agent is not None:
            user_agent = user_agent[:MAX_USER_AGENT_LENGTH]
        new = live
        for item in wanted.values():
            for contact in matched[item.contact]:
                new.pop(contact, None)
            if item.expires == 0:
                continue
            new[item.contact] = Binding(
                account=account,
                aor=aor,
                contact=item.contact,
                expires_at=now + timedelta(seconds=item.expires),
                call_id=call_id,
                cseq=cseq,
                q=item.q,
                transport=transport,
                source=source,
                user_agent=user_agent,
                updated_at=now,
            )
        if len(new) > self.max_contacts:
            raise _Refused(403, f"Too many contacts (at most {self.max_contacts} per account)")
        return new

    @staticmethod
    def _matching(held: dict[str, Binding], contact: str) -> list[str]:
        """The held contacts equivalent to ``contact`` (§19.1.4)."""
        return [c for c in held if c == contact or _same_or_unparsable(c, contact)]

    def _wanted(self, values: list[str], header_expires: int | None) -> dict[str, _Wanted]:
        """Contact values -> validated (URI, expiry, q), keyed by URI; of equivalent ones
        (§19.1.4) the last one wins."""
        wanted: dict[str, _Wanted] = {}
        for value in values:
            try:
                name_addr = parse_name_addr(value)
            except SipError as exc:
                if exc.status == 416:
                    raise _Refused(416, "Unsupported URI Scheme") from None
                raise
            uri = name_addr.uri
            if uri.scheme not in ("sip", "sips"):
                raise _Refused(416, "Unsupported URI Scheme")
            contact = str(uri)
            if len(contact) > MAX_CONTACT_LENGTH:
                raise _Refused(400, "Contact URI too long")
            present, text = _param(name_addr.params, "expires")
            if present:
                expires = _delta_seconds(text or "", "Contact expires")
            elif header_expires is not None:
                expires = header_expires
            else:
                expires = self.default_expires
            present, text = _param(name_addr.params, "q")
            q = None
            if present:
                if text is None or not _QVALUE_RE.fullmatch(text):
                    raise _Refused(400, "Bad Contact q (0 to 1, three decimals at most)")
                q = float(text)
            for earlier in [c for c in wanted if same_uri(c, contact)]:
                del wanted[earlier]
            wanted[contact] = _Wanted(contact, min(expires, self.max_expires), q)
        return wanted

    @staticmethod
    def _check_order(bindings: Iterable[Binding], call_id: str, cseq: int) -> None:
        """§10.3 step 6: a binding from the same Call-ID needs a higher CSeq."""
        for binding in bindings:
            if binding.call_id == call_id and cseq <= binding.cseq:
                raise _Refused(500, "Out of order REGISTER (CSeq not higher than before)")

    def _ok_headers(
        self, current: tuple[Binding, ...], now: datetime
    ) -> tuple[tuple[str, str], ...]:
        headers: list[tuple[str, str]] = []
        for binding in current:
            left = max(0, math.ceil((binding.expires_at - now).total_seconds()))
            value = f"<{binding.contact}>;expires={left}"
            if binding.q is not None:
                value += f";q={binding.q:g}"
            headers.append(("Contact", value))
        headers.append(("Date", format_datetime(now, usegmt=True)))
        return tuple(headers)

    # -- changing what is held ------------------------------------------------------------
    def restore(
        self,
        account: int,
        bindings: Iterable[Binding],
        *,
        if_current: Iterable[Binding] | None = None,
    ) -> bool:
        """Replace the account's bindings (a rollback after a failed commit).

        With ``if_current``, only when the account still holds exactly those bindings (no
        later REGISTER has changed them meanwhile); returns whether it replaced them."""
        if if_current is not None:
            held = self._by_account.get(account, {})
            expected = {b.contact: b for b in if_current}
            if held != expected:
                return False
        self._replace(account, bindings)
        return True

    def load(self, bindings: Iterable[Binding]) -> None:
        """Add bindings read from the store at start; of equivalent contacts (§19.1.4, e.g.
        stored before contacts were compared so) the most recently updated one is kept."""
        for binding in bindings:
            held = self._by_account.setdefault(binding.account, {})
            twins = self._matching(held, binding.contact)
            if any(held[c].updated_at > binding.updated_at for c in twins):
                continue
            for contact in twins:
                del held[contact]
                self._count -= 1
            held[binding.contact] = binding
            self._count += 1
            self._push(binding)

    def remove_account(self, account: int) -> tuple[Binding, ...]:
        """Forget every binding of ``account`` (e.g. the account was deleted or disabled)."""
        gone = self.held(account)
        self._replace(account, ())
        return gone

    def expire(self, now: datetime) -> list[Binding]:
        """Remove and return every binding with ``expires_at <= now``, soonest first."""
        now = _check_now(now)
        out: list[Binding] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, binding = heapq.heappop(heap)
            held = self._by_account.get(binding.account)
            if held is None or held.get(binding.contact) is not binding:
                continue  # refreshed, removed or replaced since it was pushed
            del held[binding.contact]
            if not held:
                del self._by_account[binding.account]
            self._count -= 1
            out.append(binding)
        return out

    def _replace(self, account: int, bindings: Iterable[Binding]) -> None:
        held = self._by_account.pop(account, {})
        self._count -= len(held)
        new: dict[str, Binding] = {}
        for binding in bindings:
            if binding.account != account:
                raise ValueError(f"binding of account {binding.account} given for {account}")
            new[binding.contact] = binding
        if new:
            self._by_account[account] = new
            self._count += len(new)
        for binding in new.values():
            if held.get(binding.contact) is not binding:
                self._push(binding)
        if len(self._heap) > 2 * self._count + 1024:
            self._compact()

    def _push(self, binding: Binding) -> None:
        self._pushed += 1
        heapq.heappush(self._heap, (binding.expires_at, self._pushed, binding))

    def _compact(self) -> None:
        """Rebuild the heap from the live bindings, dropping stale entries."""
        self._heap = []
        self._pushed = 0
        for binding in self:
            self._pushed += 1
            self._heap.append((binding.expires_at, self._pushed, binding))
        heapq.heapify(self._heap)
