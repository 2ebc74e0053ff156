# Destination resolution: local DID, else service policies in failover order, else reject.
"""Where a message to an E.164 destination goes, decided from an immutable in-memory snapshot.

:meth:`RoutingTable.resolve` answers in this order (issue 5):

1. **Local.** The destination is a DID assigned to an enabled account whose product includes
   messaging: ``kind="local"``.  Whether the app is registered right now does not matter here;
   the pipeline delivers over SIP when it is, and keeps the message until it registers when
   it is not.
2. **Forward.** Otherwise every service policy whose pattern matches (see
   :mod:`routing.patterns`) and whose target is enabled, as ``routes`` in failover order:
   most specific pattern first, then the lower priority number, then the target's name (so
   the order never depends on the order rows were read).  A policy's target is an outbound
   connection (submit_sm to a peer) or a carrier that binds to us (``Route.carrier``: the
   message goes to it as an MO deliver_sm on one of its receiver binds).  A target reached
   through several matching patterns is listed once, at its best place.
   :meth:`RoutingTable.next_route` skips the connections the caller knows to be down or refusing.
3. **Reject** with a reason a person can act on (the caller answers ESME_RINVDSTADR at submit
   time, 404 to a SIP sender).

**A DID of this environment that cannot take messages is rejected, never forwarded.** That
covers a DID whose account is disabled, whose product lacks messaging, and a DID in the pool
(not assigned to any account; the optional ``pool`` of :meth:`RoutingTable.build`).  The
number belongs to this environment, so no other environment or vendor can deliver it:
falling through to the policies would hand a subscriber's messages to a broad pattern (a
catch-all ``%`` or a national ``964%`` towards a vendor), bill the carrier for a delivery
that cannot happen, and between two environments whose policies cover each other's ranges
it would start a ping-pong between them.  The reason names the account and what is
wrong with it, so the admin sees at once that enabling the account or changing its product
fixes it.

Matching policies whose connections are all disabled also reject, and the reason names
those connections (a disabled connection is never a route).  A destination that is not
E.164 digits (1 to 15 digits, no '+') is rejected as such; numbers are normalised at the
edge before they get here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal

from gateway.errors import InvalidInput
from routing.numbers import MAX_E164_DIGITS
from routing.patterns import PatternTable, normalise_pattern

MAX_NAMED_IN_REASON = 3
"""How many disabled connections a reject reason names before it says "and N more"."""


@dataclass(frozen=True, slots=True)
class LocalAccount:
    """The account a destination DID belongs to."""

    account: int  # accounts.id
    account_id: str  # what the admin typed and the app registers as
    did: str  # the destination, E.164 digits


@dataclass(frozen=True, slots=True)
class Route:
    """One target a destination may be forwarded to: an outbound connection, or (``carrier``
    True) a carrier bound to us, then ``connection`` holds the carrier's id."""

    connection: int  # connections.id, or carriers.id when ``carrier``
    name: str  # the connection's (or carrier's) name
    pattern: str  # the policy pattern that matched (normalised)
    priority: int  # that policy's priority
    carrier: bool = False  # the target is a carrier (MO deliver_sm on its receiver binds)

    @property
    def key(self) -> str:
        """How the message's ``route`` names this target: ``smpp:NAME`` or ``carrier:NAME``."""
        return f"{'carrier' if self.carrier else 'smpp'}:{self.name}"

    @property
    def what(self) -> str:
        return "carrier" if self.carrier else "connection"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :meth:`RoutingTable.resolve`.

    ``local`` is set only for ``kind="local"``; ``routes`` is non-empty only for
    ``kind="forward"`` (failover order).  ``reason`` says why, in words: for a reject it is
    the text to log and to put in the message's reason; for the others it is a trace line.
    """

    kind: Literal["local", "forward", "reject"]
    local: LocalAccount | None
    routes: tuple[Route, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class _Did:
    local: LocalAccount | None  # None: in the pool
    enabled: bool
    messaging: bool


@dataclass(frozen=True, slots=True)
class _Policy:
    route: Route
    enabled: bool


class RoutingTable:
    """An immutable snapshot of DIDs and service policies; :meth:`resolve` does no I/O.

    Build it with :meth:`build`; replace it whole when provisioning changes.
    """

    __slots__ = ("_dids", "_policies", "_policy_count")

    def __init__(self, dids: dict[str, _Did], policies: PatternTable[_Policy]) -> None:
        self._dids = dids
        self._policies = policies
        self._policy_count = len(policies)

    @classmethod
    def build(
        cls,
        *,
        dids: Iterable[tuple[str, int, str, bool, bool]],
        policies: Iterable[tuple[str, int, str, int, bool] | tuple[str, int, str, int, bool, bool]],
        pool: Iterable[str] = (),
    ) -> RoutingTable:
        """A table from store rows.

        ``dids``: ``(e164, accounts.id, account_id, account enabled, product messaging)`` for
        every assigned DID.  ``policies``: ``(pattern, connections.id, connection name,
        priority, connection enabled)``, or the same for a carrier with a sixth item True
        (carriers.id, carrier name, ..., carrier enabled, True).  ``pool``: DIDs of this
        environment assigned to no account.  A pattern that is not valid raises InvalidInput
        located as ``policies[i].pattern`` (the store only holds valid ones: provisioning
        checks them).
        """
        table: dict[str, _Did] = {e164: _Did(None, False, False) for e164 in pool}
        for e164, account, account_id, enabled, messaging in dids:
            table[e164] = _Did(LocalAccount(account, account_id, e164), enabled, messaging)
        entries: list[tuple[str, int, _Policy]] = []
        for index, row in enumerate(policies):
            raw, connection, name, priority, enabled = row[:5]
            carrier = bool(row[5]) if len(row) > 5 else False
            try:
                pattern = normalise_pattern(raw)
            except InvalidInput as error:
                raise error.under(f"policies[{index}]") from None
            route = Route(connection, name, pattern, priority, carrier)
            entries.append((pattern, priority, _Policy(route, enabled)))
        # PatternTable breaks ties by the order it is given: make that the connection name.
        entries.sort(key=lambda e: (e[2].route.name, e[2].route.carrier, e[2].route.connection))
        return cls(table, PatternTable(entries))

    @property
    def did_count(self) -> int:
        """DIDs known to this environment (assigned or in the pool)."""
        return len(self._dids)

    @property
    def policy_count(self) -> int:
        """Service policies, including those over disabled connections."""
        return self._policy_count

    def resolve(self, destination: str) -> Decision:
        """Where a message to ``destination`` (E.164 digits) goes; see the module docstring."""
        did = self._dids.get(destination)
        if did is not None:
            return _local_decision(destination, did)
        if not (
            destination.isascii() and destination.isdigit() and len(destination) <= MAX_E164_DIGITS
        ):
            return _reject(
                f"{destination!r} is not an E.164 number "
                f"(1 to {MAX_E164_DIGITS} digits without '+')"
            )
        routes: list[Route] = []
        seen: set[tuple[bool, int]] = set()
        disabled: list[Route] = []
        for policy in self._policies.lookup(destination):
            route = policy.route
            if not policy.enabled:
                disabled.append(route)
            elif (route.carrier, route.connection) not in seen:
                seen.add((route.carrier, route.connection))
                routes.append(route)
        if routes:
            first = routes[0]
            more = f" (then {len(routes) - 1} more for failover)" if len(routes) > 1 else ""
            return Decision(
                "forward",
                None,
                tuple(routes),
                f"{destination} matches {first.pattern}: {first.what} {first.name!r}{more}",
            )
        if disabled:
            return _reject(
                f"no route for {destination}: the matching policies point only at disabled "
                f"{_kinds(disabled)} ({_named(disabled)})"
            )
        return _reject(f"no route for {destination}: no local DID and no policy matches")

    def next_route(self, decision: Decision, *, down: Collection[int]) -> Route | None:
        """The first route of ``decision`` whose connection is not in ``down`` (failover).

        None when every route is down, or when the decision is not a forward.
        """
        for route in decision.routes:
            if not route.carrier and route.connection not in down:
                return route
        return None


def _local_decision(destination: str, did: _Did) -> Decision:
    local = did.local
    if local is None:
        return _reject(
            f"{destination} is a DID of this environment that is not assigned to any account"
        )
    problems = []
    if not did.enabled:
        problems.append("is disabled")
    if not did.messaging:
        problems.append("has a product without messaging")
    if problems:
        return _reject(
            f"{destination} is a DID of account {local.account_id}, which {' and '.join(problems)}"
        )
    return Decision("local", local, (), f"{destination} is a DID of account {local.account_id}")


def _reject(reason: str) -> Decision:
    return Decision("reject", None, (), reason)


def _kinds(routes: list[Route]) -> str:
    kinds = sorted({"carriers" if r.carrier else "connections" for r in routes})
    return " and ".join(kinds)


def _named(routes: list[Route]) -> str:
    names: list[str] = []
    for route in routes:
        text = f"{route.name!r} via {route.pattern}"
        if text not in names:
            names.append(text)
    shown = ", ".join(names[:MAX_NAMED_IN_REASON])
    rest = len(names) - MAX_NAMED_IN_REASON
    return f"{shown} and {rest} more" if rest > 0 else shown
