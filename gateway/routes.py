# The routing table read from the store and cached in memory, replaced whole on reload.
"""DIDs and service policies for :class:`routing.router.RoutingTable`, without a query per
message.

:func:`load_routing_table` reads them with two queries (DIDs joined to their accounts and
products; policies joined to their connections or carriers).
:class:`RoutingCache` holds the current table; the node calls :meth:`RoutingCache.load`
(blocking: in a thread) at start and every couple of seconds, so a DID, account, connection,
carrier or policy changed with gatewayctl is routed by without a restart.  A reload that finds
the same rows keeps the table and its version; one that fails (store unreachable, a bad row)
raises and leaves the previous table in service.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select

from gateway.store.schema import accounts, carriers, connections, dids, policies, products
from routing.router import RoutingTable

DidRow = tuple[str, int | None, str | None, bool | None, bool | None]
"""(e164, accounts.id, account_id, account enabled, product messaging); None: in the pool."""

PolicyRow = tuple[str, int, str, int, bool, bool]
"""(pattern, target id, target name, priority, target enabled, the target is a carrier)."""


@dataclass(frozen=True, slots=True)
class RoutingRows:
    """What the routing table is built from, as read; equal rows mean an equal table."""

    dids: tuple[DidRow, ...]
    policies: tuple[PolicyRow, ...]

    def table(self) -> RoutingTable:
        assigned = [
            (e164, account, account_id, bool(enabled), bool(messaging))
            for e164, account, account_id, enabled, messaging in self.dids
            if account is not None and account_id is not None
        ]
        pool = [row[0] for row in self.dids if row[1] is None]
        return RoutingTable.build(dids=assigned, policies=self.policies, pool=pool)


def read_routing_rows(conn: Connection) -> RoutingRows:
    """The rows of DIDs (assigned and pooled) and of policies, in a stable order."""
    did_query = (
        select(
            dids.c.e164,
            accounts.c.id,
            accounts.c.account_id,
            accounts.c.enabled,
            products.c.messaging,
        )
        .select_from(dids)
        .outerjoin(accounts, accounts.c.id == dids.c.account_id)
        .outerjoin(products, products.c.id == accounts.c.product_id)
        .order_by(dids.c.e164)
    )
    policy_query = (
        select(
            policies.c.pattern,
            connections.c.id,
            connections.c.name,
            connections.c.enabled,
            carriers.c.id,
            carriers.c.name,
            carriers.c.enabled,
            policies.c.priority,
        )
        .select_from(policies)
        .outerjoin(connections, connections.c.id == policies.c.connection_id)
        .outerjoin(carriers, carriers.c.id == policies.c.carrier_id)
        .order_by(policies.c.id)
    )
    found_dids = tuple(
        (e164, account, account_id, _flag(enabled), _flag(messaging))
        for e164, account, account_id, enabled, messaging in conn.execute(did_query)
    )
    found_policies = tuple(
        (pattern, connection, name, priority, bool(enabled), False)
        if connection is not None
        else (pattern, carrier, carrier_name, priority, bool(carrier_enabled), True)
        for (
            pattern,
            connection,
            name,
            enabled,
            carrier,
            carrier_name,
            carrier_enabled,
            priority,
        ) in conn.execute(policy_query)
    )
    return RoutingRows(found_dids, found_policies)


def load_routing_table(conn: Connection) -> RoutingTable:
    """The routing table as the store holds it now (two queries)."""
    return read_routing_rows(conn).table()


class RoutingCache:
    """The current :class:`RoutingTable`; :meth:`load` replaces it when provisioning changed.

    ``table`` is read on the hot path (no lock, no query); ``version`` counts the loads that
    changed the content (1 after the first load), so callers can log each reload. A load
    replaces one immutable snapshot (rows, table, version) in one assignment: a reader
    never sees the table of one load with the version of another.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._current: _Loaded | None = None

    def load(self) -> bool:
        """Read the store (blocking); True when the content changed and the table was replaced.

        On an error the previous table stays in service and the error is raised to the caller.
        """
        with self._lock:
            with self._engine.connect() as conn:
                rows = read_routing_rows(conn)
            current = self._current
            if current is not None and rows == current.rows:
                return False
            version = 1 if current is None else current.version + 1
            self._current = _Loaded(rows, rows.table(), version)  # one assignment
            return True

    @property
    def table(self) -> RoutingTable:
        """The table in service; RuntimeError before the first successful :meth:`load`."""
        current = self._current
        if current is None:
            raise RuntimeError("the routing table has not been loaded yet: call load() first")
        return current.table

    @property
    def version(self) -> int:
        """How many loads changed the content: 0 before the first, 1 after it."""
        current = self._current
        return 0 if current is None else current.version


@dataclass(frozen=True, slots=True)
class _Loaded:
    """What one load put in service."""

    rows: RoutingRows
    table: RoutingTable
    version: int


def _flag(value: bool | None) -> bool | None:
    return None if value is None else bool(value)
