# The carriers allowed to bind, cached in memory and reloaded from the store (bind auth data).
"""Carrier settings the SMPP server needs on every bind and submission, without a query.

``CarrierDirectory.load`` reads the carriers table (a blocking call: run it in a thread);
the server reloads it every few seconds, so a carrier provisioned or changed with gatewayctl
is served without a restart. ``bind_status`` is the pure decision of a bind attempt.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from sqlalchemy import Engine, select

from gateway.secrets import verify_password
from gateway.smpp.constants import Status
from gateway.store.schema import carriers

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Carrier:
    id: int
    name: str
    system_id: str
    password_hash: str
    networks: tuple[Network, ...]
    max_binds: int
    throughput: int | None  # segments per second, None: no limit
    receipt_id: Literal["dec", "hex"]
    alphabet: Literal["gsm", "latin1"]
    enabled: bool
    concat: Literal["udh", "sar"] = "udh"  # how MO deliver_sm we send it are concatenated

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks if net.version == ip.version)


@dataclass(frozen=True, slots=True)
class CarrierIndex:
    """One reload's carriers by system_id and by id, and all of them (never changed once
    built): a reload assigns a new one in one statement, so a lookup during a reload sees
    the old carriers or the new ones, never a mix."""

    by_system_id: Mapping[str, Carrier]
    by_id: Mapping[int, Carrier]
    all: tuple[Carrier, ...]

    @classmethod
    def of(cls, loaded: list[Carrier]) -> CarrierIndex:
        return cls({c.system_id: c for c in loaded}, {c.id: c for c in loaded}, tuple(loaded))


class CarrierDirectory:
    """system_id -> Carrier, replaced whole on every reload."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._index = CarrierIndex({}, {}, ())
        self._loaded = False

    def load(self) -> None:
        with self._engine.connect() as conn:
            rows = conn.execute(select(carriers)).mappings().all()
        loaded = [
            Carrier(
                id=row["id"],
                name=row["name"],
                system_id=row["system_id"],
                password_hash=row["password_hash"],
                networks=tuple(ipaddress.ip_network(n) for n in row["allowed_networks"]),
                max_binds=row["max_binds"],
                throughput=row["throughput"],
                receipt_id=row["receipt_id_format"],
                alphabet="latin1" if row["data_coding_default"] == "latin1" else "gsm",
                enabled=bool(row["enabled"]),
                concat="sar" if row["concat"] == "sar" else "udh",
            )
            for row in rows
        ]
        before = self._index.all
        self._index = CarrierIndex.of(loaded)  # one assignment: lookups never see a mix
        changed = sorted({c.name for c in set(before) ^ set(loaded)})
        if self._loaded and changed:
            log.info("carriers reloaded: %s changed", ", ".join(changed))
        self._loaded = True

    def by_system_id(self, system_id: str) -> Carrier | None:
        return self._index.by_system_id.get(system_id)

    def by_id(self, carrier_id: int) -> Carrier | None:
        return self._index.by_id.get(carrier_id)

    def carriers(self) -> tuple[Carrier, ...]:
        """Every carrier, disabled ones included; a new tuple after each load."""
        return self._index.all


DUMMY_HASH = (
    "scrypt$16384$8$1$E9UltEKKipvs4LUrVlj+bw==$bJkYFPzulXQcAzyAWepEseSvb0FsqKh3CrmhWV3wyaU="
)
"""A hash of a random password nobody knows, with the parameters of real ones: checked in
place of a carrier's hash when there is none to check, so every refusal costs one scrypt."""


class BindVerdict(NamedTuple):
    status: int  # the bind_resp's command_status
    reason: str  # to log (never the password)
    guessing: bool = False  # counts towards blocking the address (BindGuard)
    kind: str = "ok"  # reason class for metrics (bounded label values)


def bind_status(carrier: Carrier | None, password: str, address: str) -> BindVerdict:
    """The answer to a bind. Blocking: runs one scrypt check whatever the outcome.

    An unknown system_id, a wrong password and a bind from outside the carrier's networks
    are guessing and get the same answer, ESME_RBINDFAIL, after the same work (a check
    against :data:`DUMMY_HASH` where there is no hash to check), so the wire does not tell
    which system_ids exist; the reason is for the log. A disabled carrier is answered
    ESME_RBINDFAIL too (only once its password was right) and is not guessing."""
    if carrier is None:
        verify_password(password, DUMMY_HASH)
        return BindVerdict(Status.ESME_RBINDFAIL, "unknown system_id", True, "unknown_system_id")
    if not carrier.allows(address):
        verify_password(password, DUMMY_HASH)
        reason = f"address {address} not allowed for carrier {carrier.name}"
        return BindVerdict(Status.ESME_RBINDFAIL, reason, True, "address_not_allowed")
    if not verify_password(password, carrier.password_hash):
        reason = f"wrong password for carrier {carrier.name}"
        return BindVerdict(Status.ESME_RBINDFAIL, reason, True, "wrong_password")
    if not carrier.enabled:
        reason = f"carrier {carrier.name} is disabled"
        return BindVerdict(Status.ESME_RBINDFAIL, reason, False, "disabled")
    return BindVerdict(Status.ESME_ROK, f"carrier {carrier.name}")
