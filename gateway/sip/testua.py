# A minimal SIP user agent over asyncio UDP/TCP: registers, sends and answers MESSAGE.
"""The built-in test UA: ``gatewayctl demo`` plays the app with it, and exact-wire tests use
it to send hand-built requests and to answer the gateway's requests with any status (or
not at all). It answers digest challenges (MD5 or SHA-256, qop=auth: the first challenge
offered, or the one of ``algorithm`` when set). It sends a request again over UDP only when
``retransmit`` is set (timer E: after 0.5 s, doubling up to 4 s), for tests where the
gateway's socket is flooded; it is for loopback and tests, not for a real network: pjsua2,
baresip, Linphone and sipp are the real apps in the test suite.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from gateway.secrets import ha1
from gateway.sip.auth import Credentials, format_credentials, response_for
from gateway.sip.message import Request, Response, StreamParser, build_response, parse_message

DOMAIN = "env1.example.net"
T1, T2 = 0.5, 4.0  # RFC 3261 timers: first retransmission, longest interval (seconds)
ANSWER_TIMEOUT = 10.0  # how long a request waits for its final answer


@dataclass
class TestUA:
    __test__ = False  # not a pytest test class, whatever its name

    transport: str  # udp | tcp
    server: tuple[str, int]
    user: str
    password: str = field(repr=False)
    domain: str = DOMAIN
    algorithm: str | None = None  # None: answer the first challenge offered (its algorithm)
    local: tuple[str, int] = ("127.0.0.1", 0)
    responses: asyncio.Queue = field(default_factory=asyncio.Queue)
    requests: asyncio.Queue = field(default_factory=asyncio.Queue)
    pongs: asyncio.Queue = field(default_factory=asyncio.Queue)
    nonce: str | None = None  # the last nonce a challenge gave
    used_algorithm: str = "MD5"  # the algorithm of the last challenge answered
    retransmit: bool = False  # over UDP, send a request again until its final answer (timer E)
    _cseq: int = 0
    _nc: int = 0

    async def open(self) -> TestUA:
        loop = asyncio.get_running_loop()
        ua = self

        if self.transport == "udp":

            class Udp(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: object) -> None:
                    ua._incoming(parse_message(data))

            self._io, _ = await loop.create_datagram_endpoint(
                Udp, local_addr=("127.0.0.1", 0), remote_addr=self.server
            )
        else:
            parser = StreamParser()

            class Tcp(asyncio.Protocol):
                def data_received(self, data: bytes) -> None:
                    if data == b"\r\n":  # a keep-alive pong (RFC 5626 §3.5.1)
                        ua.pongs.put_nowait(data)
                    for item in parser.feed(data):
                        if isinstance(item, Request | Response):
                            ua._incoming(item)
                        else:
                            ua.requests.put_nowait(item)

            self._io, _ = await loop.create_connection(Tcp, *self.server)
        sock = self._io.get_extra_info("sockname")
        self.local = (sock[0], sock[1])
        return self

    def close(self) -> None:
        self._io.close()

    def _incoming(self, message: Request | Response) -> None:
        (self.responses if isinstance(message, Response) else self.requests).put_nowait(message)

    def send_raw(self, data: bytes) -> None:
        if self.transport == "udp":
            self._io.sendto(data)
        else:
            self._io.write(data)

    # -- requests ------------------------------------------------------------------------------
    def build(
        self,
        method: str,
        uri: str,
        *,
        headers: list[tuple[str, str]] = (),
        body: bytes = b"",
        from_user: str | None = None,
        to: str | None = None,
        call_id: str | None = None,
        cseq: int | None = None,
    ) -> bytes:
        if cseq is None:
            self._cseq += 1
            cseq = self._cseq
        host, port = self.local
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/{self.transport.upper()} {host}:{port}"
            f";branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{from_user or self.user}@{self.domain}>;tag={secrets.token_hex(4)}",
            f"To: {to or f'<sip:{self.user}@{self.domain}>'}",
            f"Call-ID: {call_id or secrets.token_hex(8)}",
            f"CSeq: {cseq} {method}",
            *(f"{n}: {v}" for n, v in headers),
            f"Content-Length: {len(body)}",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def final(self, timeout: float = 10.0) -> Response:
        while True:
            response = await asyncio.wait_for(self.responses.get(), timeout)
            if response.status >= 200:
                return response

    async def _exchange(self, method: str, uri: str, call_id: str, kw: dict[str, Any]) -> Response:
        """Send one request and wait for its final answer (matched by Call-ID and CSeq, so a
        late copy of an earlier answer is passed over); over UDP with ``retransmit`` the
        request goes again after T1, doubling up to T2, until the answer or the timeout."""
        if kw.get("cseq") is None:
            self._cseq += 1
            kw = {**kw, "cseq": self._cseq}
        cseq = int(kw["cseq"])
        data = self.build(method, uri, call_id=call_id, **kw)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANSWER_TIMEOUT
        interval = T1
        resend = self.retransmit and self.transport == "udp"
        self.send_raw(data)
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no final answer to {method} within {ANSWER_TIMEOUT:g} s")
            try:
                response = await asyncio.wait_for(
                    self.responses.get(), min(left, interval) if resend else left
                )
            except TimeoutError:
                if resend and loop.time() < deadline:
                    self.send_raw(data)
                    interval = min(interval * 2, T2)
                continue
            if response.status < 200:
                continue
            number = (response.headers.get("cseq") or "0").split(maxsplit=1)[0]
            if response.headers.get("call-id") == call_id and number == str(cseq):
                return response

    async def request(self, method: str, uri: str, *, auth: bool = True, **kw: Any) -> Response:
        """Send; answer one 401/407 with digest credentials when ``auth``; the final answer."""
        call_id = kw.pop("call_id", None) or secrets.token_hex(8)
        response = await self._exchange(method, uri, call_id, kw)
        if not auth or response.status not in (401, 407):
            return response
        name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        offered = response.headers.get_all(name)
        if self.algorithm is None:
            challenge = offered[0]
            found_alg = re.search(r"algorithm=([A-Za-z0-9-]+)", challenge)
            self.used_algorithm = found_alg.group(1) if found_alg else "MD5"
        else:
            challenge = next(v for v in offered if f"algorithm={self.algorithm}" in v)
            self.used_algorithm = self.algorithm
        found = re.search(r'nonce="([^"]+)"', challenge)
        assert found is not None, challenge
        self.nonce = found.group(1)
        self._nc += 1
        header = "Authorization" if response.status == 401 else "Proxy-Authorization"
        headers = [*kw.pop("headers", []), (header, self.credentials(method, uri, self.nonce, 1))]
        kw.pop("cseq", None)  # the answer with credentials is a new request: a new CSeq
        return await self._exchange(method, uri, call_id, {**kw, "headers": headers})

    def credentials(self, method: str, uri: str, nonce: str, nc: int) -> str:
        """The digest credentials (qop=auth) for a request with ``nonce`` and count ``nc``."""
        cnonce = secrets.token_hex(4)
        algorithm = self.algorithm or self.used_algorithm
        key = ha1(self.user, self.domain, self.password, algorithm)
        digest = response_for(
            key, algorithm=algorithm, method=method, uri=uri, nonce=nonce, nc=nc,
            cnonce=cnonce,
        )  # fmt: skip
        creds = Credentials(
            username=self.user, realm=self.domain, nonce=nonce, uri=uri, response=digest,
            algorithm=algorithm, cnonce=cnonce, qop="auth", nc=f"{nc:08x}",
        )  # fmt: skip
        return format_credentials(creds)

    async def register(self, expires: int = 300, contact: str | None = None, **kw: Any) -> Response:
        host, port = self.local
        contact = contact or f"<sip:{self.user}@{host}:{port};transport={self.transport}>"
        headers = [("Contact", contact), ("Expires", str(expires)), *kw.pop("headers", [])]
        return await self.request("REGISTER", f"sip:{self.domain}", headers=headers, **kw)

    async def message(self, to_user: str, text: str, **kw: Any) -> Response:
        headers = kw.pop("headers", None) or [("Content-Type", "text/plain;charset=UTF-8")]
        return await self.request(
            "MESSAGE",
            f"sip:{to_user}@{self.domain}",
            headers=headers,
            body=text.encode(),
            to=f"<sip:{to_user}@{self.domain}>",
            **kw,
        )

    # -- the gateway's requests ----------------------------------------------------------------
    async def incoming(self, timeout: float = 10.0) -> Request:
        return await asyncio.wait_for(self.requests.get(), timeout)

    def answer(self, request: Request, status: int) -> None:
        self.send_raw(build_response(request, status, to_tag="app").to_bytes())
