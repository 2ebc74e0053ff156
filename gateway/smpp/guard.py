# Abuse and load guards: failed-auth throttling per source, token buckets, live-bind counts.
"""Small sans-IO guards the listeners consult; all times are monotonic float seconds.

- :class:`AuthGuard` slows down, then blocks, a source (peer IP) that keeps failing
  authentication. It knows nothing of SMPP: the SMPP server uses it for bind passwords and
  the SIP registrar for digest responses (ARCHITECTURE rule 5: failed auth per source is
  bounded).
- :class:`TokenBucket` limits a carrier's throughput, counted in message segments.
- :class:`BindCounter` counts live binds per carrier to enforce ``max_binds``.

Nothing here reads a clock, sleeps or does I/O: the caller passes ``now`` (e.g.
``time.monotonic()`` or the event loop's ``loop.time()``) and acts on the answer, e.g. by
holding a bind_resp back for :attr:`Verdict.delay` seconds.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

BASE_DELAY = 0.5
"""Delay (seconds) after the first failure beyond the free ones; doubles with each further one."""

_MAX_DOUBLINGS = 64
"""Exponent cap so a large ``max_failures`` cannot overflow the delay computation."""

_EPSILON = 1e-9
"""Slack for float rounding, so waiting exactly :meth:`TokenBucket.wait_time` suffices."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :meth:`AuthGuard.check` says about an authentication attempt from a source."""

    allowed: bool
    """False while the source is blocked: refuse without verifying credentials."""
    delay: float
    """Seconds the answer to this attempt should be held back (0 for a clean source)."""
    blocked_until: float | None = None
    """Monotonic time the current block ends, or None when the source is not blocked."""


_ALLOW = Verdict(allowed=True, delay=0.0)


@dataclass(slots=True)
class _Source:
    """Failure state of one source."""

    failures: deque[float]
    """Times of recent failures, oldest first; at most ``max_failures`` kept."""
    last: float
    """Time of the last failure reported (orders eviction and expiry)."""
    blocked_until: float | None = field(default=None)


class AuthGuard:
    """Throttle then block sources that repeatedly fail authentication.

    Per source, failures within the last ``window`` seconds are counted. While fewer than
    ``free_failures`` are counted, answers are immediate; from then on each answer is held back
    0.5 s, 1 s, 2 s, ... (doubling per further failure) up to ``max_delay``; a source with no
    failure in the window is never delayed, so ``free_failures=0`` acts like 1. When
    ``max_failures`` failures fall within ``window``, the source is blocked for ``block``
    seconds: :meth:`check` answers ``allowed=False`` (with ``delay=max_delay``, so the refusal
    is held back too) and the failures that led to the block are
    forgotten, so once the block ends the source starts afresh. Failures reported during an
    active block neither count nor extend it. A success clears the failures but not an active
    block.

    Memory is bounded: at most ``max_sources`` sources are tracked. When a new source would
    exceed that, the sources whose last failure is oldest are dropped first (an OrderedDict in
    last-failure order, so every update is amortised O(1)); a source whose last failure is older
    than both ``window`` and ``block`` holds nothing and is dropped when :meth:`failed` finds it
    at the front, or when :meth:`check` finds it clean. An attacker
    spraying failures from more than ``max_sources`` addresses can therefore evict entries,
    including blocked ones, and regain free attempts for them: bounded memory wins over perfect
    memory. ``source`` is the caller's key, normally the peer's IP address as text.
    """

    def __init__(
        self,
        *,
        free_failures: int = 3,
        max_failures: int = 10,
        window: float = 300.0,
        block: float = 900.0,
        max_delay: float = 5.0,
        max_sources: int = 100_000,
    ) -> None:
        if free_failures < 0:
            raise ValueError(f"free_failures must be >= 0, got {free_failures}")
        if max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, got {max_failures}")
        if not (math.isfinite(window) and window > 0):
            raise ValueError(f"window must be a positive number of seconds, got {window}")
        if not (math.isfinite(block) and block >= 0):
            raise ValueError(f"block must be a non-negative number of seconds, got {block}")
        if not (math.isfinite(max_delay) and max_delay >= 0):
            raise ValueError(f"max_delay must be a non-negative number of seconds, got {max_delay}")
        if max_sources < 1:
            raise ValueError(f"max_sources must be >= 1, got {max_sources}")
        self.free_failures = free_failures
        self.max_failures = max_failures
        self.window = window
        self.block = block
        self.max_delay = max_delay
        self.max_sources = max_sources
        self._stale_after = max(window, block)
        self._sources: OrderedDict[str, _Source] = OrderedDict()

    @property
    def tracked(self) -> int:
        """Number of sources currently tracked (at most ``max_sources``)."""
        return len(self._sources)

    def check(self, source: str, now: float) -> Verdict:
        """Say whether ``source`` may attempt to authenticate now, and how long to hold the answer.

        Call before verifying credentials; then report the outcome with :meth:`failed` or
        :meth:`succeeded`.
        """
        entry = self._sources.get(source)
        if entry is None:
            return _ALLOW
        if entry.blocked_until is not None:
            if now < entry.blocked_until:
                return Verdict(
                    allowed=False, delay=self.max_delay, blocked_until=entry.blocked_until
                )
            entry.blocked_until = None
        recent = self._prune(entry, now)
        if recent == 0:
            del self._sources[source]
            return _ALLOW
        return Verdict(allowed=True, delay=self._delay_for(recent))

    def failed(self, source: str, now: float) -> None:
        """Record a failed authentication from ``source``; may start a block."""
        self._expire(now)
        entry = self._sources.get(source)
        if entry is None:
            entry = _Source(failures=deque(maxlen=self.max_failures), last=now)
            self._sources[source] = entry
            while len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
        else:
            entry.last = now
            self._sources.move_to_end(source)
        if entry.blocked_until is not None:
            if now < entry.blocked_until:
                return
            entry.blocked_until = None
        entry.failures.append(now)
        if self._prune(entry, now) >= self.max_failures:
            entry.blocked_until = now + self.block
            entry.failures.clear()

    def succeeded(self, source: str, now: float) -> None:
        """Record a successful authentication: clear the failures, keep an active block."""
        entry = self._sources.get(source)
        if entry is None:
            return
        if entry.blocked_until is not None and now < entry.blocked_until:
            entry.failures.clear()
            return
        del self._sources[source]

    def blocked_count(self, now: float) -> int:
        """Number of sources blocked at ``now`` (for metrics; O(tracked))."""
        return sum(
            1
            for entry in self._sources.values()
            if entry.blocked_until is not None and now < entry.blocked_until
        )

    def _prune(self, entry: _Source, now: float) -> int:
        """Forget failures older than ``window``; return how many remain."""
        failures = entry.failures
        horizon = now - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        return len(failures)

    def _delay_for(self, recent: int) -> float:
        """Hold-back for an attempt after ``recent`` failures within the window."""
        if recent == 0 or recent < self.free_failures:
            return 0.0
        doublings = min(recent - max(self.free_failures, 1), _MAX_DOUBLINGS)
        return min(self.max_delay, math.ldexp(BASE_DELAY, doublings))

    def _expire(self, now: float) -> None:
        """Drop sources at the front whose failures and block have all run out.

        A source's block ends at most ``block`` after its last failure and its failures count
        for ``window``, so one whose last failure is older than both holds nothing.
        """
        horizon = now - self._stale_after
        sources = self._sources
        while sources:
            entry = next(iter(sources.values()))
            if entry.last > horizon:
                break
            sources.popitem(last=False)


class TokenBucket:
    """Token bucket: ``rate`` tokens (message segments) per second, at most ``burst`` saved up.

    The bucket starts full at the first call. A request for more than ``burst`` tokens (a
    long message from a carrier with a low throughput) is granted when the bucket is full and
    leaves it in debt, paid back at ``rate`` before anything else passes; over time no more
    than ``rate`` passes either way. Time going backwards (it should not, on a monotonic
    clock) refills nothing.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number per second, got {rate}")
        if burst is None:
            burst = max(rate, 1.0)
        if not (math.isfinite(burst) and burst >= 1):
            raise ValueError(f"burst must be a number >= 1, got {burst}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._tokens = self.burst
        self._last: float | None = None

    def available(self, now: float) -> float:
        """Tokens available at ``now``."""
        self._refill(now)
        return self._tokens

    def take(self, n: int, now: float) -> bool:
        """Take ``n`` tokens if all are available; otherwise take none and return False."""
        if n < 0:
            raise ValueError(f"cannot take a negative number of tokens: {n}")
        self._refill(now)
        if n > self.burst:
            if self._tokens + _EPSILON < self.burst:
                return False
            self._tokens -= n  # the whole of it passes; the debt is paid back at ``rate``
            return True
        if self._tokens + _EPSILON < n:
            return False
        self._tokens = max(0.0, self._tokens - n)
        return True

    def wait_time(self, n: int, now: float) -> float:
        """Seconds until :meth:`take` of ``n`` will succeed (for more than ``burst``: until
        the bucket is full)."""
        if n < 0:
            raise ValueError(f"cannot wait for a negative number of tokens: {n}")
        self._refill(now)
        deficit = min(n, self.burst) - self._tokens
        if deficit <= _EPSILON:
            return 0.0
        return deficit / self.rate

    def _refill(self, now: float) -> None:
        last = self._last
        if last is None or now <= last:
            if last is None:
                self._last = now
            return
        self._tokens = min(self.burst, self._tokens + (now - last) * self.rate)
        self._last = now


class BindCounter:
    """Live binds per carrier id, to enforce a carrier's ``max_binds``.

    Counts never go negative and carriers with no live bind take no memory.
    """

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    def try_add(self, carrier_id: int, limit: int) -> bool:
        """Count one more bind for ``carrier_id`` unless it already has ``limit``; say which."""
        current = self._counts.get(carrier_id, 0)
        if current >= limit:
            return False
        self._counts[carrier_id] = current + 1
        return True

    def remove(self, carrier_id: int) -> bool:
        """Count one bind fewer; False (and nothing changes) if the carrier has none."""
        current = self._counts.get(carrier_id, 0)
        if current <= 0:
            return False
        if current == 1:
            del self._counts[carrier_id]
        else:
            self._counts[carrier_id] = current - 1
        return True

    def count(self, carrier_id: int) -> int:
        """Live binds of ``carrier_id``."""
        return self._counts.get(carrier_id, 0)

    @property
    def total(self) -> int:
        """Live binds over all carriers."""
        return sum(self._counts.values())
