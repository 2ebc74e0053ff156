# The management HTTP listener: /metrics (Prometheus), /healthz, /readyz and /status (JSON).
"""Served by aiohttp (already the webhook plugin's client; well kept, asyncio-native) on
``management.host:management.port`` (loopback by default; nothing here needs a password,
so it must not face the internet).

- ``GET /healthz``: 200 while the event loop serves requests (liveness).
- ``GET /readyz``: 200 when the store answers and every listener is up, else 503; the body
  (JSON) says which check failed, so a load balancer's log tells why.
- ``GET /metrics``: the process registry (:mod:`gateway.metrics`) in Prometheus text format.
- ``GET /status``: what ``gatewayctl status`` shows, as JSON (:mod:`gateway.status`).

Anything else is 404; a method other than GET (or HEAD) is 405.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.metrics import REGISTRY

log = logging.getLogger("gateway.management")

Status = Callable[[], dict[str, Any]]
Ready = Callable[[], Awaitable[list[str]]]  # the failed checks; empty when ready


class ManagementServer:
    def __init__(self, host: str, port: int, status: Status, ready: Ready) -> None:
        self.host, self.port = host, port
        self.status = status
        self.ready = ready
        self.address: tuple[str, int] | None = None  # as bound (port 0: the one chosen)
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024)  # no request needs a body
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server  # aiohttp exposes the asyncio server only here
        sockets = getattr(server, "sockets", None) or []
        host, port = sockets[0].getsockname()[:2] if sockets else (self.host, self.port)
        self.address = (host, port)
        log.info("management listening on %s:%d", host, port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

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
