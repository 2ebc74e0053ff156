# Abuse and load guards: failed-auth throttling per source, token buckets, live-bind counts.
"""Small sans-IO guards the listeners consult; all times are monotonic float seconds.

- :class:`AuthGuard` slows down, then blocks, a source (peer IP) that keeps failing
  authentication. It knows nothing of SMPP: the SMPP server uses it for bind passwords and
  the SIP registrar for digest responses (docs/architecture.md rule 5: failed auth per source is
  bounded).
- :class:`BindGuard` is the SMPP bind variant: attempts are counted when they arrive (those
  still being checked included), per (address, system_id) first, and the whole address is
  blocked only when it fails for several system_ids; an admin can lift a block.
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
from typing import Any

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


def _check_limits(
    free_failures: int,
    max_failures: int,
    window: float,
    block: float,
    max_delay: float,
    max_sources: int,
) -> None:
    """The bounds both guards need of their settings; ValueError naming the first wrong one."""
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
        _check_limits(free_failures, max_failures, window, block, max_delay, max_sources)
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


@dataclass(slots=True)
class _Pair:
    """Failure state of one (address, system_id)."""

    failures: deque[float]
    """Times of recent failures, oldest first; at most ``max_failures`` kept."""
    last: float
    """Time of the last arrival or failure (orders eviction and expiry)."""
    blocked_until: float | None = None
    in_flight: int = 0
    """Attempts admitted and not yet decided (being delayed or checked)."""


@dataclass(slots=True)
class _Address:
    """Failure state of one address over all the system_ids it tried."""

    failed: dict[str, float]
    """system_id -> time of its last failure within the window (fewer than ``spread``)."""
    last: float
    blocked_until: float | None = None
    in_flight: int = 0


@dataclass(eq=False, slots=True)
class Attempt:
    """One admitted bind attempt: holds its places until :class:`BindGuard` hears the outcome."""

    address: str
    system_id: str
    pair: _Pair
    place: _Address
    done: bool = False


@dataclass(frozen=True, slots=True)
class BindAdmission:
    """What :meth:`BindGuard.arrive` says about a bind attempt."""

    allowed: bool
    """False: refuse without checking any password."""
    delay: float
    """Seconds the answer should be held back."""
    reason: str = ""
    """Why it was refused (for the log)."""
    blocked_until: float | None = None
    attempt: Attempt | None = None
    """The admitted attempt; report its outcome with failed/succeeded/release."""


class BindGuard:
    """Failed-bind guard for SMPP: bounded password checks whatever the concurrency.

    An attempt is counted when it **arrives** (:meth:`arrive`), before any password is
    checked: an (address, system_id) pair is admitted only while its failures within
    ``window`` plus its attempts still in flight stay below ``max_failures``, and an address
    only while fewer than ``max_failures`` of its attempts are in flight. So at most
    ``max_failures`` passwords are checked per pair and window, and at most ``max_failures``
    at once per address, however many binds arrive together. Answers are held back like
    :class:`AuthGuard` (after ``free_failures`` failures of the pair, 0.5 s doubling up to
    ``max_delay``; refusals ``max_delay``).

    Blocks: the pair reaching ``max_failures`` failures is blocked for ``block`` (a
    misconfigured client does not lock out a good carrier behind the same address); the
    whole address is blocked for ``block`` once failures for ``spread`` distinct system_ids
    fall within ``window`` (guessing across system_ids, unknown ones included). A success
    forgets the pair's failures and takes its system_id out of the address's count, not an
    active block. :meth:`unblock` lifts every block of an address (``gatewayctl carrier
    unblock``).

    Memory is bounded by ``max_sources`` pairs and as many addresses (oldest activity dropped
    first, like :class:`AuthGuard`); an :class:`Attempt` keeps references to its entries, so
    its places are given back even if they were dropped meanwhile.
    """

    def __init__(
        self,
        *,
        free_failures: int = 3,
        max_failures: int = 10,
        spread: int = 3,
        window: float = 300.0,
        block: float = 900.0,
        max_delay: float = 5.0,
        max_sources: int = 100_000,
    ) -> None:
        if spread < 1:
            raise ValueError(f"spread must be >= 1, got {spread}")
        _check_limits(free_failures, max_failures, window, block, max_delay, max_sources)
        self.free_failures = free_failures
        self.max_failures = max_failures
        self.spread = spread
        self.window = window
        self.block = block
        self.max_delay = max_delay
        self.max_sources = max_sources
        self._stale_after = max(window, block)
        self._pairs: OrderedDict[tuple[str, str], _Pair] = OrderedDict()
        self._addresses: OrderedDict[str, _Address] = OrderedDict()

    @property
    def tracked(self) -> int:
        """Pairs and addresses currently tracked."""
        return len(self._pairs) + len(self._addresses)

    def arrive(self, address: str, system_id: str, now: float) -> BindAdmission:
        """Admit (and count) a bind attempt, or refuse it without a password check."""
        self._expire(now)
        place = self._addresses.get(address)
        if place is not None and place.blocked_until is not None:
            if now < place.blocked_until:
                return self._refuse("address blocked: failed binds for several system_ids",
                                    place.blocked_until)  # fmt: skip
            place.blocked_until = None
        key = (address, system_id)
        pair = self._pairs.get(key)
        recent = 0
        if pair is not None:
            if pair.blocked_until is not None:
                if now < pair.blocked_until:
                    return self._refuse("too many failed binds for this system_id from this"
                                        " address", pair.blocked_until)  # fmt: skip
                pair.blocked_until = None
            recent = self._prune(pair.failures, now)
            if recent + pair.in_flight >= self.max_failures:
                return self._refuse("too many binds for this system_id being checked", None)
        if place is not None and place.in_flight >= self.max_failures:
            return self._refuse("too many binds from this address being checked", None)
        if pair is None:
            pair = self._pairs[key] = _Pair(failures=deque(maxlen=self.max_failures), last=now)
            _bound(self._pairs, self.max_sources)
        else:
            pair.last = now
            self._pairs.move_to_end(key)
        if place is None:
            place = self._addresses[address] = _Address(failed={}, last=now)
            _bound(self._addresses, self.max_sources)
        else:
            place.last = now
            self._addresses.move_to_end(address)
        pair.in_flight += 1
        place.in_flight += 1
        attempt = Attempt(address, system_id, pair, place)
        return BindAdmission(allowed=True, delay=self._delay_for(recent), attempt=attempt)

    def failed(self, attempt: Attempt, now: float) -> None:
        """The attempt was guessing (unknown system_id, wrong password, address not allowed)."""
        if not self._give_back(attempt):
            return
        pair, place = attempt.pair, attempt.place
        if self._pairs.get((attempt.address, attempt.system_id)) is pair:
            pair.last = now
            self._pairs.move_to_end((attempt.address, attempt.system_id))
            if pair.blocked_until is None or now >= pair.blocked_until:
                pair.blocked_until = None
                pair.failures.append(now)
                if self._prune(pair.failures, now) >= self.max_failures:
                    pair.blocked_until = now + self.block
                    pair.failures.clear()
        if self._addresses.get(attempt.address) is place:
            place.last = now
            self._addresses.move_to_end(attempt.address)
            if place.blocked_until is None or now >= place.blocked_until:
                place.blocked_until = None
                failed = place.failed
                horizon = now - self.window
                for system_id in [s for s, at in failed.items() if at <= horizon]:
                    del failed[system_id]
                failed.pop(attempt.system_id, None)
                failed[attempt.system_id] = now
                if len(failed) >= self.spread:
                    place.blocked_until = now + self.block
                    failed.clear()

    def succeeded(self, attempt: Attempt, now: float) -> None:
        """The carrier bound: forget the pair's failures (an active block stays)."""
        if not self._give_back(attempt):
            return
        attempt.pair.failures.clear()
        attempt.place.failed.pop(attempt.system_id, None)
        self._drop_if_clean(attempt, now)

    def release(self, attempt: Attempt, now: float) -> None:
        """The attempt ended without saying anything of the credentials (a full carrier, a
        disabled one, no room to check the password): give its places back, count nothing."""
        if self._give_back(attempt):
            self._drop_if_clean(attempt, now)

    def unblock(self, address: str) -> int:
        """Lift every block of ``address`` and forget its failures; returns how many blocks
        (the address's and its pairs') were active or pending."""
        lifted = 0
        place = self._addresses.pop(address, None)
        if place is not None:
            lifted += place.blocked_until is not None
        for key in [k for k in self._pairs if k[0] == address]:
            lifted += self._pairs.pop(key).blocked_until is not None
        return lifted

    def blocked(self, now: float) -> tuple[int, int]:
        """(addresses, (address, system_id) pairs) blocked at ``now`` (for metrics; O(tracked))."""
        places = sum(1 for p in self._addresses.values() if _active(p.blocked_until, now))
        pairs = sum(1 for p in self._pairs.values() if _active(p.blocked_until, now))
        return places, pairs

    def _refuse(self, reason: str, until: float | None) -> BindAdmission:
        return BindAdmission(allowed=False, delay=self.max_delay, reason=reason,
                             blocked_until=until)  # fmt: skip

    @staticmethod
    def _give_back(attempt: Attempt) -> bool:
        if attempt.done:
            return False
        attempt.done = True
        attempt.pair.in_flight -= 1
        attempt.place.in_flight -= 1
        return True

    def _drop_if_clean(self, attempt: Attempt, now: float) -> None:
        pair, place = attempt.pair, attempt.place
        key = (attempt.address, attempt.system_id)
        pair_clean = not self._prune(pair.failures, now) and not _active(pair.blocked_until, now)
        if self._pairs.get(key) is pair and pair.in_flight == 0 and pair_clean:
            del self._pairs[key]
        place_clean = not place.failed and not _active(place.blocked_until, now)
        if self._addresses.get(attempt.address) is place and place.in_flight == 0 and place_clean:
            del self._addresses[attempt.address]

    def _prune(self, failures: deque[float], now: float) -> int:
        horizon = now - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        return len(failures)

    def _delay_for(self, recent: int) -> float:
        if recent == 0 or recent < self.free_failures:
            return 0.0
        doublings = min(recent - max(self.free_failures, 1), _MAX_DOUBLINGS)
        return min(self.max_delay, math.ldexp(BASE_DELAY, doublings))

    def _expire(self, now: float) -> None:
        """Drop entries at the front with nothing in flight and no activity for longer than
        both ``window`` and ``block`` (they hold nothing any more)."""
        horizon = now - self._stale_after
        for table in (self._pairs, self._addresses):
            while table:
                entry = next(iter(table.values()))
                if entry.last > horizon or entry.in_flight:
                    break
                table.popitem(last=False)


def _active(until: float | None, now: float) -> bool:
    return until is not None and now < until


def _bound(table: OrderedDict[Any, Any], limit: int) -> None:
    while len(table) > limit:
        table.popitem(last=False)


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
