# SIP transports: asyncio UDP, TCP and TLS sockets, stream framing, flows (RFC 3261 §18).
"""The I/O edge of the SIP side. Bytes become parsed messages handed to a ``Handler``
together with the ``Flow`` they came on; a flow is where an answer or a later request to the
same peer goes.

Decisions:

* UDP answers go to the datagram's source address and port (RFC 3581 behaviour for every
  client: apps behind NAT only hear from the port they sent from).
* TCP/TLS connections are kept in a flow table keyed by (transport, ip, port) of the peer,
  so a request to an app that registered over TCP/TLS goes back over that very connection
  (RFC 5626's idea without its Path/outbound machinery). A connection idle for
  ``idle_timeout`` (no octet, not even a CRLF keep-alive) is closed.
* On streams a double-CRLF ping is answered with a single CRLF (RFC 5626 §3.5.1). A framed but
  invalid message goes to the handler (it may answer 400); lost framing closes the connection
  after a best-effort 400.
* A connection that ends (closed by the app, reset, or closed here) is reported to
  ``on_closed``: the SIP server fails the client transactions on it at once (RFC 3261 §18.4).
* Memory is bounded: at most ``max_connections`` stream connections, and the parser bounds
  each message.
* No lock-out by connections (slowloris): a message must arrive whole within
  ``request_timeout`` of its first octet, and a new connection must send its first whole
  request within ``request_timeout``; else it is aborted. One address holds at most
  ``max_per_address`` connections. When the table is full, the oldest connection that never
  carried an authenticated request (:meth:`Flow.mark_authenticated`) is aborted to admit the
  new one; only a table full of authenticated flows refuses newcomers.
* No lock-out by floods: every datagram, and every message framed on a connection, is first
  counted per source address by :class:`~gateway.sip.pike.Pike`; over its limit, datagrams
  are dropped unparsed and connections aborted (counted, logged once a minute per source).
  Addresses in ``trusted`` networks (an SBC) are exempt from it and from the per-address cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from gateway.config import SipListener
from gateway.metrics import SIP_CONNECTIONS_CLOSED, SIP_FLOOD_DROPPED, Children
from gateway.sip.message import (
    BadMessage,
    KeepAlive,
    Limits,
    Request,
    Response,
    SipError,
    StreamParser,
    parse_message,
)
from gateway.sip.pike import Pike
from gateway.smpp.guard import TokenBucket

log = logging.getLogger("gateway.sip")

FlowKey = tuple[str, str, int]  # (transport, peer ip, peer port)
SWEEP_SECONDS = 30.0  # how often idle connections are looked for
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024  # bench/README.md: the 208 KiB default drops 200 OKs
FLOOD_LOG_RATE = 10 / 60  # flood log lines per second over all sources (burst below)
FLOOD_LOG_BURST = 20
MAX_TRUSTED_CACHE = 10_000  # addresses whose trusted/not verdict is remembered

flood_dropped = Children(SIP_FLOOD_DROPPED)
connections_closed = Children(SIP_CONNECTIONS_CLOSED)


class Handler(Protocol):
    """What the transports report to (the SIP server)."""

    def on_message(self, message: Request | Response, flow: Flow) -> None: ...

    def on_bad(self, error: SipError, data: bytes, flow: Flow) -> None: ...


class Flow:
    """A path to one peer: a UDP socket and address, or one TCP/TLS connection."""

    transport: str
    reliable: bool
    remote: tuple[str, int]
    local: tuple[str, int]

    @property
    def key(self) -> FlowKey:
        return (self.transport, self.remote[0], self.remote[1])

    @property
    def open(self) -> bool:
        return True

    def send(self, data: bytes) -> bool:
        """Queue ``data`` for the peer; False when the flow can no longer carry it."""
        raise NotImplementedError

    def mark_authenticated(self) -> None:
        """A request through this flow authenticated (a REGISTER or MESSAGE with valid
        digest credentials): a connection is then never evicted to admit another."""


class UdpFlow(Flow):
    __slots__ = ("_endpoint", "local", "remote")
    transport = "udp"
    reliable = False

    def __init__(self, endpoint: UdpEndpoint, remote: tuple[str, int]) -> None:
        self._endpoint = endpoint
        self.remote = remote
        self.local = endpoint.local

    @property
    def open(self) -> bool:
        return self._endpoint.transport is not None

    def send(self, data: bytes) -> bool:
        return self._endpoint.send(data, self.remote)


class UdpEndpoint(asyncio.DatagramProtocol):
    """One UDP listening socket; each datagram is one message (RFC 3261 §18.3)."""

    def __init__(self, transports: SipTransports, limits: Limits) -> None:
        self._transports = transports
        self._limits = limits
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.local = (str(sockname[0]), int(sockname[1]))
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a burst of answers must not overflow the kernel's default
            with contextlib.suppress(OSError):  # (the kernel caps it at net.core.rmem_max)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        # responses answer transactions the gateway started (an app acknowledging its
        # MESSAGEs): only requests count towards a source's flood allowance
        if not data.startswith(b"SIP/") and not self._transports.allow(str(addr[0]), "udp"):
            return  # a flooding source: dropped before anything is parsed
        flow = UdpFlow(self, (str(addr[0]), int(addr[1])))
        if data.strip(b"\r\n") == b"":
            if data == b"\r\n\r\n":  # RFC 5626 §4.4.1 keep-alives over UDP use STUN; a
                self.send(b"\r\n", flow.remote)  # CRLF ping is answered like on streams
            return
        try:
            message = parse_message(data, self._limits)
        except SipError as exc:
            self._transports.handler.on_bad(exc, data, flow)
            return
        self._transports.handler.on_message(message, flow)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp %s:%d: %s", self.local[0], self.local[1], exc)

    def send(self, data: bytes, remote: tuple[str, int]) -> bool:
        if self.transport is None:
            return False
        self.transport.sendto(data, remote)
        return True


class StreamFlow(Flow, asyncio.Protocol):
    """One TCP or TLS connection, accepted or opened by the gateway."""

    def __init__(
        self, transports: SipTransports, kind: str, limits: Limits, *, outbound: bool = False
    ) -> None:
        self._transports = transports
        self.transport = kind  # "tcp" | "tls"
        self.reliable = True
        self._parser = StreamParser(limits)
        self._io: asyncio.Transport | None = None
        self.remote = ("", 0)
        self.local = ("", 0)
        self.last_activity = time.monotonic()
        self._closed = False
        self.outbound = outbound  # opened by the gateway (to an app), not accepted
        self.authenticated = outbound  # never evicted once a request through it authenticated
        self.admitted = False  # counted in the flow table (per address, unauthenticated)
        self._awaiting_first = not outbound  # no whole request received yet
        self._deadline: asyncio.TimerHandle | None = None  # request_timeout, while armed
        self._since = self.last_activity  # when the awaited request or message began

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._io = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.remote = (str(peer[0]), int(peer[1])) if peer else ("?", 0)
        self.local = (str(sock[0]), int(sock[1])) if sock else ("?", 0)
        if not self._transports.admit(self):
            self._closed = True
            self._io.abort()
        elif self._awaiting_first:  # its first whole request is due within request_timeout
            self._arm(self._transports.request_timeout)

    def data_received(self, data: bytes) -> None:
        now = self.last_activity = time.monotonic()
        try:
            items = self._parser.feed(data)
        except SipError as exc:
            self._transports.handler.on_bad(exc, data[:4096], self)
            self.close()
            return
        transports = self._transports
        handler = transports.handler
        completed = False
        for item in items:
            if isinstance(item, KeepAlive):
                self.send(b"\r\n")
                continue
            if not isinstance(item, Response) and not transports.allow(
                self.remote[0], self.transport
            ):
                connections_closed("flood").inc()
                self.abort()  # a flooding source: nothing more is read from it
                return
            completed = True
            if isinstance(item, BadMessage):
                handler.on_bad(item.error, item.data, self)
            else:
                if isinstance(item, Request):
                    self._awaiting_first = False
                handler.on_message(item, self)
        if self._closed:
            return
        # a message started and not yet whole must be whole within request_timeout of its
        # first octet (a lone CRLF, the start of a keep-alive ping, is no message); the first
        # request within request_timeout of the connection
        started = self._parser.buffered > 0 and (
            self._parser.buffered > 3 or data.strip(b"\r\n") != b""
        )
        if self._awaiting_first:
            pass  # the wait began at the connection
        elif started:
            if completed or self._deadline is None:
                self._since = now  # this chunk began the message still partial
            if self._deadline is None:
                self._arm(transports.request_timeout)
        elif self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _arm(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(delay, self._timed_out)

    def _timed_out(self) -> None:
        self._deadline = None
        if self._closed:
            return
        timeout = self._transports.request_timeout
        left = self._since + timeout - time.monotonic()
        if left > 0:  # the message then awaited was whole; another one began later
            self._arm(left)
            return
        what = "first request" if self._awaiting_first else "message"
        log.debug(
            "closing %s connection from %s:%d: %s not whole within %gs",
            self.transport,
            *self.remote,
            what,
            timeout,
        )
        connections_closed("request_timeout").inc()
        self._transports.timed_out += 1
        self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._io = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._transports.forget(self)
        self._transports.closed(self)

    def pause_writing(self) -> None:
        """The peer is not reading what we send: stop reading its requests (their answers
        would pile up in memory) until it catches up."""
        if self._io is not None:
            self._io.pause_reading()

    def resume_writing(self) -> None:
        if self._io is not None and not self._closed:
            self._io.resume_reading()

    # -- Flow ----------------------------------------------------------------------------
    @property
    def open(self) -> bool:
        return not self._closed and self._io is not None and not self._io.is_closing()

    def send(self, data: bytes) -> bool:
        if not self.open:
            return False
        assert self._io is not None
        self._io.write(data)
        self.last_activity = time.monotonic()
        return True

    def close(self) -> None:
        self._closed = True
        if self._io is not None:
            self._io.close()

    def abort(self) -> None:
        """Close at once, dropping what is not sent yet (a peer that does not read cannot
        hold the connection open)."""
        self._closed = True
        if self._io is not None:
            self._io.abort()

    def mark_authenticated(self) -> None:
        if not self.authenticated:
            self.authenticated = True
            self._transports.authenticated(self)


@dataclass(frozen=True, slots=True)
class Bound:
    """A listening socket as actually bound (port 0 in the config becomes a real port)."""

    transport: str
    host: str
    port: int


WILDCARDS = frozenset({"0.0.0.0", "::"})  # noqa: S104 - recognised, never bound here
MAX_LOCAL_CACHE = 10_000  # peers whose local address is remembered


class SipTransports:
    """Every SIP socket of the node, and the flow table of stream connections."""

    def __init__(
        self,
        listeners: Sequence[SipListener],
        handler: Handler,
        *,
        limits: Limits,
        idle_timeout: float,
        max_connections: int,
        request_timeout: float = 10.0,
        max_per_address: int = 100,
        pike: Pike | None = None,
        trusted: Sequence[str] = (),
    ) -> None:
        self._listeners = listeners
        self.handler = handler
        self._limits = limits
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self.request_timeout = request_timeout
        self._max_per_address = max_per_address
        self.pike = pike
        self._trusted_networks = [ipaddress.ip_network(n, strict=False) for n in trusted]
        self._trusted: dict[str, bool] = {}  # address -> in a trusted network (cache)
        self._per_address: dict[str, int] = {}  # accepted connections per peer address
        self._unauthenticated: OrderedDict[StreamFlow, None] = OrderedDict()  # oldest first
        self._flood_log = TokenBucket(FLOOD_LOG_RATE, FLOOD_LOG_BURST)
        self._flood_unlogged = 0  # blocks not logged for the global log bound
        self.timed_out = 0  # connections aborted at request_timeout
        self.evicted = 0  # unauthenticated connections aborted to admit a new one
        self.bound: list[Bound] = []
        self._udp: dict[str, UdpEndpoint] = {}  # host -> endpoint (first per host)
        self._servers: list[asyncio.Server] = []
        self._flows: dict[FlowKey, StreamFlow] = {}
        self._client_tls = ssl.create_default_context()
        self._sweeper: asyncio.Task[None] | None = None
        self.refused = 0  # connections refused at the bound
        self._local_for: dict[str, str] = {}  # peer address -> our address towards it
        self.on_closed: Callable[[Flow], None] | None = None  # told when a connection ends

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self._listeners:
            if listener.transport == "udp":
                _, endpoint = await loop.create_datagram_endpoint(
                    lambda: UdpEndpoint(self, self._limits),
                    local_addr=(listener.host, listener.port),
                )
                self._udp.setdefault(endpoint.local[0], endpoint)
                self._udp.setdefault("*", endpoint)
                self.bound.append(Bound("udp", endpoint.local[0], endpoint.local[1]))
                continue
            context = None
            if listener.transport == "tls":
                assert listener.cert and listener.key
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.load_cert_chain(listener.cert, listener.key)
            server = await loop.create_server(
                lambda kind=listener.transport: StreamFlow(self, kind, self._limits),
                listener.host,
                listener.port,
                ssl=context,
                backlog=1024,
            )
            self._servers.append(server)
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                self.bound.append(Bound(listener.transport, str(host), int(port)))
        self._sweeper = loop.create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in self._servers:
            server.close()
        for flow in list(self._flows.values()):
            flow.close()
        for endpoint in set(self._udp.values()):
            if endpoint.transport is not None:
                endpoint.transport.close()
        for server in self._servers:
            await server.wait_closed()

    # -- flow table ------------------------------------------------------------------------
    def admit(self, flow: StreamFlow) -> bool:
        """Take a new connection into the flow table, or say it must be refused."""
        address = flow.remote[0]
        if not flow.outbound and not self.is_trusted(address):
            if self.pike is not None and self.pike.blocked(address, time.monotonic()):
                return self._refuse("flood", "from an address blocked for flooding")
            if self._per_address.get(address, 0) >= self._max_per_address:
                return self._refuse("per_address", "at max_connections_per_address")
        if len(self._flows) >= self._max_connections:
            if not self._unauthenticated:
                return self._refuse("max_connections", "at max_connections")
            victim = next(iter(self._unauthenticated))  # the oldest never authenticated
            self._remove(victim)
            victim.abort()
            self.evicted += 1
            connections_closed("evicted").inc()
            if self.evicted in (1, 10, 100) or self.evicted % 1000 == 0:
                log.warning(
                    "sip: %d unauthenticated connections closed to admit new ones at"
                    " max_connections",
                    self.evicted,
                )
        old = self._flows.get(flow.key)
        if old is not None and old is not flow:
            self._remove(old)
            old.close()
        self._flows[flow.key] = flow
        flow.admitted = True
        if not flow.outbound:
            self._per_address[address] = self._per_address.get(address, 0) + 1
        if not flow.authenticated:
            self._unauthenticated[flow] = None
        return True

    def _refuse(self, reason: str, why: str) -> bool:
        self.refused += 1
        connections_closed(reason).inc()
        if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
            log.warning("sip: %d connections refused (the last %s)", self.refused, why)
        return False

    def authenticated(self, flow: StreamFlow) -> None:
        """``flow`` carried an authenticated request: no longer the first to be evicted."""
        self._unauthenticated.pop(flow, None)

    def forget(self, flow: StreamFlow) -> None:
        self._remove(flow)

    def closed(self, flow: StreamFlow) -> None:
        """A connection ended (either side): what was pending on it fails at once (RFC 3261
        §18.4: a transport error is reported to the transactions using it)."""
        if self.on_closed is not None:
            self.on_closed(flow)

    def _remove(self, flow: StreamFlow) -> None:
        if not flow.admitted:
            return
        flow.admitted = False
        if self._flows.get(flow.key) is flow:
            del self._flows[flow.key]
        self._unauthenticated.pop(flow, None)
        if not flow.outbound:
            address = flow.remote[0]
            left = self._per_address.get(address, 0) - 1
            if left > 0:
                self._per_address[address] = left
            else:
                self._per_address.pop(address, None)

    # -- flood guard -------------------------------------------------------------------------
    def is_trusted(self, address: str) -> bool:
        """Whether ``address`` is in ``trusted`` networks (exempt from the flood guard and
        the per-address cap)."""
        if not self._trusted_networks:
            return False
        known = self._trusted.get(address)
        if known is None:
            try:
                ip = ipaddress.ip_address(address)
                known = any(ip in network for network in self._trusted_networks)
            except ValueError:
                known = False
            if len(self._trusted) >= MAX_TRUSTED_CACHE:
                self._trusted.clear()
            self._trusted[address] = known
        return known

    def allow(self, address: str, transport: str) -> bool:
        """Count one datagram or message from ``address``; False when it must be dropped
        unread (the address is flooding)."""
        pike = self.pike
        if pike is None or (self._trusted_networks and self.is_trusted(address)):
            return True
        now = time.monotonic()
        if pike.check(address, now):
            return True
        flood_dropped(transport).inc()
        if pike.newly_blocked:
            if self._flood_log.take(1, now):
                log.warning(
                    "sip: %s blocked for %gs: over %d messages in %gs (flood); what it sends"
                    " is dropped%s",
                    address,
                    pike.block,
                    pike.limit,
                    pike.interval,
                    f" ({self._flood_unlogged} more blocks not logged)"
                    if self._flood_unlogged
                    else "",
                )
                self._flood_unlogged = 0
            else:
                self._flood_unlogged += 1
        return False

    @property
    def connections(self) -> int:
        return len(self._flows)

    def flow_to(self, transport: str, host: str, port: int) -> Flow | None:
        """The flow a request to this peer should take, when one exists: its open TCP/TLS
        connection, or a UDP socket (UDP always has one)."""
        if transport == "udp":
            endpoint = self._udp.get(host) or self._udp.get("*")
            return None if endpoint is None else UdpFlow(endpoint, (host, port))
        flow = self._flows.get((transport, host, port))
        return flow if flow is not None and flow.open else None

    def via_address(self, transport: str, peer: str | None = None) -> tuple[str, int]:
        """host and port to put in our Via/Contact for a transport: for a listener on every
        interface (0.0.0.0, ::), the local address the system would use to reach ``peer``
        (a sent-by of 0.0.0.0 tells an app nothing)."""
        chosen = next((b for b in self.bound if b.transport == transport), self.bound[0])
        host = chosen.host
        if peer is not None and host in WILDCARDS:
            host = self._local_address(peer, host)
        return host, chosen.port

    def _local_address(self, peer: str, wildcard: str) -> str:
        cached = self._local_for.get(peer)
        if cached is not None:
            return cached
        family = socket.AF_INET6 if ":" in wildcard else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((peer, 9))  # no packet is sent: only the route is looked up
                local = str(probe.getsockname()[0])
        except OSError:
            return wildcard
        if len(self._local_for) >= MAX_LOCAL_CACHE:
            self._local_for.clear()
        self._local_for[peer] = local
        return local

    async def connect(self, transport: str, host: str, port: int, timeout: float) -> Flow:
        """Open a TCP (or TLS) connection to a peer that has none; raises OSError."""
        loop = asyncio.get_running_loop()
        context = self._client_tls if transport == "tls" else None
        _, flow = await asyncio.wait_for(
            loop.create_connection(
                lambda: StreamFlow(self, transport, self._limits, outbound=True),
                host,
                port,
                ssl=context,
                server_hostname=host if context else None,
            ),
            timeout,
        )
        if not flow.open:
            raise OSError(f"connection to {host}:{port} refused at max_connections")
        return flow

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(min(SWEEP_SECONDS, self._idle_timeout))
            limit = time.monotonic() - self._idle_timeout
            for flow in [f for f in self._flows.values() if f.last_activity < limit]:
                log.debug("closing idle %s connection from %s:%d", flow.transport, *flow.remote)
                flow.close()
