# Plugin webhook: HTTP POST of message outcomes and "waiting for an offline app" events.
"""Tells another system what happens to messages, e.g. to wake an app with a push service
when a message waits for it (``waiting``), or to feed a CRM with outcomes (``outcome``).

Options::

    url: http://127.0.0.1:8099/sms-events   # required, http or https
    events: [outcome, waiting]              # which events to post (default: both)
    timeout: 5                              # seconds per POST (default 5)
    max_queued: 10000                       # events waiting to be posted (default 10000)
    retries: 3                              # further tries of a failed POST (default 3)
    headers: {Authorization: "Bearer ..."}  # extra request headers

Each event is one POST with a JSON body (:meth:`plugins.OutcomeEvent.as_json`: event,
message_id, state, source, destination, route, reason, error_code, at). Posting never holds
up a message: events wait in a bounded queue for one sender task; when it is full the event
is dropped and counted (``dropped``), a POST that fails every try is counted (``failed``).
The HTTP client is aiohttp (well kept, asyncio-native; it also serves the management
listener later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from plugins import OutcomeEvent, PluginError

log = logging.getLogger("gateway.plugins.webhook")

EVENTS = ("outcome", "waiting")
RETRY_PAUSE = 0.5  # seconds before the first retry, doubling


def _number(options: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise PluginError(key, f"must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


class Webhook:
    def __init__(self, options: Mapping[str, Any]) -> None:
        unknown = set(options) - {"url", "events", "timeout", "max_queued", "retries", "headers"}
        if unknown:
            raise PluginError(sorted(unknown)[0], "unknown option")
        url = options.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise PluginError("url", f"must be an http:// or https:// URL, got {url!r}")
        events = options.get("events", list(EVENTS))
        if not isinstance(events, list) or not events or any(e not in EVENTS for e in events):
            raise PluginError("events", f"must list some of {', '.join(EVENTS)}, got {events!r}")
        headers = options.get("headers", {})
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise PluginError("headers", "must map header names to text values")
        self.url = url
        self.events = frozenset(events)
        self.timeout = _number(options, "timeout", 5, 0.1, 120)
        self.retries = int(_number(options, "retries", 3, 0, 20))
        self.headers = dict(headers)
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(
            int(_number(options, "max_queued", 10_000, 1, 1_000_000))
        )
        self.stats: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout), headers=self.headers
        )
        self._task = asyncio.get_running_loop().create_task(self._send_forever())

    async def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError):  # post what is queued, briefly
                await asyncio.wait_for(self.queue.join(), self.timeout)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    def on_outcome(self, event: OutcomeEvent) -> None:
        self._offer(event)

    def on_waiting(self, event: OutcomeEvent) -> None:
        self._offer(event)

    def _offer(self, event: OutcomeEvent) -> None:
        if event.event not in self.events:
            return
        try:
            self.queue.put_nowait(event.as_json())
        except asyncio.QueueFull:
            self.stats["dropped"] += 1
            if self.stats["dropped"] in (1, 100, 10_000):
                log.warning(
                    "webhook %s: queue full, %d events dropped", self.url, self.stats["dropped"]
                )

    async def _send_forever(self) -> None:
        while True:
            body = await self.queue.get()
            try:
                await self._post(body)
            finally:
                self.queue.task_done()

    async def _post(self, body: dict[str, Any]) -> None:
        assert self._session is not None
        pause = RETRY_PAUSE
        for attempt in range(self.retries + 1):
            try:
                async with self._session.post(self.url, json=body) as response:
                    if response.status < 300:
                        self.stats["posted"] += 1
                        return
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = str(exc) or type(exc).__name__
            if attempt < self.retries:
                await asyncio.sleep(pause)
                pause *= 2
        self.stats["failed"] += 1
        log.warning(
            "webhook %s: event for message %s not posted: %s", self.url, body["message_id"], problem
        )


def create(options: Mapping[str, Any]) -> Webhook:
    return Webhook(options)
