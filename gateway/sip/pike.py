# Per-source flood detection for the SIP listeners (the idea of Kamailio's pike module).
"""Counts what each source address sends and blocks an address that sends too much.

Per source (an IP address as text) the requests of the current sampling interval and of the
one before are counted; the rate estimate at ``now`` is the current count plus the previous
one weighted by the part of the previous interval still inside a sliding window of one
``interval`` (a sliding-window counter). When the estimate goes over ``limit`` the source is
blocked for ``block`` seconds: :meth:`Pike.check` answers ``False`` for everything it sends
meanwhile, so the caller drops it before parsing. What a blocked source sends is still
counted, so a source that keeps flooding is over the limit again the moment its block ends
and is blocked again at once; a source that calmed down starts afresh.

Memory is bounded: at most ``max_sources`` addresses are tracked, least recently heard
first out (an OrderedDict in last-heard order, O(1) per request). A flood from more
addresses than that (spoofed UDP sources) evicts entries, blocked ones included: bounded
memory wins over perfect memory, and such a flood is the network's job to stop.

Sans-IO: no clock, no I/O; the caller passes ``now`` (monotonic seconds) and logs or counts
what :meth:`Pike.check` reports (:attr:`Pike.newly_blocked` says when a block began and is
worth a log line: at most once per ``report_every`` seconds per source).
"""

from __future__ import annotations

import math
from collections import OrderedDict

MAX_SOURCES = 65_536
"""Addresses tracked at once (about 150 bytes each)."""

REPORT_EVERY = 60.0
"""Seconds between two reports (log lines) of the same blocked source."""


class _Source:
    __slots__ = ("blocked_until", "count", "previous", "reported", "start")

    def __init__(self, now: float) -> None:
        self.start = now  # when the current sampling interval began
        self.count = 0  # requests in the current interval
        self.previous = 0  # requests in the interval before it
        self.blocked_until = -math.inf
        self.reported = -math.inf  # when a block of this source was last reported


class Pike:
    """Block a source address that sends more than ``limit`` requests per ``interval`` s."""

    def __init__(
        self,
        limit: int,
        interval: float,
        block: float,
        *,
        max_sources: int = MAX_SOURCES,
        report_every: float = REPORT_EVERY,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval must be a positive number of seconds, got {interval}")
        if not (math.isfinite(block) and block >= 0):
            raise ValueError(f"block must be a number of seconds >= 0, got {block}")
        if max_sources < 1:
            raise ValueError(f"max_sources must be at least 1, got {max_sources}")
        self.limit = limit
        self.interval = float(interval)
        self.block = float(block)
        self.max_sources = max_sources
        self.report_every = report_every
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self.dropped = 0  # requests refused since start
        self.blocks = 0  # blocks begun since start
        self.newly_blocked = False  # the last check began a block worth reporting

    def __len__(self) -> int:
        return len(self._sources)

    def check(self, source: str, now: float) -> bool:
        """Count one request from ``source`` at ``now``; False when it must be dropped."""
        self.newly_blocked = False
        sources = self._sources
        entry = sources.get(source)
        if entry is None:
            if len(sources) >= self.max_sources:
                sources.popitem(last=False)
            entry = sources[source] = _Source(now)
        else:
            sources.move_to_end(source)
        elapsed = now - entry.start
        if elapsed >= self.interval:
            # a new sampling interval; the one just ended counts only if it was the last one
            entry.previous = entry.count if elapsed < 2 * self.interval else 0
            entry.count = 0
            entry.start = now - (elapsed % self.interval) if elapsed < 2 * self.interval else now
            elapsed = now - entry.start
        elif elapsed < 0:  # the clock went back (it should not): start the interval again
            entry.start = now
            elapsed = 0.0
        entry.count += 1
        if now < entry.blocked_until:
            self.dropped += 1
            return False
        weight = 1.0 - elapsed / self.interval
        if entry.count + entry.previous * weight <= self.limit:
            return True
        entry.blocked_until = now + self.block
        self.blocks += 1
        self.dropped += 1
        if now - entry.reported >= self.report_every:
            entry.reported = now
            self.newly_blocked = True
        return False

    def blocked(self, source: str, now: float) -> bool:
        """Whether ``source`` is blocked at ``now`` (nothing counted)."""
        entry = self._sources.get(source)
        return entry is not None and now < entry.blocked_until
