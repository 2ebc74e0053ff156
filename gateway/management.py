# The management HTTP listener: /metrics (Prometheus), /healthz, /readyz and /status (JSON).
"""Served by aiohttp (already the webhook plugin's client; well kept, asyncio-native) on
``management.host:management.port`` (loopback by default).

- ``GET /healthz``: 200 while the event loop serves requests (liveness).
- ``GET /readyz``: 200 when the store answers and every listener is up, else 503; the body
  (JSON) says which check failed, so a load balancer's log tells why.
- ``GET /metrics``: the process registry (:mod:`gateway.metrics`) in Prometheus text format.
- ``GET /status``: what ``gatewayctl status`` shows, as JSON (:mod:`gateway.status`).

Anything else is 404; a method other than GET (or HEAD) is 405.

With ``management.token_file``, ``/status`` and ``/metrics`` need ``Authorization: Bearer
TOKEN`` (compared in constant time; 401 otherwise, counted); ``/healthz`` and ``/readyz``
stay open for load balancers. Without a token on an address beyond loopback, the start
logs a warning. Requests aiohttp cannot parse are counted by reason and logged one line
each, at most :data:`LOGGED_PER_MINUTE` a minute (aiohttp logs each with a traceback).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.config import ManagementConfig
from gateway.errors import GatewayError, InvalidInput
from gateway.metrics import MANAGEMENT_BAD_REQUESTS, MANAGEMENT_UNAUTHORIZED, REGISTRY
from gateway.secrets import require_private_file

log = logging.getLogger("gateway.management")

Status = Callable[[], dict[str, Any]]
Ready = Callable[[], Awaitable[list[str]]]  # the failed checks; empty when ready

LOGGED_PER_MINUTE = 10  # bad requests logged a minute; the rest only counted
TOKEN_MIN, TOKEN_MAX = 16, 4096
TOKEN_FIELD = "management.token_file"  # noqa: S105 - a config key, not a secret
OPEN = frozenset({"/healthz", "/readyz"})  # for load balancers; the rest needs the token


class ListenError(GatewayError):
    """A listener could not bind its address (in use, not local, not permitted)."""


def read_token(path: str) -> bytes:
    """The bearer token in ``path``: 16-4096 printable ASCII characters (surrounding
    whitespace ignored), in a file only its owner can read; InvalidInput otherwise."""
    require_private_file(path, TOKEN_FIELD, "token file")
    try:
        with open(path, "rb") as token_file:
            data = token_file.read(TOKEN_MAX + 2).strip()
    except FileNotFoundError:
        raise InvalidInput(
            TOKEN_FIELD,
            f"token file {path} does not exist: create it, e.g. "
            f"'openssl rand -hex 32 > {path} && chmod 600 {path}'",
        ) from None
    except OSError as error:
        raise InvalidInput(
            TOKEN_FIELD, f"cannot read token file {path}: {error.strerror}"
        ) from None
    if not TOKEN_MIN <= len(data) <= TOKEN_MAX or not all(0x21 <= b <= 0x7E for b in data):
        raise InvalidInput(
            TOKEN_FIELD,
            f"token file {path} must hold one token of {TOKEN_MIN}-{TOKEN_MAX} printable ASCII "
            "characters without spaces (e.g. 'openssl rand -hex 32')",
        )
    return data


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RequestLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger aiohttp's request handler gets (its ``logger`` argument): a request it
    could not parse becomes one line (no traceback), at most ``per_minute`` a minute, and
    is counted by reason in ``gateway_management_bad_requests`` whether logged or not."""

    def __init__(
        self,
        logger: logging.Logger,
        per_minute: int = LOGGED_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logger, {})
        self.per_minute = per_minute
        self.clock = clock
        self.window_start = clock()
        self.logged = 0
        self.unlogged = 0  # in the current window

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc_info = kwargs.pop("exc_info", None)
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if level < logging.WARNING and exc is None:
            if self.logger.isEnabledFor(level):  # aiohttp's own debug notes, one line
                self.logger.log(level, "http: " + str(msg), *args)
            return
        reason = type(exc).__name__ if exc is not None else "error"
        if exc is not None and not isinstance(exc, HttpProcessingError):
            reason = "internal"
        MANAGEMENT_BAD_REQUESTS.labels(reason).inc()
        if not self._may_log():
            return
        text = (str(msg) % args) if args else str(msg)
        if exc is not None:
            detail = " ".join(str(getattr(exc, "message", "") or exc).split())  # one line
            text += f": {reason}: {detail[:200]!r}"
        if reason == "internal":  # our handler failed, not the client: worth a traceback
            self.logger.error("management: %s", text, exc_info=exc)
        else:
            self.logger.warning("management: %s", text)

    def _may_log(self) -> bool:
        now = self.clock()
        if now - self.window_start >= 60.0:
            if self.unlogged:
                self.logger.warning(
                    "management: %d more bad requests in the last minute were not logged"
                    " (counted in gateway_management_bad_requests)",
                    self.unlogged,
                )
            self.window_start, self.logged, self.unlogged = now, 0, 0
        if self.logged >= self.per_minute:
            self.unlogged += 1
            return False
        self.logged += 1
        return True

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs


class ManagementServer:
    def __init__(
        self,
        host: str,
        port: int,
        status: Status,
        ready: Ready,
        token: bytes | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.status = status
        self.ready = ready
        self.token = token
        self.address: tuple[str, int] | None = None  # as bound (port 0: the one chosen)
        self.request_log = RequestLog(log)
        self._runner: web.AppRunner | None = None

    @classmethod
    def from_config(
        cls, config: ManagementConfig, status: Status, ready: Ready
    ) -> ManagementServer:
        """The listener ``config`` describes, its token read from ``token_file`` if set."""
        token = read_token(config.token_file) if config.token_file else None
        return cls(config.host, config.port, status, ready, token)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024, middlewares=[self._guard])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, logger=self.request_log
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ListenError(
                f"management: cannot listen on {self.host}:{self.port}: {reason}"
            ) from None
        server = site._server  # aiohttp exposes the asyncio server only here
        sockets = getattr(server, "sockets", None) or []
        host, port = sockets[0].getsockname()[:2] if sockets else (self.host, self.port)
        self.address = (host, port)
        log.info("management listening on %s:%d", host, port)
        self.warn_if_exposed()

    def warn_if_exposed(self) -> bool:
        """Warn (and say so) when the listener is reachable beyond loopback without a token."""
        if self.token is not None or is_loopback(self.host):
            return False
        log.warning(
            "management listens on %s beyond loopback without a token: anyone who can"
            " reach it reads /status and /metrics (set management.token_file)",
            self.host,
        )
        return True

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- access ------------------------------------------------------------------------------
    def authorised(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the token (constant time)."""
        if self.token is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode("utf-8", "replace"), self.token)

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in OPEN and not self.authorised(request.headers.get("Authorization")):
            MANAGEMENT_UNAUTHORIZED.inc()
            return web.json_response(
                {"status": "unauthorized", "problem": "send Authorization: Bearer TOKEN"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="gateway management"'},
            )
        return await handler(request)

    # -- handlers ---------------------------------------------------------------------------
    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        problems = await self.ready()
        if problems:
            return web.json_response({"status": "not ready", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())
