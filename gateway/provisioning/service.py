# Admin operations on any provisioned kind: create, change, remove, list, show, each audited.
"""The one path every admin change takes, from the command line or from ``apply``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.errors import Conflict, InvalidInput
from gateway.provisioning import audit
from gateway.provisioning.base import Context, Kind, Record, not_found
from gateway.provisioning.fees import Fees
from gateway.provisioning.parties import Accounts, Customers, Dids, Products
from gateway.provisioning.peers import Carriers, Connections, Policies
from gateway.provisioning.tariffs import Tariffs

KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Customers(),
        Products(),
        Accounts(),
        Dids(),
        Carriers(),
        Connections(),
        Policies(),
        Tariffs(),
        Fees(),
    )
}


def kind(name: str) -> Kind:
    return KINDS[name]


def list_records(ctx: Context, k: Kind) -> list[Record]:
    return list(k.records(ctx).values())


def resolve(ctx: Context, k: Kind, ref: str) -> tuple[str, Record]:
    """The key and stored record named by a command-line reference; NotFound otherwise."""
    key = k.ref(ctx, ref)
    found = k.records(ctx).get(key)
    if found is None:
        raise not_found(k, ref)
    return key, found


def audited(record: Record, k: Kind, given: Mapping[str, Any]) -> Record:
    """The record as the audit log keeps it: secrets never, only that they were set."""
    out = dict(record)
    for name in k.secret_fields:
        if name in given:
            out[name] = audit.SECRET_SET
    return out


def create(ctx: Context, k: Kind, raw: Mapping[str, Any]) -> Record:
    """Validate and add one object; refuses one that exists already."""
    record = k.parse(raw, ctx)
    key = k.key(record)
    if key in k.records(ctx):
        raise Conflict(f"{k.name} {key!r} already exists")
    k.insert(ctx, record)
    after = k.records(ctx)[key]
    audit.record(ctx, "create", k.name, key, None, audited(after, k, record))
    return after


def change(ctx: Context, k: Kind, ref: str, changes: Mapping[str, Any]) -> Record:
    """Change some fields of one object (its key excepted); unchanged input is a no-op."""
    key, before = resolve(ctx, k, ref)
    record = k.parse({**k.editable(before), **changes}, ctx, creating=False)
    if k.key(record) != key:
        raise InvalidInput(k.fields[0].name, f"the key of a {k.name} cannot change")
    same = all(record[f] == before[f] for f in k.public_fields)
    if same and not k.secret_differs(ctx, key, record):
        return before
    k.update(ctx, key, record)
    after = k.records(ctx)[key]
    audit.record(ctx, "update", k.name, key, before, audited(after, k, record))
    return after


def remove(ctx: Context, k: Kind, ref: str) -> Record:
    """Delete one object; refused while others still depend on it."""
    key, before = resolve(ctx, k, ref)
    k.delete(ctx, key)
    audit.record(ctx, "delete", k.name, key, before, None)
    return before
