# Provisioned SMPP peers: carriers that bind to us, connections we bind out on, routing policies.
"""Carriers authenticate with system_id and a password kept only as a scrypt hash; outbound
connections keep theirs encrypted (the gateway must present it), never shown or logged.
Service policies send destinations matching a recipient pattern (``222%``) to a connection,
or to a carrier that binds to us (MO deliver_sm on its receiver binds): one of the two."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import delete, insert, select, update

from billing.periods import zone
from billing.settlement import BILLABLE
from gateway.errors import Conflict, InvalidInput
from gateway.provisioning import fields as F
from gateway.provisioning.base import (
    Context,
    Kind,
    NamedColumns,
    Record,
    history_uses,
    id_of,
    refuse_if_used,
    row_id,
)
from gateway.secrets import (
    check_smpp_password,
    check_smpp_system_id,
    hash_password,
    verify_password,
)
from gateway.store.schema import (
    carriers,
    cdrs,
    connections,
    fees,
    messages,
    policies,
    settlements,
    tariffs,
)
from routing.patterns import normalise_pattern

NAME = F.name(64)


def _system_id(value: Any, field: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidInput(field, f"expected text, got {value!r}")
    check_smpp_system_id(str(value), field)
    return str(value)


def _smpp_password(value: Any, field: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidInput(field, f"expected text, got {value!r}")
    check_smpp_password(str(value), field)
    return str(value)


def _timezone(value: Any, field: str) -> str:
    """The IANA zone of the carrier's billing months and tariff days."""
    zone(value, field)
    return str(value).strip()


def _pattern(value: Any, field: str) -> str:
    return normalise_pattern(str(value) if isinstance(value, int) else value, field)


class Carriers(NamedColumns):
    name = "carrier"
    section = "carriers"
    table = carriers
    store_key = "name"
    ref_help = "NAME"
    fields = (
        F.Field("name", NAME),
        F.Field("system_id", _system_id),
        F.Field("allow_ip", F.list_of(F.network, min_items=1, max_items=256)),
        F.Field("max_binds", F.integer(1, 64), 4),
        F.Field("throughput", F.optional(F.integer(1, 1_000_000)), None),
        F.Field("receipt_id", F.choice(("dec", "hex")), "dec"),
        F.Field("data_coding", F.choice(("gsm", "latin1")), "gsm"),
        F.Field("timezone", _timezone, "UTC"),
        F.Field("billable", F.choice(BILLABLE), "accepted"),
        F.Field("concat", F.choice(("udh", "sar")), "udh"),
        F.Field("enabled", F.boolean, True),
        F.Field("password", _smpp_password, write_only=True),
    )
    columns: ClassVar[dict[str, str]] = {
        "system_id": "system_id",
        "allow_ip": "allowed_networks",
        "max_binds": "max_binds",
        "throughput": "throughput",
        "receipt_id": "receipt_id_format",
        "data_coding": "data_coding_default",
        "timezone": "billing_timezone",
        "billable": "billable",
        "concat": "concat",
        "enabled": "enabled",
    }

    def _values(self, record: Record) -> dict[str, Any]:
        values = self.column_values(record)
        if "password" in record:
            values["password_hash"] = hash_password(record["password"])
        return values

    def _system_id_free(self, ctx: Context, record: Record, pk: int | None) -> None:
        other = ctx.conn.execute(
            select(carriers.c.id, carriers.c.name).where(
                carriers.c.system_id == record["system_id"]
            )
        ).first()
        if other is not None and other.id != pk:
            raise Conflict(
                f"system_id {record['system_id']!r} is already used by carrier {other.name!r}"
            )

    def insert(self, ctx: Context, record: Record) -> None:
        self._system_id_free(ctx, record, None)
        ctx.conn.execute(
            insert(carriers).values(
                name=record["name"], created_at=ctx.now, updated_at=ctx.now, **self._values(record)
            )
        )

    def update(self, ctx: Context, key: str, record: Record) -> None:
        pk = row_id(ctx, self, key)
        self._system_id_free(ctx, record, pk)
        ctx.conn.execute(
            update(carriers)
            .where(carriers.c.id == pk)
            .values(updated_at=ctx.now, **self._values(record))
        )

    def delete(self, ctx: Context, key: str) -> None:
        pk = row_id(ctx, self, key)
        refuse_if_used(
            ctx,
            "carrier",
            key,
            [
                (tariffs, tariffs.c.carrier_id == pk, "has tariffs"),
                (fees, fees.c.carrier_id == pk, "has volume fees"),
                (settlements, settlements.c.carrier_id == pk, "has settlements"),
                (policies, policies.c.carrier_id == pk, "is used by service policies"),
                *history_uses("carrier_id", pk),
            ],
        )
        ctx.conn.execute(delete(carriers).where(carriers.c.id == pk))

    def secret_differs(self, ctx: Context, key: str, record: Record) -> bool:
        if "password" not in record:
            return False
        stored = ctx.conn.execute(
            select(carriers.c.password_hash).where(carriers.c.name == key)
        ).scalar()
        return not verify_password(record["password"], stored or "")


class Connections(NamedColumns):
    name = "connection"
    section = "connections"
    table = connections
    store_key = "name"
    ref_help = "NAME"
    fields = (
        F.Field("name", NAME),
        F.Field("host", F.host),
        F.Field("port", F.integer(1, 65535)),
        F.Field("system_id", _system_id),
        F.Field("bind", F.choice(("trx", "tx", "rx")), "trx"),
        F.Field("window", F.integer(1, 1000), 10),
        F.Field("throughput", F.optional(F.integer(1, 1_000_000)), None),
        F.Field("tls", F.boolean, False),
        F.Field("enabled", F.boolean, True),
        F.Field("password", _smpp_password, write_only=True),
    )
    columns: ClassVar[dict[str, str]] = {
        "host": "host",
        "port": "port",
        "system_id": "system_id",
        "bind": "bind_type",
        "window": "window",
        "throughput": "throughput",
        "tls": "tls",
        "enabled": "enabled",
    }

    def _values(self, ctx: Context, record: Record) -> dict[str, Any]:
        values = self.column_values(record)
        if "password" in record:
            values["password_enc"] = ctx.secret_box().encrypt(record["password"])
        return values

    def insert(self, ctx: Context, record: Record) -> None:
        ctx.conn.execute(
            insert(connections).values(
                name=record["name"],
                created_at=ctx.now,
                updated_at=ctx.now,
                **self._values(ctx, record),
            )
        )

    def update(self, ctx: Context, key: str, record: Record) -> None:
        ctx.conn.execute(
            update(connections)
            .where(connections.c.name == key)
            .values(updated_at=ctx.now, **self._values(ctx, record))
        )

    def delete(self, ctx: Context, key: str) -> None:
        pk = row_id(ctx, self, key)
        refuse_if_used(
            ctx,
            "connection",
            key,
            [
                (policies, policies.c.connection_id == pk, "is used by service policies"),
                (
                    messages,
                    messages.c.connection_id == pk,
                    "has message history; disable it instead",
                ),
                (cdrs, cdrs.c.connection_id == pk, "has CDRs; disable it instead"),
            ],
        )
        ctx.conn.execute(delete(connections).where(connections.c.id == pk))

    def secret_differs(self, ctx: Context, key: str, record: Record) -> bool:
        if "password" not in record:
            return False
        token = ctx.conn.execute(
            select(connections.c.password_enc).where(connections.c.name == key)
        ).scalar()
        return ctx.secret_box().decrypt(token or "") != record["password"]


class Policies(Kind):
    name = "policy"
    section = "policies"
    table = policies
    store_key = "id"
    ref_help = "ID"
    ref_by_id = True
    fields = (
        F.Field("pattern", _pattern),
        F.Field("connection", F.optional(NAME), None),
        F.Field("carrier", F.optional(NAME), None),
        F.Field("priority", F.integer(0, 1000), 0),
    )

    def key(self, record: Record) -> str:
        if record.get("carrier") is not None:
            return f"{record['pattern']} -> carrier {record['carrier']}"
        return f"{record['pattern']} -> {record['connection']}"

    def check(self, record: Record, ctx: Context) -> Record:
        if (record["connection"] is None) == (record.get("carrier") is None):
            raise InvalidInput(
                "connection", "a policy targets either a connection or a carrier (one of the two)"
            )
        return record

    def records(self, ctx: Context) -> dict[str, Record]:
        rows = ctx.conn.execute(
            select(
                policies.c.id,
                policies.c.pattern,
                connections.c.name,
                carriers.c.name,
                policies.c.priority,
            )
            .outerjoin(connections, policies.c.connection_id == connections.c.id)
            .outerjoin(carriers, policies.c.carrier_id == carriers.c.id)
            .order_by(policies.c.pattern, policies.c.priority, policies.c.id)
        )
        out: dict[str, Record] = {}
        for pk, pattern, connection, carrier, priority in rows:
            record = {
                "id": pk,
                "pattern": pattern,
                "connection": connection,
                "carrier": carrier,
                "priority": priority,
            }
            out[self.key(record)] = record
        return out

    def insert(self, ctx: Context, record: Record) -> None:
        connection_pk = carrier_pk = None
        if record["connection"] is not None:
            connection_pk = id_of(
                ctx, connections, "name", record["connection"], "connection", "connection"
            )
        else:
            carrier_pk = id_of(ctx, carriers, "name", record["carrier"], "carrier", "carrier")
        ctx.conn.execute(
            insert(policies).values(
                pattern=record["pattern"],
                connection_id=connection_pk,
                carrier_id=carrier_pk,
                priority=record["priority"],
                created_at=ctx.now,
            )
        )

    def update(self, ctx: Context, key: str, record: Record) -> None:
        pk = self.records(ctx)[key]["id"]
        ctx.conn.execute(
            update(policies).where(policies.c.id == pk).values(priority=record["priority"])
        )

    def delete(self, ctx: Context, key: str) -> None:
        pk = self.records(ctx)[key]["id"]
        ctx.conn.execute(delete(policies).where(policies.c.id == pk))
