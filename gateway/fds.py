# File descriptors: the process's limit (raised at start), how many are open, exhaustion seen.
"""A node holds one descriptor per connection; at the RLIMIT_NOFILE soft limit ``accept()``
fails with EMFILE and nobody can connect, the management listener included (issue 15).

- :func:`raise_limit` lifts the soft limit to the hard one (``gatewayctl serve``).
- :func:`open_count` counts the descriptors open now (``/proc/self/fd``; Linux, or
  ``/dev/fd`` elsewhere) for ``/readyz``.
- :class:`FdWatch` remembers when descriptors last ran short: an accept that failed with
  EMFILE/ENFILE (the standard event loop reports it to the loop's exception handler as
  "socket.accept() out of system resource" and pauses that listener for a second; uvloop's
  libuv accepts and closes such connections silently, so it is seen by the next check), or a
  connection accepted on a descriptor number within the margin of the limit (descriptors
  are numbered lowest free first, so descriptor ``n`` means at least ``n + 1`` are open).
"""

from __future__ import annotations

import logging
import math
import os
import resource
from collections.abc import Callable
from typing import Any

log = logging.getLogger("gateway")

MARGIN = 0.05
"""Share of the limit kept free: beyond ``limit - reserve(limit)`` descriptors the node is
not ready and new unbound SMPP connections are closed at once."""

RECENT = 10.0
"""Seconds a shortage stays reported by /readyz after it was last seen."""

OUT_OF_RESOURCE = "socket.accept() out of system resource"  # asyncio.selector_events

Handler = Callable[[Any, dict[str, Any]], object]


def soft_limit() -> int | None:
    """RLIMIT_NOFILE's soft limit; None when unlimited."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_limit() -> tuple[int, int, int]:
    """Lift the soft limit to the hard one: (soft before, soft now, hard); -1 is unlimited."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # e.g. a hard limit above what the system allows
            return soft, soft, hard
    return soft, hard, hard


def reserve(limit: int) -> int:
    """Descriptors kept free below ``limit`` (at least one)."""
    return max(1, math.ceil(limit * MARGIN))


def near_limit(count: int, limit: int | None) -> bool:
    """``count`` open descriptors are within the margin of ``limit``."""
    return limit is not None and count >= limit - reserve(limit)


def open_count() -> int | None:
    """Descriptors open in this process now; None where it cannot be told."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder)) - 1  # the listing's own descriptor
        except OSError:
            continue
    return None


class FdWatch:
    """When descriptors last ran short (monotonic seconds, as the event loop's clock)."""

    def __init__(self, recent: float = RECENT, log_every: float = 60.0) -> None:
        self.recent = recent
        self.log_every = log_every
        self.last: float | None = None
        self.what = ""
        self.failed_accepts = 0  # since start
        self._logged_at: float | None = None
        self._unlogged = 0

    def note(self, what: str, now: float) -> None:
        self.last, self.what = now, what

    def shortage(self, now: float) -> str | None:
        """What ran short within the last ``recent`` seconds, with how long ago."""
        if self.last is None or now - self.last > self.recent:
            return None
        return f"{self.what} {max(0.0, now - self.last):.0f}s ago"

    def accepted(self, fileno: int, now: float) -> bool:
        """A connection was accepted on descriptor ``fileno``: True (and noted) when that is
        within the margin of the limit."""
        if not near_limit(fileno + 1, soft_limit()):
            return False
        self.note(f"a connection was accepted on descriptor {fileno} near the limit", now)
        return True

    def exception_handler(self, previous: Handler | None) -> Handler:
        """A loop exception handler that notes failed accepts (one log line a minute at
        most, instead of a traceback for each) and passes anything else on to ``previous``
        (or the loop's default handler)."""

        def handle(loop: Any, context: dict[str, Any]) -> None:
            if context.get("message") != OUT_OF_RESOURCE:
                if previous is not None:
                    previous(loop, context)
                else:
                    loop.default_exception_handler(context)
                return
            exc = context.get("exception")
            reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else ""
            self.accept_failed(f"accept() failed ({reason or 'out of resources'})", loop.time())

        return handle

    def accept_failed(self, what: str, now: float) -> None:
        self.note(what, now)
        self.failed_accepts += 1
        if self._logged_at is not None and now - self._logged_at < self.log_every:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more since the last line)" if self._unlogged else ""
        log.error(
            "%s: %s open of a limit of %s; the listener pauses a second%s",
            what, open_count(), soft_limit(), more,
        )  # fmt: skip
        self._logged_at, self._unlogged = now, 0
