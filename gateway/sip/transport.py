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
* Memory is bounded: at most ``max_connections`` stream connections (new ones are closed at
  once), and the parser bounds each message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from gateway.config import SipListener
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

log = logging.getLogger("gateway.sip")

FlowKey = tuple[str, str, int]  # (transport, peer ip, peer port)
SWEEP_SECONDS = 30.0  # how often idle connections are looked for
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024  # bench/README.md: the 208 KiB default drops 200 OKs


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

    def __init__(self, transports: SipTransports, kind: str, limits: Limits) -> None:
        self._transports = transports
        self.transport = kind  # "tcp" | "tls"
        self.reliable = True
        self._parser = StreamParser(limits)
        self._io: asyncio.Transport | None = None
        self.remote = ("", 0)
        self.local = ("", 0)
        self.last_activity = time.monotonic()
        self._closed = False

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

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        try:
            items = self._parser.feed(data)
        except SipError as exc:
            self._transports.handler.on_bad(exc, data[:4096], self)
            self.close()
            return
        handler = self._transports.handler
        for item in items:
            if isinstance(item, KeepAlive):
                self.send(b"\r\n")
            elif isinstance(item, BadMessage):
                handler.on_bad(item.error, item.data, self)
            else:
                handler.on_message(item, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._io = None
        self._transports.forget(self)

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
    ) -> None:
        self._listeners = listeners
        self.handler = handler
        self._limits = limits
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self.bound: list[Bound] = []
        self._udp: dict[str, UdpEndpoint] = {}  # host -> endpoint (first per host)
        self._servers: list[asyncio.Server] = []
        self._flows: dict[FlowKey, StreamFlow] = {}
        self._client_tls = ssl.create_default_context()
        self._sweeper: asyncio.Task[None] | None = None
        self.refused = 0  # connections refused at the bound
        self._local_for: dict[str, str] = {}  # peer address -> our address towards it

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
        if len(self._flows) >= self._max_connections:
            self.refused += 1
            if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                log.warning("sip: %d connections refused at max_connections", self.refused)
            return False
        old = self._flows.get(flow.key)
        if old is not None and old is not flow:
            old.close()
        self._flows[flow.key] = flow
        return True

    def forget(self, flow: StreamFlow) -> None:
        if self._flows.get(flow.key) is flow:
            del self._flows[flow.key]

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
                lambda: StreamFlow(self, transport, self._limits),
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
