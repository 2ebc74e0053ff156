# Provisioned subscribers: customers, products, accounts (SIP credentials) and their DIDs.
"""Customers own accounts; an account has a product (messaging or not), SIP credentials kept
only as digest HA1 values for the configured realm (RFC 7616 §3.4.2), and DIDs in E.164."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update

from gateway.errors import Conflict
from gateway.provisioning import fields as F
from gateway.provisioning.base import (
    Context,
    Kind,
    Record,
    history_uses,
    id_of,
    refuse_if_used,
    row_id,
)
from gateway.secrets import check_sip_password, ha1, sip_ha1_pair
from gateway.store.schema import accounts, customers, dids, products
from routing.numbers import normalise

ACCOUNT_ID = F.token(r"[A-Za-z0-9][A-Za-z0-9._+-]*", "an account id (letters, digits, . _ + -)", 64)


def _password(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise F.InvalidInput(field, "expected text")
    check_sip_password(value, field)
    return value


class Customers(Kind):
    name = "customer"
    section = "customers"
    table = customers
    store_key = "name"
    ref_help = "NAME"
    fields = (F.Field("name", F.name()),)

    def records(self, ctx: Context) -> dict[str, Record]:
        rows = ctx.conn.execute(select(customers.c.name).order_by(customers.c.name))
        return {name: {"name": name} for (name,) in rows}

    def insert(self, ctx: Context, record: Record) -> None:
        ctx.conn.execute(insert(customers).values(name=record["name"], created_at=ctx.now))

    def update(self, ctx: Context, key: str, record: Record) -> None:
        """A customer has nothing to change but its name, which is its key."""

    def delete(self, ctx: Context, key: str) -> None:
        pk = row_id(ctx, self, key)
        refuse_if_used(
            ctx, "customer", key, [(accounts, accounts.c.customer_id == pk, "has accounts")]
        )
        ctx.conn.execute(delete(customers).where(customers.c.id == pk))


class Products(Kind):
    name = "product"
    section = "products"
    table = products
    store_key = "name"
    ref_help = "NAME"
    fields = (F.Field("name", F.name()), F.Field("messaging", F.boolean, True))

    def records(self, ctx: Context) -> dict[str, Record]:
        rows = ctx.conn.execute(
            select(products.c.name, products.c.messaging).order_by(products.c.name)
        )
        return {n: {"name": n, "messaging": bool(m)} for n, m in rows}

    def insert(self, ctx: Context, record: Record) -> None:
        ctx.conn.execute(insert(products).values(**record, created_at=ctx.now))

    def update(self, ctx: Context, key: str, record: Record) -> None:
        ctx.conn.execute(
            update(products).where(products.c.name == key).values(messaging=record["messaging"])
        )

    def delete(self, ctx: Context, key: str) -> None:
        pk = row_id(ctx, self, key)
        refuse_if_used(
            ctx, "product", key, [(accounts, accounts.c.product_id == pk, "is used by accounts")]
        )
        ctx.conn.execute(delete(products).where(products.c.id == pk))


def assign_did(ctx: Context, e164: str, account_pk: int | None, account_key: str | None) -> None:
    """Put a DID on an account (None: back in the pool); a DID serves one account at a time."""
    row = ctx.conn.execute(
        select(dids.c.id, accounts.c.account_id)
        .select_from(dids.outerjoin(accounts, dids.c.account_id == accounts.c.id))
        .where(dids.c.e164 == e164)
    ).first()
    if row is not None and row.account_id not in (None, account_key) and account_pk is not None:
        raise Conflict(
            f"DID {e164} is already assigned to account {row.account_id}: "
            f"release it first ('gatewayctl did release {e164}')"
        )
    when = ctx.now if account_pk is not None else None
    if row is None:
        ctx.conn.execute(insert(dids).values(e164=e164, account_id=account_pk, assigned_at=when))
    else:
        ctx.conn.execute(
            update(dids).where(dids.c.id == row.id).values(account_id=account_pk, assigned_at=when)
        )


def normalise_dids(values: list[str], ctx: Context, field: str = "dids") -> list[str]:
    out = [normalise(v, ctx.plan, field=f"{field}[{i}]") for i, v in enumerate(values)]
    for i, e164 in enumerate(out):
        if e164 in out[:i]:
            raise F.InvalidInput(f"{field}[{i}]", f"{values[i]!r} is {e164}, listed twice")
    return sorted(out)


class Accounts(Kind):
    name = "account"
    section = "accounts"
    table = accounts
    store_key = "account_id"
    ref_help = "ID"
    fields = (
        F.Field("id", ACCOUNT_ID),
        F.Field("customer", F.name()),
        F.Field("product", F.name()),
        F.Field("dids", F.list_of(F.name(32), max_items=100), ()),
        F.Field("enabled", F.boolean, True),
        F.Field("password", _password, write_only=True),
    )

    def check(self, record: Record, ctx: Context) -> Record:
        record["dids"] = normalise_dids(record["dids"], ctx)
        return record

    def editable(self, record: Record) -> Record:
        return {**super().editable(record), "dids": ["+" + d for d in record["dids"]]}

    def records(self, ctx: Context) -> dict[str, Record]:
        rows = ctx.conn.execute(
            select(
                accounts.c.id,
                accounts.c.account_id,
                customers.c.name.label("customer"),
                products.c.name.label("product"),
                accounts.c.enabled,
            )
            .join(customers, accounts.c.customer_id == customers.c.id)
            .join(products, accounts.c.product_id == products.c.id)
            .order_by(accounts.c.account_id)
        ).all()
        numbers: dict[int, list[str]] = {}
        for account_pk, e164 in ctx.conn.execute(
            select(dids.c.account_id, dids.c.e164).where(dids.c.account_id.is_not(None))
        ):
            numbers.setdefault(account_pk, []).append(e164)
        return {
            r.account_id: {
                "id": r.account_id,
                "customer": r.customer,
                "product": r.product,
                "dids": sorted(numbers.get(r.id, [])),
                "enabled": bool(r.enabled),
            }
            for r in rows
        }

    def _refs(self, ctx: Context, record: Record) -> dict[str, int]:
        return {
            "customer_id": id_of(
                ctx, customers, "name", record["customer"], "customer", "customer"
            ),
            "product_id": id_of(ctx, products, "name", record["product"], "product", "product"),
        }

    def _credentials(self, ctx: Context, record: Record) -> dict[str, str]:
        pair = sip_ha1_pair(record["id"], ctx.realm, record["password"])
        return {
            "sip_realm": ctx.realm,
            "sip_ha1_md5": pair["MD5"],
            "sip_ha1_sha256": pair["SHA-256"],
        }

    def _sync_dids(self, ctx: Context, pk: int, key: str, wanted: list[str]) -> None:
        held = set(ctx.conn.execute(select(dids.c.e164).where(dids.c.account_id == pk)).scalars())
        for e164 in sorted(held - set(wanted)):
            assign_did(ctx, e164, None, None)
        for e164 in wanted:
            if e164 not in held:
                assign_did(ctx, e164, pk, key)

    def insert(self, ctx: Context, record: Record) -> None:
        pk = ctx.conn.execute(
            insert(accounts).values(
                account_id=record["id"],
                enabled=record["enabled"],
                created_at=ctx.now,
                updated_at=ctx.now,
                **self._refs(ctx, record),
                **self._credentials(ctx, record),
            )
        ).inserted_primary_key[0]
        self._sync_dids(ctx, pk, record["id"], record["dids"])

    def update(self, ctx: Context, key: str, record: Record) -> None:
        pk = row_id(ctx, self, key)
        values: dict[str, Any] = {"enabled": record["enabled"], "updated_at": ctx.now}
        values.update(self._refs(ctx, record))
        if "password" in record:
            values.update(self._credentials(ctx, record))
        ctx.conn.execute(update(accounts).where(accounts.c.id == pk).values(**values))
        self._sync_dids(ctx, pk, key, record["dids"])

    def delete(self, ctx: Context, key: str) -> None:
        pk = row_id(ctx, self, key)
        refuse_if_used(
            ctx,
            "account",
            key,
            history_uses("account_id", pk),
        )
        ctx.conn.execute(
            update(dids).where(dids.c.account_id == pk).values(account_id=None, assigned_at=None)
        )
        ctx.conn.execute(delete(accounts).where(accounts.c.id == pk))

    def secret_differs(self, ctx: Context, key: str, record: Record) -> bool:
        if "password" not in record:
            return False
        realm, stored = ctx.conn.execute(
            select(accounts.c.sip_realm, accounts.c.sip_ha1_sha256).where(
                accounts.c.account_id == key
            )
        ).one()
        return realm != ctx.realm or ha1(key, realm, record["password"], "SHA-256") != stored


class Dids(Kind):
    name = "did"
    section = "dids"
    table = dids
    store_key = "e164"
    ref_help = "DID"
    fields = (F.Field("did", F.name(32)), F.Field("account", F.optional(ACCOUNT_ID), None))

    def check(self, record: Record, ctx: Context) -> Record:
        record["did"] = normalise(record["did"], ctx.plan, field="did")
        return record

    def ref(self, ctx: Context, text: str) -> str:
        return normalise(text, ctx.plan, field="did")

    def editable(self, record: Record) -> Record:
        return {**super().editable(record), "did": "+" + record["did"]}

    def records(self, ctx: Context) -> dict[str, Record]:
        rows = ctx.conn.execute(
            select(dids.c.e164, accounts.c.account_id, dids.c.assigned_at)
            .select_from(dids.outerjoin(accounts, dids.c.account_id == accounts.c.id))
            .order_by(dids.c.e164)
        )
        return {
            e164: {"did": e164, "account": account, "assigned_at": at} for e164, account, at in rows
        }

    def _account_pk(self, ctx: Context, record: Record) -> int | None:
        if record["account"] is None:
            return None
        return id_of(ctx, accounts, "account_id", record["account"], "account", "account")

    def insert(self, ctx: Context, record: Record) -> None:
        assign_did(ctx, record["did"], self._account_pk(ctx, record), record["account"])

    def update(self, ctx: Context, key: str, record: Record) -> None:
        assign_did(ctx, key, self._account_pk(ctx, record), record["account"])

    def delete(self, ctx: Context, key: str) -> None:
        row = self.records(ctx)[key]
        if row["account"] is not None:
            raise Conflict(
                f"DID {key} is assigned to account {row['account']}: "
                f"release it first ('gatewayctl did release {key}')"
            )
        ctx.conn.execute(delete(dids).where(dids.c.e164 == key))
