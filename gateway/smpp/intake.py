# Who may open an SMPP connection before it binds: allow-listed addresses, capped unbound ones.
"""The decision taken when a TCP connection arrives, before a byte of it is read.

A connection is *unbound* from its accept until its bind succeeds (or it goes away); the
allow-list of the carriers is otherwise only checked at bind, so without these rules anyone
could hold sockets open and exhaust the node's file descriptors (issue 15). Three rules:

- an address that no carrier's ``allowed_networks`` contains is refused
  (``smpp.refuse_unknown_addresses``; a carrier always names at least one network, and an
  empty list allows nothing, as :meth:`Carrier.allows` does);
- at most ``smpp.max_unbound_per_address`` unbound connections per address;
- at most ``smpp.max_unbound`` unbound connections in all.

Refusals are logged at most once per address per minute (:class:`RefusalLog`) and the rest
summed up in one line a minute, so a flood cannot flood the log. Sans-IO: the caller passes
``now`` (monotonic seconds) and does the closing, logging and counting.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from enum import StrEnum

from gateway.smpp.carriers import Carrier, Network

LOG_EVERY = 60.0
"""Seconds between two refusal lines about one address, and between two summaries."""

MAX_LOGGED_ADDRESSES = 4096
"""Addresses remembered for the once-a-minute rule; beyond: only the summary tells."""


class Refusal(StrEnum):
    """Why a connection was closed unread (the ``reason`` label of the refusal metric)."""

    UNKNOWN_ADDRESS = "unknown_address"  # no carrier allows it
    PER_ADDRESS = "per_address"  # max_unbound_per_address reached
    TOTAL = "total"  # max_unbound reached
    FD_LIMIT = "fd_limit"  # the process is near its file descriptor limit


REASONS = {
    Refusal.UNKNOWN_ADDRESS: "no carrier allows this address",
    Refusal.PER_ADDRESS: "too many unbound connections from this address",
    Refusal.TOTAL: "too many unbound connections",
    Refusal.FD_LIMIT: "near the file descriptor limit",
}


class AllowedAddresses:
    """Whether any carrier allows an address; the carriers' networks are merged once per
    directory load (the directory hands out a new tuple on every load)."""

    def __init__(self) -> None:
        self._source: Sequence[Carrier] | None = None
        self._networks: tuple[Network, ...] = ()

    def allows(self, address: str, carriers: Sequence[Carrier]) -> bool:
        if carriers is not self._source:
            self._source = carriers
            nets = [net for carrier in carriers for net in carrier.networks]
            v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
            v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
            merged: list[Network] = [*ipaddress.collapse_addresses(v4)]
            merged += ipaddress.collapse_addresses(v6)
            self._networks = tuple(merged)
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # as Carrier.allows: a dual-stack socket's IPv4 peer
        return any(ip in net for net in self._networks if net.version == ip.version)


class UnboundCounter:
    """Unbound connections per address and in all, under their caps."""

    def __init__(self, per_address: int, total: int) -> None:
        self.per_address = per_address
        self.total = total
        self.count = 0
        self._by_address: dict[str, int] = {}

    def admit(self, address: str) -> Refusal | None:
        """Count a new unbound connection from ``address``, or say why it is refused."""
        if self.count >= self.total:
            return Refusal.TOTAL
        held = self._by_address.get(address, 0)
        if held >= self.per_address:
            return Refusal.PER_ADDRESS
        self._by_address[address] = held + 1
        self.count += 1
        return None

    def release(self, address: str) -> None:
        """An admitted connection bound or went away (call once per admitted connection)."""
        held = self._by_address.get(address, 0)
        if held <= 0:
            return
        self.count -= 1
        if held == 1:
            del self._by_address[address]
        else:
            self._by_address[address] = held - 1

    def of(self, address: str) -> int:
        return self._by_address.get(address, 0)


class RefusalLog:
    """At most one line per address per ``every`` seconds; the others are summed up in
    :meth:`summary`, which the caller asks for once per ``every`` while refusals go on."""

    def __init__(self, every: float = LOG_EVERY, max_addresses: int = MAX_LOGGED_ADDRESSES) -> None:
        self.every = every
        self.max_addresses = max_addresses
        self._logged: dict[str, float] = {}  # address -> when its last line was written
        self._refused: dict[Refusal, int] = {}  # since the last summary
        self._quiet = 0  # of them not logged
        self._addresses: set[str] = set()  # distinct addresses since the last summary, bounded

    def refused(self, address: str, reason: Refusal, now: float) -> bool:
        """Note a refusal; True when it deserves a log line of its own now."""
        self._refused[reason] = self._refused.get(reason, 0) + 1
        if len(self._addresses) < self.max_addresses:
            self._addresses.add(address)
        last = self._logged.get(address)
        if last is not None and now - last < self.every:
            self._quiet += 1
            return False
        if last is None and len(self._logged) >= self.max_addresses:
            self._forget(now)
            if len(self._logged) >= self.max_addresses:
                self._quiet += 1
                return False
        self._logged[address] = now
        return True

    def summary(self, now: float) -> str | None:
        """The refusals since the last summary in one line when some were not logged (None
        otherwise); starts a new period."""
        line = None
        if self._quiet:
            total = sum(self._refused.values())
            reasons = ", ".join(f"{r.value} {n}" for r, n in sorted(self._refused.items()))
            many = "+" if len(self._addresses) >= self.max_addresses else ""
            line = (
                f"in the last {self.every:g}s refused {total} connections ({reasons}) from"
                f" {len(self._addresses)}{many} addresses; {self._quiet} of them not logged"
                " one by one"
            )
        self._refused.clear()
        self._addresses.clear()
        self._quiet = 0
        self._forget(now)
        return line

    @property
    def pending(self) -> bool:
        """Refusals not logged yet wait for a summary."""
        return self._quiet > 0

    def _forget(self, now: float) -> None:
        self._logged = {a: t for a, t in self._logged.items() if now - t < self.every}
