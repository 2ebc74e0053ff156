# What a running node is doing now, as one JSON-able dict (/status) and as metric readings.
"""Read from the live components (no query): carrier binds, outbound connections and their
states, SIP registrations, the delivery queue by lane, what waits for peers, the store's
health, and the running totals a ``gatewayctl status`` view turns into rates.

``readiness`` is the /readyz check: the store answers a trivial query within two seconds,
the writer is not in an outage and can go on (it has not failed), every configured
listener is bound, and file descriptors are not near the limit nor were short in the last
seconds (gateway/fds.py).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

import gateway
from gateway.config import Config
from gateway.fds import MARGIN, FdWatch, near_limit, open_count, soft_limit
from gateway.metrics import MESSAGES_ENDED, SMPP_RESPONSES, NodeCollector
from gateway.queue import LANES

STORE_CHECK_TIMEOUT = 2.0
# the store ping of /readyz runs on threads of its own: never behind bind password checks,
# reloads or counts in the default executor (two: one ping stuck on a locked store does
# not hold the next one back)
HEALTH = ThreadPoolExecutor(max_workers=2, thread_name_prefix="health")
Readings = list[tuple[tuple[str, ...], float]]


@dataclass
class Node:
    """The components of one running node (gateway/app.py builds it)."""

    config: Config
    engine: Engine
    started_at: datetime
    writer: Any
    smpp: Any
    sip: Any
    pipeline: Any
    connections: Any
    fds: FdWatch = field(default_factory=FdWatch)  # the one the SMPP server notes in

    # -- /status ----------------------------------------------------------------------------
    def status(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        return {
            "env": self.config.env,
            "version": gateway.__version__,
            "now": _iso(now),
            "started_at": _iso(self.started_at),
            "uptime_seconds": round((now - self.started_at).total_seconds(), 1),
            "store": self._store(),
            "listeners": self._listeners(),
            "binds": self._binds(),
            "connections": self._connections(),
            "registrations": self._registrations(now),
            "queue": self._queue(),
            "totals": self._totals(),
        }

    def _store(self) -> dict[str, Any]:
        down = self.writer.down
        return {"available": down is None, "problem": down, "pending_writes": self.writer.pending}

    def _listeners(self) -> dict[str, list[str]]:
        smpp = [f"{h}:{p}" + (" tls" if tls else "") for h, p, tls in self.smpp.addresses]
        sip = [f"{b.transport} {b.host}:{b.port}" for b in self.sip.transports.bound]
        return {"smpp": smpp, "sip": sip}

    def _binds(self) -> list[dict[str, Any]]:
        found = []
        for conn in sorted(self.smpp.connections, key=lambda c: (c.address, id(c))):
            if not conn.bound or conn.carrier is None:
                continue
            found.append(
                {
                    "carrier": conn.carrier.name,
                    "system_id": conn.carrier.system_id,
                    "bind_type": conn.bind_type,
                    "address": conn.address,
                    "tls": conn.tls,
                    "since": _iso(conn.bound_at) if conn.bound_at else None,
                    "unanswered": conn.session.outstanding,
                }
            )
        return found

    def _connections(self) -> list[dict[str, Any]]:
        found = []
        for cid, client in sorted(self.connections.clients().items()):
            s = client.settings
            found.append(
                {
                    "id": cid,
                    "name": s.name,
                    "peer": f"{s.host}:{s.port}" + (" tls" if s.tls else ""),
                    "bind_type": s.bind_type,
                    "state": client.state,
                    "retry_in": client.retry_delay if client.state != "bound" else None,
                    "waiting_for_window": client.queued,
                }
            )
        return found

    def _registrations(self, now: datetime) -> dict[str, int]:
        bindings = self.sip.bindings
        live = [len(bindings.contacts(a, now)) for a in bindings.accounts_with_bindings()]
        return {"accounts": sum(1 for n in live if n), "contacts": sum(live)}

    def _queue(self) -> dict[str, Any]:
        p = self.pipeline
        return {
            "lanes": {lane: p.queue.depth(lane) for lane in LANES},
            "in_flight": len(p.in_flight),
            "more_in_store": bool(p.store_backlog),
            "waiting_for_peers": p.waiting.snapshot(),
            "in_store_by_state": dict(sorted(p.in_store.items())),
        }

    def _totals(self) -> dict[str, int]:
        p = self.pipeline
        totals = {name: int(p.stats[name]) for name in ("forwarded", "retries", "parked")}
        for state in ("delivered", "failed", "expired", "rejected"):
            totals[state] = 0
        for sample in _samples(MESSAGES_ENDED):
            totals[sample.labels["state"]] = int(sample.value)
        totals["smpp_accepted"] = totals["smpp_refused"] = 0
        for sample in _samples(SMPP_RESPONSES):
            if sample.labels["command"] in ("submit_sm", "data_sm"):
                ok = sample.labels["status"] == "ESME_ROK"
                totals["smpp_accepted" if ok else "smpp_refused"] += int(sample.value)
        return totals

    # -- /readyz ----------------------------------------------------------------------------
    async def readiness(self) -> list[str]:
        problems: list[str] = []
        if self.writer.failure is not None:  # the node stops to be restarted (gateway/app.py)
            problems.append(f"store writer: {self.writer.failure}")
        if self.writer.down is not None:
            problems.append(f"store: unavailable ({self.writer.down})")
        else:
            loop = asyncio.get_running_loop()
            try:
                ping = loop.run_in_executor(HEALTH, self._ping)
                await asyncio.wait_for(ping, STORE_CHECK_TIMEOUT)
            except TimeoutError:
                problems.append(f"store: no answer within {STORE_CHECK_TIMEOUT:g}s")
            except SQLAlchemyError as exc:
                problems.append(f"store: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        if len(self.smpp.addresses) < len(self.config.smpp.listen):
            problems.append("smpp: not every listener is up")
        if len(self.sip.transports.bound) < len(self.config.sip.listen):
            problems.append("sip: not every listener is up")
        problems.extend(self._fd_problems(asyncio.get_running_loop().time()))
        return problems

    def _fd_problems(self, now: float) -> list[str]:
        """File descriptors near the limit now, or short within the last seconds."""
        found = []
        count, limit = open_count(), soft_limit()
        if count is not None and near_limit(count, limit):
            found.append(f"fds: {count} open of a limit of {limit} (within {MARGIN:.0%} of it)")
        shortage = self.fds.shortage(now)
        if shortage is not None:
            found.append(f"fds: {shortage}")
        return found

    def _ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # -- gauges for /metrics ----------------------------------------------------------------
    def collector(self) -> NodeCollector:
        def binds() -> Readings:
            count: dict[str, int] = {}
            for bind in self._binds():
                count[bind["carrier"]] = count.get(bind["carrier"], 0) + 1
            return [((name,), n) for name, n in sorted(count.items())]

        def blocked() -> Readings:
            places, pairs = self.smpp.guard.blocked(asyncio.get_running_loop().time())
            return [(("address",), places), (("system_id",), pairs)]

        def queue() -> Readings:
            return [((lane,), n) for lane, n in self._queue()["lanes"].items()]

        def registrations() -> Readings:
            r = self._registrations(datetime.now(UTC))
            return [(("accounts",), r["accounts"]), (("contacts",), r["contacts"])]

        def connections() -> Readings:
            return [((c["name"], c["state"]), 1) for c in self._connections()]

        def waiting() -> Readings:
            return [((route,), n) for route, n in self.pipeline.waiting.snapshot().items()]

        def store() -> Readings:
            return [((), 1 if self.writer.down is None else 0)]

        def by_state() -> Readings:
            counts = self.pipeline.in_store
            states = ("accepted", "routed", "sending", "retry-wait", "forwarded")
            return [((state,), counts.get(state, 0)) for state in states]

        return NodeCollector(
            {
                "gateway_smpp_binds": ("Carrier binds now, by carrier.", ("carrier",), binds),
                "gateway_smpp_blocked_sources": (
                    "Sources refused by the failed-bind guard now: scope=address (every"
                    " system_id) or scope=system_id (one system_id from one address).",
                    ("scope",), blocked,
                ),
                "gateway_smpp_bind_checks_waiting": (
                    "Bind password checks waiting for a check thread.", (),
                    lambda: [((), self.smpp.checks.waiting)],
                ),
                "gateway_queue_depth": (
                    "Messages queued in memory to be sent, by lane.", ("lane",), queue,
                ),
                "gateway_in_flight": (
                    "Messages being sent now.", (), lambda: [((), len(self.pipeline.in_flight))]
                ),
                "gateway_sip_registrations": (
                    "Registered accounts and live contacts.", ("kind",), registrations,
                ),
                "gateway_connection_state": (
                    "Outbound connections by state (1 per connection).",
                    ("connection", "state"), connections,
                ),
                "gateway_waiting_for_peers": (
                    "Messages waiting to be taken by a route's peer, by route.", ("route",),
                    waiting,
                ),
                "gateway_store_available": (
                    "1 while the store takes writes, 0 during an outage.", (), store,
                ),
                "gateway_messages": (
                    "Messages not ended yet, by state, as last counted in the store (every"
                    " 30 s); ended ones: gateway_messages_ended_total.", ("state",), by_state,
                ),
            }
        )  # fmt: skip


def _samples(counter: Any) -> list[Any]:
    """The ``_total`` samples of a labelled counter (its public collect())."""
    return [s for metric in counter.collect() for s in metric.samples if s.name.endswith("_total")]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
