# Gateway configuration: YAML -> frozen dataclasses; every bad value reported as file: key: reason.
"""Configuration of one gateway node.

Each YAML section is a frozen dataclass; each key is a dataclass field declared with
:func:`setting`, which carries its documentation (``metadata["doc"]``) and an optional check.
The loader is generic: it walks the fields' type hints (``str``, ``int``, ``bool``,
``timedelta``, ``tuple[X, ...]``, ``X | None``, ``Literal``, nested dataclasses), so a new
key needs only a new field. Checks run in ``__post_init__``, so a Config built in code is held
to the same rules as one read from a file. :func:`iter_settings` lists every key, its default
and its doc, for the generated configuration reference.

Errors are :class:`gateway.errors.ConfigError` (docs/architecture.md rule 4), e.g.
``conf/gateway.yaml: sip.listen[1].port: must be 1-65535, got 70000``.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import re
import types
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import phonenumbers
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from gateway.errors import ConfigError
from gateway.yamlfile import YamlFileError, read_yaml

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Config",
    "DeliveryConfig",
    "LogConfig",
    "ManagementConfig",
    "Numbering",
    "PluginConfig",
    "SipConfig",
    "SipListener",
    "SmppConfig",
    "SmppListener",
    "TlsFiles",
    "format_duration",
    "iter_settings",
    "load_config",
    "parse_config",
    "parse_duration",
    "setting",
]

DEFAULT_CONFIG_PATH = "conf/gateway.yaml"
MAX_FILE_BYTES = 1 << 20  # a real config is a few kB; refuse anything absurd (rule 5)
MAX_LISTENERS = 16
MAX_RETRIES = 32
MAX_VALIDITY = timedelta(days=30)


# --- errors inside the loader ----------------------------------------------------------------


class _Invalid(ValueError):
    """A bad value at a key path relative to where it was found; becomes a ConfigError."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason

    def under(self, prefix: str) -> _Invalid:
        return _Invalid(_join(prefix, self.key), self.reason)


def _join(prefix: str, key: str) -> str:
    if not prefix or not key:
        return prefix or key
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


def _describe(value: Any) -> str:
    """A value as an error message shows it (YAML spelling for the non-scalars)."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


# --- durations -------------------------------------------------------------------------------

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_FORMS = "use 5s, 30s, 2m, 1h, 1d, a combination such as 1h30m, or whole seconds (300)"


def parse_duration(text: str | int) -> timedelta:
    """``"5s"``, ``"2m"``, ``"48h"``, ``"1d"``, ``"1h30m"`` or whole seconds -> timedelta.

    Raises ValueError naming the accepted forms for anything else.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        return timedelta(seconds=text)
    if not isinstance(text, str):
        raise ValueError(f"expected a duration, got {_describe(text)}; {_DURATION_FORMS}")
    spec = text.strip()
    try:
        if spec.isascii() and spec.isdigit():
            return timedelta(seconds=int(spec))
        match = _DURATION.fullmatch(spec)
        if not spec or match is None:
            raise ValueError(f"not a duration: {text!r}; {_DURATION_FORMS}")
        days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration too long: {text!r}") from None


def format_duration(value: timedelta) -> str:
    """The shortest text :func:`parse_duration` reads back: ``2d``, ``1h30m``, ``0s``.

    Whole days are written in days alone; anything else in hours, minutes and seconds.
    """
    if value < timedelta(0) or value.microseconds:
        raise ValueError(f"only whole, non-negative seconds have a text form, got {value}")
    total = int(value.total_seconds())
    if total and total % 86400 == 0:
        return f"{total // 86400}d"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n)
    return text or "0s"


# --- field declaration and checks ------------------------------------------------------------

Check = Callable[[Any], Any]


def setting(
    doc: str, default: Any = dataclasses.MISSING, *, check: Check | None = None, key: bool = True
) -> Any:
    """A documented configuration field.

    ``check`` takes the converted value and returns it (possibly normalised) or raises
    :class:`ValueError` with the reason; ``key=False`` marks a field that is not a YAML key.
    """
    return dataclasses.field(default=default, metadata={"doc": doc, "check": check, "key": key})


def _matching(pattern: str, what: str) -> Check:
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if regex.fullmatch(value) is None:
            raise ValueError(f"must be {what}, got {value!r}")
        return value

    return check


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def _hostname(value: str) -> str:
    if _HOSTNAME.fullmatch(value) is None:
        raise ValueError(f"must be a hostname, got {value!r}")
    return value


def _host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if _HOSTNAME.fullmatch(value) is None:
            raise ValueError(
                f"must be an IP address (IPv6 without brackets) or a hostname, got {value!r}"
            ) from None
    return value


def _port(value: int) -> int:
    if not 0 <= value <= 65535:
        raise ValueError(f"must be 1-65535, got {value}")
    return value


def _not_empty(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def _country_code(value: str) -> str:
    if re.fullmatch(r"[1-9][0-9]{0,2}", value) is None or phonenumbers.region_code_for_country_code(
        int(value)
    ) in ("ZZ", "001"):
        raise ValueError(f"must be a country calling code such as 964 or 44, got {value!r}")
    return value


def _system_id(value: str) -> str:
    if not 1 <= len(value) <= 15 or re.fullmatch(r"[\x21-\x7e]*", value) is None:
        raise ValueError(
            f"must be 1-15 printable ASCII characters without spaces, got {value!r}"
            f" ({len(value)} characters)"
        )
    return value


_DATABASE_DRIVERS = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg",  # psycopg 3 is the driver we ship
    "postgresql+psycopg": "postgresql+psycopg",
}


def _database_url(value: str) -> str:
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(f"not a database URL: {value!r}") from None
    driver = _DATABASE_DRIVERS.get(url.drivername)
    if driver is None:
        raise ValueError(
            f"unsupported database {url.drivername!r}; use sqlite:///FILE"
            " or postgresql+psycopg://USER@HOST/DB"
        )
    if driver == url.drivername:
        return value
    return url.set(drivername=driver).render_as_string(hide_password=False)


def _show(value: timedelta) -> str:
    try:
        return format_duration(value)
    except ValueError:
        return str(value)


def _between(low: int, high: int) -> Check:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be {low}-{high}, got {value}")
        return value

    return check


def _positive_duration(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"must be more than 0s, got {format_duration(value)}")
    return value


def _carrier_hold(value: timedelta) -> timedelta:
    if not timedelta(0) <= value <= timedelta(days=1):
        raise ValueError(f"must be 0s to 1d, got {_show(value)}")
    return value


def _validity(value: timedelta) -> timedelta:
    if not timedelta(0) < value <= MAX_VALIDITY:
        raise ValueError(
            f"must be more than 0s and at most {_show(MAX_VALIDITY)}, got {_show(value)}"
        )
    return value


def _retry(values: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
    if not 1 <= len(values) <= MAX_RETRIES:
        raise ValueError(f"must list 1-{MAX_RETRIES} waits, got {len(values)}")
    for index, value in enumerate(values):
        if value <= timedelta(0):
            raise _Invalid(f"[{index}]", f"must be more than 0s, got {_show(value)}")
    return values


def _algorithms(values: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        raise ValueError("must name at least one algorithm: SHA-256, MD5")
    if len(set(values)) != len(values):
        raise ValueError(f"names an algorithm twice: {', '.join(values)}")
    return values


def _networks(values: tuple[str, ...]) -> tuple[str, ...]:
    """Networks in CIDR form (10.0.0.0/8, 2001:db8::/32) or single addresses, at most 1000."""
    if len(values) > 1000:
        raise ValueError(f"must list at most 1000 networks, got {len(values)}")
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an address or a network such as 10.0.0.0/8"
            ) from None
    return values


def _distinct_listeners(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """At most MAX_LISTENERS, and no two binding the same socket (port 0 never clashes)."""
    if len(values) > MAX_LISTENERS:
        raise ValueError(f"must list at most {MAX_LISTENERS} listeners, got {len(values)}")
    seen: dict[tuple[str, str, int], int] = {}
    for index, listener in enumerate(values):
        protocol = "UDP" if getattr(listener, "transport", "tcp") == "udp" else "TCP"
        try:
            host = str(ipaddress.ip_address(listener.host))
        except ValueError:
            host = listener.host.lower()
        socket = (protocol, host, listener.port)
        if listener.port and socket in seen:
            raise _Invalid(
                f"[{index}]",
                f"duplicate of entry [{seen[socket]}]: both use {protocol}"
                f" {listener.host}:{listener.port}",
            )
        seen.setdefault(socket, index)
    return values


class _Checked:
    """Runs each field's check, then :meth:`_check_together`, whenever a section is built."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check = field.metadata.get("check")
            if check is None:
                continue
            value = getattr(self, field.name)
            try:
                checked = check(value)
            except _Invalid as exc:
                raise exc.under(field.name) from None
            except ValueError as exc:
                raise _Invalid(field.name, str(exc)) from None
            if checked is not value:
                object.__setattr__(self, field.name, checked)
        self._check_together()

    def _check_together(self) -> None:
        """Rules across fields; raise :class:`_Invalid` with the offending key."""


# --- the sections ----------------------------------------------------------------------------

# setting() is dataclasses.field() plus a doc, and every default below is an immutable value.
# ruff: noqa: RUF009

_PORT_DOC = "Port, 1-65535; 0 takes any free port (tests use it)."
_LISTEN_HOST_DOC = (
    "Address to listen on: an IP address (IPv6 without brackets), 0.0.0.0 for"
    " every interface, or a hostname."
)


@dataclasses.dataclass(frozen=True)
class Numbering(_Checked):
    """How national numbers are turned into E.164 (docs/architecture.md rule 9)."""

    country_code: str = setting(
        "Country calling code of the home network (1-3 digits, e.g. 964 for Iraq); numbers"
        " given in national form get this prefix.",
        "964",
        check=_country_code,
    )
    national_prefix: str = setting(
        'Trunk prefix dialled before national numbers (digits, "" for none); stripped before'
        " the country code is added.",
        "0",
        check=_matching(r"[0-9]{0,5}", "0-5 digits"),
    )
    international_prefix: str = setting(
        "Prefix dialled before a country code to call abroad (1-5 digits, e.g. 00 or 011).",
        "00",
        check=_matching(r"[0-9]{1,5}", "1-5 digits"),
    )


@dataclasses.dataclass(frozen=True)
class TlsFiles(_Checked):
    """Certificate and private key (PEM) for a TLS listener."""

    cert: str = setting(
        "Certificate chain file (PEM); a relative path is resolved against the working"
        " directory the gateway is started from.",
        check=_not_empty,
    )
    key: str = setting(
        "Private key file (PEM) of that certificate; relative to the working directory.",
        check=_not_empty,
    )


@dataclasses.dataclass(frozen=True)
class SmppListener(_Checked):
    """One SMPP server socket that carriers and peer environments bind to."""

    host: str = setting(_LISTEN_HOST_DOC, check=_host)
    port: int = setting(_PORT_DOC + " 2775 is the usual plain SMPP port.", check=_port)
    tls: TlsFiles | None = setting(
        "Serve SMPP over TLS with these files; omit for plain TCP.", None
    )


@dataclasses.dataclass(frozen=True)
class SmppConfig(_Checked):
    """The SMPP 3.4 server side."""

    system_id: str = setting(
        "Name this gateway gives in bind responses (1-15 printable ASCII characters, no spaces).",
        "GATEWAY",
        check=_system_id,
    )
    listen: tuple[SmppListener, ...] = setting(
        "Sockets to accept SMPP binds on; no two on the same host and port.",
        (SmppListener("127.0.0.1", 2775),),
        check=_distinct_listeners,
    )
    window: int = setting(
        "Requests one bind may have unanswered; more are answered ESME_RTHROTTLED (1-10000).",
        100,
        check=_between(1, 10_000),
    )
    enquire_link: timedelta = setting(
        "Idle time after which the gateway probes a bind with enquire_link.",
        timedelta(seconds=30),
        check=_positive_duration,
    )
    inactivity_timeout: timedelta = setting(
        "A bind that sends nothing (not even enquire_link_resp) for this long is closed.",
        timedelta(seconds=120),
        check=_positive_duration,
    )
    bind_timeout: timedelta = setting(
        "A connection that has not bound after this long is closed.",
        timedelta(seconds=30),
        check=_positive_duration,
    )
    response_timeout: timedelta = setting(
        "How long the gateway waits for a carrier's answer to deliver_sm or enquire_link.",
        timedelta(seconds=30),
        check=_positive_duration,
    )
    max_pdu: int = setting(
        "Largest PDU accepted, in octets (command_length); larger ones close the bind"
        " (64-1048576).",
        65536,
        check=_between(64, 1 << 20),
    )
    reassembly_timeout: timedelta = setting(
        "How long the parts of a concatenated message wait for the missing ones; then the"
        " message fails (a receipt says so).",
        timedelta(minutes=5),
        check=_positive_duration,
    )
    failed_bind_limit: int = setting(
        "Failed binds for one system_id from one address within 5 minutes, binds still being"
        " checked included, before that system_id is refused from that address for"
        " failed_bind_block (the 4th and later failures are also answered more slowly); also"
        " the most binds of one address checked at once (1-1000).",
        10,
        check=_between(1, 1000),
    )
    failed_bind_block: timedelta = setting(
        "How long a system_id from an address that reached failed_bind_limit (or an address"
        " blocked under failed_bind_spread) is refused, whatever it sends; gatewayctl carrier"
        " unblock ADDRESS lifts it.",
        timedelta(minutes=15),
        check=_positive_duration,
    )
    failed_bind_spread: int = setting(
        "Distinct system_ids (unknown ones included) failing to bind from one address within"
        " 5 minutes that block the whole address for failed_bind_block (2-1000).",
        3,
        check=_between(2, 1000),
    )
    bind_check_threads: int = setting(
        "Threads that check bind passwords (scrypt, 16 MiB each), apart from everything else"
        " (1-64).",
        2,
        check=_between(1, 64),
    )
    bind_check_queue: int = setting(
        "Bind password checks that may wait for a thread; beyond it the system_id with the"
        " most waiting gives way, and a bind that cannot get a place is answered"
        " ESME_RBINDFAIL at once (1-100000).",
        64,
        check=_between(1, 100_000),
    )
    max_pending_messages: int = setting(
        "Concatenated messages that may wait for parts at once; more are answered"
        " ESME_RMSGQFUL (1-1000000).",
        10_000,
        check=_between(1, 1_000_000),
    )
    refuse_unknown_addresses: bool = setting(
        "Close a connection at once, before reading a byte, when no carrier's allow_ip"
        " contains its address (otherwise it is refused at bind). Refusals are logged once a"
        " minute per address at most and counted in gateway_smpp_connections_refused_total.",
        True,
    )
    max_unbound_per_address: int = setting(
        "Connections from one address that may be open without having bound yet (bind in"
        " progress included); more are closed at once, before reading a byte. Keep it at"
        " least at the binds a carrier (or all carriers behind one NAT address) opens at"
        " once (1-100000).",
        10,
        check=_between(1, 100_000),
    )
    max_unbound: int = setting(
        "Connections from all addresses that may be open without having bound yet; more are"
        " closed at once, so half-open sockets cannot use up the node's file descriptors"
        " (1-1000000).",
        256,
        check=_between(1, 1_000_000),
    )


@dataclasses.dataclass(frozen=True)
class SipListener(_Checked):
    """One SIP socket that apps register and send MESSAGE on."""

    transport: Literal["udp", "tcp", "tls"] = setting(
        "udp, tcp or tls; tcp and tls share TCP ports, so they need different ports."
    )
    host: str = setting(_LISTEN_HOST_DOC, check=_host)
    port: int = setting(_PORT_DOC + " Usually 5060, or 5061 for tls.", check=_port)
    cert: str | None = setting(
        "Certificate chain file (PEM), required for tls and refused otherwise; relative to"
        " the working directory.",
        None,
    )
    key: str | None = setting(
        "Private key file (PEM) of that certificate, required for tls and refused otherwise;"
        " relative to the working directory.",
        None,
    )

    def _check_together(self) -> None:
        for name in ("cert", "key"):
            given = getattr(self, name)
            if self.transport == "tls" and not given:
                raise _Invalid(name, "is required when transport is tls")
            if self.transport != "tls" and given is not None:
                raise _Invalid(name, f"is only allowed with transport tls, not {self.transport}")


@dataclasses.dataclass(frozen=True)
class SipConfig(_Checked):
    """The SIP side: registrar and RFC 3428 MESSAGE towards apps."""

    domain: str = setting(
        "SIP domain the gateway serves (the host part of app users' addresses of record);"
        " set it to the name apps register to.",
        "localhost",
        check=_hostname,
    )
    listen: tuple[SipListener, ...] = setting(
        "Sockets to accept SIP on; no two of the same transport on the same host and port.",
        (SipListener("udp", "127.0.0.1", 5060), SipListener("tcp", "127.0.0.1", 5060)),
        check=_distinct_listeners,
    )
    min_expires: int = setting(
        "Shortest registration accepted, in seconds; shorter ones are answered 423 with"
        " Min-Expires (1-86400).",
        60,
        check=_between(1, 86_400),
    )
    max_expires: int = setting(
        "Longest registration granted, in seconds; longer requests are lowered to it"
        " (1-86400, at least min_expires).",
        3600,
        check=_between(1, 86_400),
    )
    default_expires: int = setting(
        "Registration time when a REGISTER names none, in seconds (within min/max_expires).",
        3600,
        check=_between(1, 86_400),
    )
    max_contacts: int = setting(
        "Contacts (phone, tablet, ...) one account may have registered at once (1-100).",
        10,
        check=_between(1, 100),
    )
    max_message_body: int = setting(
        "Largest MESSAGE body an app may send, in octets; larger ones are answered 413 (1-65000).",
        2000,
        check=_between(1, 65_000),
    )
    transaction_timeout: timedelta = setting(
        "How long the gateway waits for an app to answer a MESSAGE before it counts as a"
        " temporary failure (RFC 3261 timer F; T1 is a 64th of it, so 32s gives T1 = 500 ms).",
        timedelta(seconds=32),
        check=_positive_duration,
    )
    idle_timeout: timedelta = setting(
        "A TCP/TLS connection that carries nothing (not even a CRLF keep-alive) for this long"
        " is closed.",
        timedelta(minutes=65),
        check=_positive_duration,
    )
    max_connections: int = setting(
        "TCP/TLS connections held at once; more are refused (1-1000000).",
        20_000,
        check=_between(1, 1_000_000),
    )
    max_transactions: int = setting(
        "SIP transactions in progress at once; beyond it requests are answered 503 (100-10000000).",
        200_000,
        check=_between(100, 10_000_000),
    )
    digest_algorithms: tuple[Literal["SHA-256", "MD5"], ...] = setting(
        "Digest algorithms offered to apps, one challenge each, preferred first (RFC 7616"
        " §3.7); credentials with another one are refused. MD5 alone by default: many deployed"
        " clients (baresip 1.0, Zoiper, older phones, sipp) reject or misread a 401 that also"
        " names SHA-256 (docs/clients.md). [SHA-256, MD5] only when every app handles several"
        " challenges (pjsua2, Linphone do); both HA1s are always stored, so either works"
        " without re-provisioning.",
        ("MD5",),
        check=_algorithms,
    )
    failed_auth_limit: int = setting(
        "Failed digest authentications from one address within 5 minutes before it is"
        " refused for failed_auth_block (the 4th and later are answered more slowly) (1-1000).",
        10,
        check=_between(1, 1000),
    )
    failed_auth_block: timedelta = setting(
        "How long an address that reached failed_auth_limit is refused (403).",
        timedelta(minutes=15),
        check=_positive_duration,
    )
    contact_networks: tuple[str, ...] = setting(
        "Addresses or networks (CIDR: 10.0.0.0/8) a REGISTER's Contact may name besides the"
        " address the REGISTER came from; any other Contact host (or a host name) is refused"
        " 403. Empty: only the source address. List your apps' private networks when they"
        " register through NAT without rewriting their Contact, or the networks behind an"
        " SBC. Messages go to an app only over its registration's own flow (its TCP/TLS"
        " connection, or the UDP address and port it registered from), never to the Contact.",
        (),
        check=_networks,
    )
    request_timeout: timedelta = setting(
        "On TCP/TLS, a message (headers and body) must arrive whole within this long of its"
        " first octet, and a new connection must send its first whole request within this"
        " long; else the connection is closed (slow senders cannot hold connections).",
        timedelta(seconds=10),
        check=_positive_duration,
    )
    max_connections_per_address: int = setting(
        "TCP/TLS connections held at once from one IP address (apps behind one NAT share it);"
        " more are refused. Addresses in trusted_networks are exempt (1-1000000).",
        100,
        check=_between(1, 1_000_000),
    )
    pike_limit: int = setting(
        "Flood guard (like Kamailio's pike): SIP requests one IP address may send per"
        " pike_interval (responses to the gateway's own requests are not counted); beyond it"
        " the address is blocked for pike_block and what it sends is dropped unread (UDP) or"
        " its connections closed (TCP/TLS). Requests are counted as they are read, so keep"
        " the limit well below what the node answers per interval. 0 turns the guard off."
        " Put SBCs and load generators that legitimately send more in trusted_networks"
        " (0-10000000).",
        1000,
        check=_between(0, 10_000_000),
    )
    pike_interval: timedelta = setting(
        "Sampling interval of the flood guard (sliding window).",
        timedelta(seconds=2),
        check=_positive_duration,
    )
    pike_block: timedelta = setting(
        "How long an address over pike_limit is blocked; if it still floods when the block"
        " ends it is blocked again at once.",
        timedelta(seconds=60),
        check=_positive_duration,
    )
    trusted_networks: tuple[str, ...] = setting(
        "Addresses or networks (CIDR: 10.0.0.0/8) exempt from the flood guard and from"
        " max_connections_per_address, e.g. an SBC in front of the gateway. Loopback is not"
        " trusted by default: list 127.0.0.0/8 only when every local user is trusted.",
        (),
        check=_networks,
    )
    message_rate: int = setting(
        "MESSAGEs per second one app account may send on average; beyond it (and its burst)"
        " they are answered 503 with Retry-After and not stored (1-100000).",
        20,
        check=_between(1, 100_000),
    )
    message_burst: int = setting(
        "MESSAGEs one app account may send at once above message_rate (token bucket size,"
        " 1-1000000).",
        40,
        check=_between(1, 1_000_000),
    )

    def _check_together(self) -> None:
        if self.max_expires < self.min_expires:
            raise _Invalid("max_expires", f"must be at least min_expires ({self.min_expires})")
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise _Invalid(
                "default_expires",
                f"must be within min_expires and max_expires ({self.min_expires}-"
                f"{self.max_expires}), got {self.default_expires}",
            )


@dataclasses.dataclass(frozen=True)
class ManagementConfig(_Checked):
    """HTTP endpoint for health checks and Prometheus metrics."""

    host: str = setting(
        "Address of the management endpoint; keep it on loopback or a private network.",
        "127.0.0.1",
        check=_host,
    )
    port: int = setting(_PORT_DOC, 8080, check=_port)
    token_file: str | None = setting(
        "File holding a bearer token (16-4096 printable ASCII characters, mode 0600) that"
        " /status and /metrics require (`Authorization: Bearer TOKEN`; gatewayctl status"
        " sends it); /healthz and /readyz stay open for load balancers. Omitted: no token,"
        " and a warning at start if host is not loopback. Relative to the working directory.",
        None,
    )

    def _check_together(self) -> None:
        if self.token_file is not None and not self.token_file:
            raise _Invalid("token_file", "must not be empty (omit it for no token)")


@dataclasses.dataclass(frozen=True)
class DeliveryConfig(_Checked):
    """How long and how often the gateway tries to deliver a stored message."""

    validity: timedelta = setting(
        "How long the gateway keeps trying to deliver a message before it expires (more than"
        " 0s, at most 30d).",
        timedelta(hours=48),
        check=_validity,
    )
    retry: tuple[timedelta, ...] = setting(
        "Waits between delivery attempts, in order; the last one repeats until the validity"
        " runs out. Each more than 0s.",
        tuple(timedelta(seconds=s) for s in (5, 30, 120, 600, 3600)),
        check=_retry,
    )
    verification_senders: tuple[str, ...] = setting(
        "Senders whose messages go in the priority lane (verification services such as"
        " Viber): source addresses compared without case, '*' matching any characters.",
        (),
    )
    verification_keywords: tuple[str, ...] = setting(
        "Words that, with a code of 4-8 digits in a short text, mark a verification message"
        " (priority lane); compared without case.",
        ("code", "otp", "pin", "password", "passcode", "verification", "verify", "رمز", "كود",
         "código", "код"),
    )  # fmt: skip
    verification_max_length: int = setting(
        "Longest text (characters) the verification-code rule looks at; longer texts are"
        " bulk unless their sender or priority_flag says otherwise.",
        160,
        check=_between(1, 10_000),
    )
    max_in_flight: int = setting(
        "Messages being sent at once (SIP transactions and submit_sm awaiting an answer),"
        " over all destinations; each destination has at most one.",
        1000,
        check=_between(1, 100_000),
    )
    max_queued: int = setting(
        "Messages held in memory waiting to be sent; beyond it they wait in the store and are"
        " read back in order as the queue drains (memory stays bounded).",
        100_000,
        check=_between(100, 10_000_000),
    )
    max_stored_per_destination: int = setting(
        "Messages kept for one number that is not taking them (its app offline, retries"
        " pending); beyond it, new ones are refused (ESME_RMSGQFUL, SIP 486) until it takes"
        " them. Counted from the store every 30s and on each admission (1-10000000).",
        100_000,
        check=_between(1, 10_000_000),
    )
    max_waiting_per_route: int = setting(
        "Messages kept for one route to a peer that is not taking them (down, not answering,"
        " throttling); beyond it, new ones for that route are refused (ESME_RMSGQFUL, SIP"
        " 503) until the backlog drains. Counted over the route's connections, from the"
        " store every 30s and on each admission and forwarding (1-10000000).",
        100_000,
        check=_between(1, 10_000_000),
    )
    max_hops: int = setting(
        "Environments a message may pass through (loop protection between environments); a"
        " message that would go further, or visit an environment twice, fails.",
        5,
        check=_between(1, 32),
    )
    carrier_hold: timedelta = setting(
        "How long a carrier that a policy targets (policy --carrier) may have no receiver"
        " bound before its messages fail over to the next matching policy's target (0s: at"
        " once; at most 1d). Meanwhile, and when no later policy is left, they wait in the"
        " store for it to bind, until their validity runs out.",
        timedelta(seconds=30),
        check=_carrier_hold,
    )


def _at_least(low: timedelta, why: str) -> Check:
    def check(value: timedelta) -> timedelta:
        if value < low:
            raise ValueError(f"must be at least {format_duration(low)} ({why}), got "
                             f"{format_duration(value)}")  # fmt: skip
        return value

    return check


@dataclasses.dataclass(frozen=True)
class RetentionConfig(_Checked):
    """How long the store keeps what: message text briefly (privacy), CDRs for years."""

    message_text: timedelta = setting(
        "How long the text of a message is kept after it ends (delivered, failed, expired);"
        " then it is erased, with its parts, for privacy. CDRs never hold text. At least 1h.",
        timedelta(days=30),
        check=_at_least(timedelta(hours=1), "receipts quote the text"),
    )
    messages: timedelta = setting(
        "How long the record of an ended message (route, attempts, peer ids) is kept; at"
        " least message_text. Its CDR stays.",
        timedelta(days=90),
        check=_at_least(timedelta(days=1), "late receipts from peers must find it"),
    )
    cdrs: timedelta = setting(
        "How long CDRs are kept after the message was accepted; at least 1827d (five years).",
        timedelta(days=1827),
        check=_at_least(timedelta(days=1827), "five years of billing records"),
    )
    interval: timedelta = setting(
        "How often a running gateway purges what is past these periods.",
        timedelta(hours=1),
        check=_at_least(timedelta(minutes=1), "purging is batch work"),
    )
    encrypt_text: bool = setting(
        "Encrypt what subscribers wrote before it reaches the store: message texts and binary"
        " bodies, the parts of concatenated messages and PDUs waiting for a carrier (MO"
        " texts, receipts quoting a text), with AES-256-GCM under a key derived from"
        " secret_key_file, so a copied store shows no SMS content. Numbers, times, states,"
        " CDRs and the audit log stay readable. Texts stored either way are read back either"
        " way; losing the key file makes the encrypted ones unreadable.",
        True,
    )

    def _check_together(self) -> None:
        if self.messages < self.message_text:
            raise _Invalid(
                "messages",
                f"{format_duration(self.messages)} is shorter than message_text "
                f"{format_duration(self.message_text)}",
            )


@dataclasses.dataclass(frozen=True)
class PluginConfig(_Checked):
    """One plugin: hooks on acceptance, routing and outcomes (see docs/plugins.md)."""

    name: str = setting(
        "The plugin's registered name: a module of plugins/ (webhook, content_filter) or an"
        " entry point in the group smpp_sip_gateway.plugins.",
        check=_matching(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", "a plugin name"),
    )
    enabled: bool = setting("Whether the plugin is loaded.", True)
    options: Mapping[str, Any] | None = setting(
        "The plugin's own settings (a mapping); the plugin checks them at start.", None
    )
    on_error: Literal["reject", "accept"] = setting(
        "What becomes of a message when the plugin's on_accept or on_route raises: reject"
        " (closed: refused at admission with ESME_RSYSERR / SIP 500, or a later delivery"
        " attempt fails and is retried) or accept (open: the message goes on as if the plugin"
        " had returned nothing). Either way the error is logged and counted in"
        " gateway_plugin_errors_total; on_outcome and on_waiting errors never stop a message.",
        "reject",
    )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_COMPONENT = re.compile(r"(gateway|plugins|billing|routing)(\.[a-z_]+)*")


def _log_levels(value: Mapping[str, Any] | None) -> Mapping[str, str] | None:
    if value is None:
        return None
    levels: dict[str, str] = {}
    for component, level in value.items():
        if not isinstance(component, str) or _COMPONENT.fullmatch(component) is None:
            raise _Invalid(
                str(component),
                "must be a component such as gateway.smpp, gateway.sip, gateway.pipeline,"
                " gateway.connections, gateway.management, plugins or billing",
            )
        if not isinstance(level, str) or level.upper() not in LOG_LEVELS:
            raise _Invalid(component, f"must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
        levels[component] = level.upper()
    return levels


@dataclasses.dataclass(frozen=True)
class LogConfig(_Checked):
    """Logging (to stderr)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting(
        "Least severe level written: DEBUG, INFO, WARNING or ERROR (any case).", "INFO"
    )
    format: Literal["auto", "json", "text"] = setting(
        "json: one JSON object per line (time, level, logger, env, msg, message_id when the"
        " line concerns a message); text: readable lines; auto: text on a terminal, json"
        " otherwise (systemd, containers, pipes).",
        "auto",
    )
    levels: Mapping[str, str] | None = setting(
        "Levels per component, overriding level: a mapping such as {gateway.smpp: DEBUG,"
        " gateway.sip: WARNING} (a component covers its sub-components).",
        None,
        check=_log_levels,
    )


@dataclasses.dataclass(frozen=True)
class Config(_Checked):
    """Everything one gateway node reads at start."""

    env: str = setting(
        "Name of this environment (1-32 of A-Z a-z 0-9 _ -); shown in logs and metrics and"
        " used to tell environments on one host apart.",
        "gateway",
        check=_matching(r"[A-Za-z0-9_-]{1,32}", "1-32 characters of A-Z a-z 0-9 _ -"),
    )
    database: str = setting(
        "SQLAlchemy URL of the store: sqlite:///FILE (FILE relative to the working directory)"
        " or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB; postgresql:// means psycopg 3.",
        "sqlite:///gateway.db",
        check=_database_url,
    )
    numbering: Numbering = setting("Numbering plan of the home network.", Numbering())
    smpp: SmppConfig = setting("SMPP server.", SmppConfig())
    sip: SipConfig = setting("SIP side.", SipConfig())
    management: ManagementConfig = setting("Management HTTP endpoint.", ManagementConfig())
    delivery: DeliveryConfig = setting("Delivery attempts and expiry.", DeliveryConfig())
    secret_key_file: str = setting(
        "Key file that encrypts secrets the gateway must present to peers (e.g. outbound SMPP"
        " passwords); created by `gatewayctl init`; relative to the working directory.",
        "gateway.key",
        check=_not_empty,
    )
    retention: RetentionConfig = setting(
        "Retention of message text, message records and CDRs.", RetentionConfig()
    )
    log: LogConfig = setting("Logging.", LogConfig())
    plugins: tuple[PluginConfig, ...] = setting("Plugins, called in this order.", ())
    source: str = setting("File this configuration was read from (not a YAML key).", "", key=False)

    @property
    def database_display(self) -> str:
        """The database URL with any password replaced by ``***``, safe to log."""
        return make_url(self.database).render_as_string(hide_password=True)


# --- generic conversion ----------------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _keys(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("key", True)]


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (inner,) = (arg for arg in get_args(tp) if arg is not type(None))
        return _convert(inner, value, path)
    if origin is Literal:
        options = get_args(tp)
        for option in options:
            if isinstance(value, str) and value.lower() == str(option).lower():
                return option
        raise _Invalid(
            path, f"must be one of {', '.join(map(str, options))}, got {_describe(value)}"
        )
    if origin is tuple:
        (item, _ellipsis) = get_args(tp)
        if not isinstance(value, list | tuple):
            raise _Invalid(path, f"expected a list, got {_describe(value)}")
        return tuple(_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _build(tp, {} if value is None else value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise _Invalid(path, f"expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(path, f"expected an integer, got {_describe(value)}")
        return value
    if tp is str:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # digit strings such as country_code: 964
        if not isinstance(value, str):
            raise _Invalid(path, f"expected a string, got {_describe(value)}")
        return value
    if origin is Mapping:  # free-form: the plugin's options, checked by the plugin
        if value is None:
            return types.MappingProxyType({})
        if not isinstance(value, Mapping):
            raise _Invalid(path, f"expected a mapping, got {_describe(value)}")
        return types.MappingProxyType({str(k): v for k, v in value.items()})
    if tp is timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise _Invalid(path, str(exc)) from None
    raise TypeError(f"{path}: no conversion for setting type {tp!r}")


def _build(cls: type, value: Any, path: str, **extra: Any) -> Any:
    if not isinstance(value, Mapping):
        raise _Invalid(path, f"expected a mapping, got {_describe(value)}")
    fields = {f.name: f for f in _keys(cls)}
    for key in value:
        if key not in fields:
            raise _Invalid(
                _join(path, str(key)), f"unknown key; expected one of: {', '.join(fields)}"
            )
    kwargs: dict[str, Any] = dict(extra)
    for name, field in fields.items():
        if name in value:
            kwargs[name] = _convert(_hints(cls)[name], value[name], _join(path, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise _Invalid(_join(path, name), "is required")
    try:
        return cls(**kwargs)
    except _Invalid as exc:
        raise exc.under(path) from None


def parse_config(data: Mapping[str, Any], source: str) -> Config:
    """Build a Config from already-parsed YAML; ``source`` names the file in errors."""
    try:
        if not isinstance(data, Mapping):
            raise _Invalid("", f"expected a mapping of settings, got {_describe(data)}")
        config: Config = _build(Config, data, "", source=source)
    except _Invalid as exc:
        raise ConfigError(source, exc.key, exc.reason) from None
    return config


# --- reading the file ------------------------------------------------------------------------


def _read_yaml(source: str) -> Any:
    try:
        return read_yaml(source, max_bytes=MAX_FILE_BYTES)
    except YamlFileError as exc:
        reason = exc.reason
        if reason == "file not found":
            reason = "file not found; give a path or set $GATEWAY_CONFIG"
        elif reason.startswith("larger than"):
            reason += "; not a config file"
        raise ConfigError(source, "", reason) from None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the config from ``path``, else ``$GATEWAY_CONFIG``, else ``conf/gateway.yaml``."""
    source = (
        os.fspath(path)
        if path is not None
        else (os.environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG_PATH)
    )
    data = _read_yaml(source)
    if not isinstance(data, Mapping):
        got = "an empty file" if data is None else _describe(data)
        raise ConfigError(source, "", f"expected a mapping of settings at the top level, got {got}")
    return parse_config(data, source)


# --- reference -------------------------------------------------------------------------------


def _default_text(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_default_text(v) for v in value) + "]"
    if dataclasses.is_dataclass(value):
        parts = (
            f"{f.name}: {_default_text(getattr(value, f.name))}"
            for f in _keys(type(value))
            if getattr(value, f.name) is not None
        )
        return "{" + ", ".join(parts) + "}"
    if value == "":
        return '""'
    return str(value)


def _section_type(tp: Any) -> tuple[type | None, str]:
    """The dataclass a field holds (directly, optionally, or as list items) and its key suffix."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        (tp,) = (arg for arg in get_args(tp) if arg is not type(None))
        origin = get_origin(tp)
    if origin is tuple:
        inner = get_args(tp)[0]
        return (inner, "[].") if dataclasses.is_dataclass(inner) else (None, "")
    return (tp, ".") if dataclasses.is_dataclass(tp) else (None, "")


def _walk(cls: type, prefix: str) -> Iterator[tuple[str, str, str]]:
    for field in _keys(cls):
        key = prefix + field.name
        section, suffix = _section_type(_hints(cls)[field.name])
        if field.default is not dataclasses.MISSING:
            shown = field.default
            default = "" if dataclasses.is_dataclass(shown) else _default_text(shown)
        else:
            default = "(required)"
        yield key, default, field.metadata["doc"]
        if section is not None:
            yield from _walk(section, key + suffix)


def iter_settings(cls: type = Config) -> Iterator[tuple[str, str, str]]:
    """Every YAML key under ``cls`` as (``sip.listen[].port``, default text, doc), in file order.

    A section's own row has an empty default; its keys follow it.
    """
    return _walk(cls, "")
