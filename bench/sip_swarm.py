# A swarm of SIP apps for load runs: N users register (digest) and answer every MESSAGE with 200.
"""Play N apps against the gateway's SIP side, cheaply enough to share two cores with it.

``python -m bench.sip_swarm --port 5060 --transport udp --users 10000 --prefix u
--password PW --domain bench.example.net``

Users ``<prefix>0`` .. ``<prefix>N-1`` register with REGISTER, answer the 401 with digest
credentials (SHA-256 or MD5, qop=auth, computed with hashlib here), at most
``--concurrency`` registrations in flight. Over UDP all users share ``--sockets`` sockets
(each user has its own Contact user part, so the gateway keeps one binding per account);
over TCP each user holds its own connection (the memory test). When every user is
registered a line ``registered N in S s (failed F)`` goes to stdout.

Then every MESSAGE the gateway sends is answered 200 OK without parsing it: the
Via/From/To/Call-ID/CSeq lines are copied as bytes and ``;tag=x`` is added to To. The swarm
keeps answering until stdin closes or SIGTERM/SIGINT arrives, then prints
``answered N messages`` and exits. Everything stays on the address given (127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import cast

RETRANSMIT = (0.5, 1.0, 2.0, 4.0, 4.0)  # UDP REGISTER retransmission waits (T1 doubling, T2)
RECV_BUFFER = 8 * 1024 * 1024  # asked of the kernel for UDP sockets (capped by rmem_max)

_CALL_ID_RE = re.compile(rb"\r\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]+)", re.IGNORECASE)
_LENGTH_RE = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*([0-9]+)", re.IGNORECASE)
_CHALLENGE_RE = re.compile(rb"\r\nwww-authenticate[ \t]*:[ \t]*([^\r\n]+)", re.IGNORECASE)
_NONCE_RE = re.compile(rb'nonce="([^"]+)"')
# the header lines a response copies from its request (RFC 3261 §8.2.6.2), compact forms too
_COPIED = {b"via": 0, b"v": 0, b"from": 1, b"f": 1, b"to": 2, b"t": 2}
_COPIED.update({b"call-id": 3, b"i": 3, b"cseq": 4})
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE raised to the hard limit (10k sockets need 10k descriptors)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def answer_ok(data: bytes) -> bytes | None:
    """A 200 OK for the request in ``data`` (None for anything but a MESSAGE)."""
    if not data.startswith(b"MESSAGE "):
        return None
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    vias: list[bytes] = []
    found: list[bytes] = [b"", b"", b"", b"", b""]
    for line in data[:end].split(b"\r\n")[1:]:
        colon = line.find(b":")
        slot = _COPIED.get(line[:colon].rstrip().lower())
        if slot is None:
            continue
        if slot == 0:
            vias.append(line)
        elif slot == 2:
            found[2] = line + b";tag=x"
        else:
            found[slot] = line
    return b"".join(
        (
            b"SIP/2.0 200 OK\r\n",
            b"\r\n".join((*vias, *found[1:])),
            b"\r\nContent-Length: 0\r\n\r\n",
        )
    )


class Users:
    """What every user shares: credentials, the digest and the REGISTER text."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.prefix: str = args.prefix
        self.password: str = args.password
        self.domain: str = args.domain
        self.algorithm: str = args.algorithm
        self.expires: int = args.expires
        self.transport: str = args.transport
        self._hash = _HASHES[args.algorithm]
        self._seq = 0

    def token(self) -> str:
        self._seq += 1
        return f"{os.getpid():x}{self._seq:x}{time.monotonic_ns() & 0xFFFFFF:x}"

    def register(
        self, user: int, local: tuple[str, int], call_id: str, cseq: int, auth: str = ""
    ) -> bytes:
        name = f"{self.prefix}{user}"
        host, port = local
        kind = self.transport.upper()
        lines = (
            f"REGISTER sip:{self.domain} SIP/2.0\r\n"
            f"Via: SIP/2.0/{kind} {host}:{port};branch=z9hG4bK{self.token()};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{name}@{self.domain}>;tag={self.token()}\r\n"
            f"To: <sip:{name}@{self.domain}>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} REGISTER\r\n"
            f"Contact: <sip:{name}@{host}:{port};transport={self.transport}>\r\n"
            f"Expires: {self.expires}\r\n"
            f"{auth}"
            "Content-Length: 0\r\n\r\n"
        )
        return lines.encode()

    def authorization(self, user: int, challenge: bytes) -> str:
        """The Authorization line answering the 401 in ``challenge`` (RFC 7616 §3.4)."""
        wanted = f"algorithm={self.algorithm}".encode()
        offers = [m.group(1) for m in _CHALLENGE_RE.finditer(challenge)]
        offer = next((o for o in offers if wanted in o), None)
        if offer is None:
            raise RuntimeError(f"no {self.algorithm} challenge in the 401")
        nonce_match = _NONCE_RE.search(offer)
        if nonce_match is None:
            raise RuntimeError("no nonce in the challenge")
        nonce = nonce_match.group(1).decode()
        name = f"{self.prefix}{user}"
        uri = f"sip:{self.domain}"
        cnonce = self.token()
        h = self._hash
        ha1 = h(f"{name}:{self.domain}:{self.password}".encode()).hexdigest()
        ha2 = h(f"REGISTER:{uri}".encode()).hexdigest()
        digest = h(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}".encode()).hexdigest()
        return (
            f'Authorization: Digest username="{name}", realm="{self.domain}", '
            f'nonce="{nonce}", uri="{uri}", response="{digest}", algorithm={self.algorithm}, '
            f'cnonce="{cnonce}", qop=auth, nc=00000001\r\n'
        )


def status_of(data: bytes) -> int:
    return int(data[8:11])


_STAMP_RE = re.compile(rb"\r\n\r\n.*?e2e ([0-9]+) t=([0-9]+)", re.DOTALL)


class Stamps:
    """End-to-end latencies (``--stamps``): a MESSAGE whose body holds ``e2e N t=NS`` (the
    sender's CLOCK_MONOTONIC in ns at submit time) is timed when its 200 OK is sent. Once
    ``expect`` distinct N were answered, a line ``e2e {json}`` goes to stdout."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.seen: set[int] = set()
        self.latencies: list[int] = []
        self.first = 0
        self.last = 0
        self.duplicates = 0
        self.reported = False

    def record(self, message: bytes) -> None:
        match = _STAMP_RE.search(message)
        if match is None:
            return
        now = time.monotonic_ns()
        n = int(match.group(1))
        if n in self.seen:
            self.duplicates += 1
            return
        self.seen.add(n)
        self.latencies.append(now - int(match.group(2)))
        self.first = self.first or now
        self.last = now
        if len(self.seen) >= self.expect and not self.reported:
            self.reported = True
            self.report()

    def report(self) -> None:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] / 1e6, 2)

        summary = {
            "delivered": len(self.seen),
            "duplicates": self.duplicates,
            "first_ns": self.first,
            "last_ns": self.last,
            "p50_ms": pct(50),
            "p90_ms": pct(90),
            "p99_ms": pct(99),
            "max_ms": round(ordered[-1] / 1e6, 2),
        }
        print("e2e " + json.dumps(summary), flush=True)


# -- UDP ------------------------------------------------------------------------------------------


class UdpSocket(asyncio.DatagramProtocol):
    """One shared UDP socket: answers MESSAGEs, hands REGISTER responses to their waiter."""

    def __init__(self, swarm: Swarm) -> None:
        self.swarm = swarm
        self.io: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.io = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RECV_BUFFER)
        name = transport.get_extra_info("sockname")
        self.local = (str(name[0]), int(name[1]))

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if data[:1] == b"M":
            answer = answer_ok(data)
            if answer is not None and self.io is not None:
                self.io.sendto(answer, addr)
                self.swarm.answered += 1
                if self.swarm.stamps is not None:
                    self.swarm.stamps.record(data)
            return
        if data.startswith(b"SIP/2.0 "):
            match = _CALL_ID_RE.search(data)
            if match is None:
                return
            waiter = self.swarm.waiting.get(match.group(1).strip())
            if waiter is not None and not waiter.done() and status_of(data) >= 200:
                waiter.set_result(data)

    def error_received(self, exc: Exception) -> None:
        self.swarm.errors += 1


# -- TCP ------------------------------------------------------------------------------------------


class TcpUser(asyncio.Protocol):
    """One user's own connection: frames by Content-Length, answers MESSAGEs."""

    def __init__(self, swarm: Swarm) -> None:
        self.swarm = swarm
        self.io: asyncio.Transport | None = None
        self.buffer = b""
        self.waiter: asyncio.Future[bytes] | None = None
        self.local: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.io = cast(asyncio.Transport, transport)
        name = transport.get_extra_info("sockname")
        self.local = (str(name[0]), int(name[1]))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        answers: list[bytes] = []
        while True:
            buffer = buffer.lstrip(b"\r\n")
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            match = _LENGTH_RE.search(buffer, 0, end + 2)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(buffer) < total:
                break
            message, buffer = buffer[:total], buffer[total:]
            if message[:1] == b"M":
                answer = answer_ok(message)
                if answer is not None:
                    answers.append(answer)
                    if self.swarm.stamps is not None:
                        self.swarm.stamps.record(message)
            elif (
                message.startswith(b"SIP/2.0 ")
                and status_of(message) >= 200
                and self.waiter is not None
                and not self.waiter.done()
            ):
                self.waiter.set_result(message)
        self.buffer = buffer
        if answers and self.io is not None:
            self.io.write(b"".join(answers))
            self.swarm.answered += len(answers)

    def connection_lost(self, exc: Exception | None) -> None:
        self.io = None
        self.swarm.lost += 1
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))


# -- the swarm ------------------------------------------------------------------------------------


class Swarm:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.users = Users(args)
        self.server: tuple[str, int] = (args.host, args.port)
        self.answered = 0
        self.stamps = Stamps(args.expect) if args.stamps else None
        self.errors = 0
        self.lost = 0
        self.failed = 0
        self.waiting: dict[bytes, asyncio.Future[bytes]] = {}
        self.sockets: list[UdpSocket] = []
        self.connections: list[TcpUser] = []

    async def open_udp(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.args.sockets):
            _, endpoint = await loop.create_datagram_endpoint(
                lambda: UdpSocket(self), local_addr=(self.args.host, 0)
            )
            self.sockets.append(endpoint)

    async def _udp_exchange(self, endpoint: UdpSocket, call_id: str, data: bytes) -> bytes:
        """Send ``data``, retransmit on silence (RFC 3261 §17.1.2.2), the final response."""
        assert endpoint.io is not None
        key = call_id.encode()
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[key] = waiter
        try:
            for wait in RETRANSMIT:
                endpoint.io.sendto(data, self.server)
                try:
                    return await asyncio.wait_for(asyncio.shield(waiter), wait)
                except TimeoutError:
                    continue
            raise TimeoutError("no answer to REGISTER")
        finally:
            self.waiting.pop(key, None)

    async def _register_udp(self, user: int) -> None:
        endpoint = self.sockets[user % len(self.sockets)]
        call_id = self.users.token()
        users = self.users
        first = await self._udp_exchange(
            endpoint, call_id, users.register(user, endpoint.local, call_id, 1)
        )
        if status_of(first) == 401:
            auth = users.authorization(user, first)
            first = await self._udp_exchange(
                endpoint, call_id, users.register(user, endpoint.local, call_id, 2, auth)
            )
        if status_of(first) != 200:
            raise RuntimeError(first.split(b"\r\n", 1)[0].decode(errors="replace"))

    async def _register_tcp(self, user: int) -> None:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: TcpUser(self), *self.server)
        self.connections.append(conn)
        call_id = self.users.token()

        async def exchange(data: bytes) -> bytes:
            assert conn.io is not None
            conn.waiter = loop.create_future()
            conn.io.write(data)
            return await asyncio.wait_for(conn.waiter, self.args.register_timeout)

        answer = await exchange(self.users.register(user, conn.local, call_id, 1))
        if status_of(answer) == 401:
            auth = self.users.authorization(user, answer)
            answer = await exchange(self.users.register(user, conn.local, call_id, 2, auth))
        conn.waiter = None
        if status_of(answer) != 200:
            raise RuntimeError(answer.split(b"\r\n", 1)[0].decode(errors="replace"))

    async def register_all(self) -> float:
        started = time.perf_counter()
        register: Callable[[int], object]
        if self.args.transport == "udp":
            await self.open_udp()
            register = self._register_udp
        else:
            register = self._register_tcp
        reasons: dict[str, int] = {}
        next_user = 0

        async def worker() -> None:
            nonlocal next_user
            while next_user < self.args.users:
                user = next_user
                next_user += 1
                try:
                    await register(user)  # type: ignore[misc]
                except (OSError, RuntimeError, TimeoutError, ConnectionError) as exc:
                    self.failed += 1
                    key = f"{type(exc).__name__}: {exc}"[:120]
                    reasons[key] = reasons.get(key, 0) + 1

        await asyncio.gather(
            *(worker() for _ in range(min(self.args.concurrency, self.args.users)))
        )
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1])[:5]:
            print(f"register failure x{count}: {reason}", file=sys.stderr, flush=True)
        return time.perf_counter() - started

    def close(self) -> None:
        for endpoint in self.sockets:
            if endpoint.io is not None:
                endpoint.io.close()
        for conn in self.connections:
            if conn.io is not None:
                conn.io.close()


async def run(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def finish() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, finish)

    def stdin_readable() -> None:
        try:
            chunk = os.read(0, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            loop.remove_reader(0)
            finish()

    loop.add_reader(0, stdin_readable)
    swarm = Swarm(args)
    registering = loop.create_task(swarm.register_all())
    await asyncio.wait([registering, stop], return_when=asyncio.FIRST_COMPLETED)
    if registering.done():
        seconds = registering.result()
        registered = args.users - swarm.failed
        print(f"registered {registered} in {seconds:.2f} s (failed {swarm.failed})", flush=True)
        await stop
    else:
        registering.cancel()
    swarm.close()
    print(
        f"answered {swarm.answered} messages (socket errors {swarm.errors}, "
        f"connections lost {swarm.lost})",
        flush=True,
    )
    return 0 if swarm.failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sip_swarm", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--prefix", default="u")
    parser.add_argument("--password", required=True)
    parser.add_argument("--domain", default="bench.example.net")
    parser.add_argument("--algorithm", choices=tuple(_HASHES), default="SHA-256")
    parser.add_argument("--expires", type=int, default=3600)
    parser.add_argument("--concurrency", type=int, default=200, help="registrations in flight")
    parser.add_argument("--sockets", type=int, default=4, help="shared UDP sockets")
    parser.add_argument("--register-timeout", type=float, default=30.0)
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument(
        "--stamps", action="store_true", help="time MESSAGEs whose body holds 'e2e N t=NS'"
    )
    parser.add_argument("--expect", type=int, default=0, help="with --stamps: report after N")
    args = parser.parse_args(argv)
    raise_fd_limit()
    if args.no_uvloop:
        return asyncio.run(run(args))
    import uvloop

    return uvloop.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
