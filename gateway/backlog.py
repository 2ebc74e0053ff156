# Waiting messages per key (a number, a route), as last counted in the store plus changes since.
"""Bounds on what waits in the store, without a query per admission.

The pipeline counts now and then (every ``COUNT_SWEEP_EVERY`` sweeps) how many messages wait
per number (parked for an app that is offline) and per route (not yet taken by the peer a
route forwards to) and, in between, adds what it admits and takes off what leaves. A count
may be off by what happened while the store was being read; the next count corrects it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping


class WaitingCounts:
    """``limit`` waiting messages per key at most (summed over a group of keys, for a route
    that fails over between connections)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counted: dict[str, int] = {}
        self._since: Counter[str] = Counter()

    def recounted(self, counts: Mapping[str, int]) -> None:
        """The store's counts (keys not in it: none waiting, or too few to matter)."""
        self._counted = dict(counts)
        self._since = Counter()

    def added(self, key: str) -> None:
        self._since[key] += 1

    def left(self, key: str) -> None:
        self._since[key] -= 1

    def waiting(self, keys: Iterable[str]) -> int:
        # summed before clamping: a message counted under one connection of a route may
        # leave under another (it failed over)
        return max(0, sum(self._counted.get(k, 0) + self._since[k] for k in keys))

    def full(self, keys: Iterable[str]) -> bool:
        return self.waiting(keys) >= self.limit

    def snapshot(self) -> dict[str, int]:
        """Every key with messages waiting, and how many (for /status and /metrics)."""
        keys = set(self._counted) | set(self._since)
        found = {k: self.waiting([k]) for k in sorted(keys)}
        return {k: n for k, n in found.items() if n}
