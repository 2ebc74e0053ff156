# Declarative provisioning: a YAML document of the wanted state, diffed and applied at once.
"""``gatewayctl apply -f FILE``: each section present in the file (``customers``, ``products``,
``accounts``, ``carriers``, ``connections``, ``policies``, ``tariffs``) is the whole wanted
set of that kind: missing objects are created, differing ones updated, stored ones the file
does not list are deleted. Sections the file leaves out are not touched. Secrets are
write-only: given, they are set (and count as a change when they differ); left out, an
existing object keeps its own. Everything happens in the caller's one transaction, in
dependency order, so a failure anywhere changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from gateway import progress
from gateway.errors import GatewayError, InvalidInput
from gateway.provisioning import audit
from gateway.provisioning.base import Context, Kind, Record
from gateway.provisioning.service import KINDS, audited
from gateway.store.schema import accounts, dids

# Creation and update order; deletions run in reverse.
ORDER = ("customer", "product", "carrier", "connection", "account", "policy", "tariff", "fee")
SECTIONS = {KINDS[name].section: KINDS[name] for name in ORDER}


@dataclass
class Change:
    """One line of the diff."""

    action: str  # create | update | delete
    kind: Kind
    key: str
    where: str  # location in the file, for errors
    before: Record | None = None
    after: Record | None = None  # parsed wanted record (may hold secrets in memory)
    fields: list[str] = field(default_factory=list)

    def describe(self) -> str:
        label = f"{self.kind.name} {self.key!r}"
        if self.action == "create":
            return f"+ {label}"
        if self.action == "delete":
            return f"- {label}"
        assert self.before is not None and self.after is not None
        parts = []
        for name in self.fields:
            if name in self.kind.secret_fields:
                parts.append(f"{name} changed")
            else:
                parts.append(
                    f"{name}: {_show(self.before.get(name))} -> {_show(self.after.get(name))}"
                )
        return f"~ {label}: " + "; ".join(parts)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return "-" if value is None else str(value)


def _sections(document: Any, source: str) -> dict[str, list[Mapping[str, Any]]]:
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise InvalidInput(source, "expected a mapping of sections (customers, accounts, ...)")
    out: dict[str, list[Mapping[str, Any]]] = {}
    for name, items in document.items():
        if name not in SECTIONS:
            raise InvalidInput(
                f"{source}: {name}", f"unknown section (expected: {', '.join(SECTIONS)})"
            )
        if items is None:
            items = []
        if not isinstance(items, list):
            raise InvalidInput(f"{source}: {name}", "expected a list")
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise InvalidInput(f"{source}: {name}[{i}]", "expected a mapping of fields")
        out[name] = items
    return out


def plan(ctx: Context, document: Any, source: str = "file") -> list[Change]:
    """Validate the document against the store and return the changes it asks for."""
    changes: list[Change] = []
    sections = _sections(document, source)
    for section, items in sections.items():
        k = SECTIONS[section]
        current = k.records(ctx)
        wanted: dict[str, tuple[str, Record]] = {}
        for i, item in enumerate(items):
            where = f"{source}: {section}[{i}]"
            try:
                record = k.parse(item, ctx, creating=False)
                key = k.key(record)
                if key not in current:
                    k.require_secrets(record)
            except InvalidInput as exc:
                raise exc.under(where) from None
            if key in wanted:
                raise InvalidInput(
                    where, f"{k.name} {key!r} is listed twice (first at {wanted[key][0]})"
                )
            wanted[key] = (where, record)
        for key, (where, record) in wanted.items():
            if key not in current:
                changes.append(Change("create", k, key, where, None, record))
                continue
            differing = [f for f in k.public_fields if record[f] != current[key][f]]
            if k.secret_differs(ctx, key, record):
                differing += [f for f in k.secret_fields if f in record]
            if differing:
                changes.append(Change("update", k, key, where, current[key], record, differing))
        for key, record in current.items():
            if key not in wanted:
                changes.append(Change("delete", k, key, f"{source}: {section}", record))
    rank = {name: i for i, name in enumerate(ORDER)}
    deletes = sorted((c for c in changes if c.action == "delete"), key=lambda c: -rank[c.kind.name])
    others = sorted((c for c in changes if c.action != "delete"), key=lambda c: rank[c.kind.name])
    return deletes + others


def _release_moving_dids(ctx: Context, changes: list[Change]) -> None:
    """DIDs that move between accounts, or whose account goes, are released first, so the
    order in which accounts are written does not matter."""
    owner: dict[str, str] = {}
    deleted: set[str] = set()
    for c in changes:
        if c.kind.name == "account" and c.action == "delete":
            deleted.add(c.key)
        elif c.kind.name == "account" and c.after is not None:
            for e164 in c.after["dids"]:
                owner[e164] = c.key
    rows = ctx.conn.execute(
        select(dids.c.id, dids.c.e164, accounts.c.account_id).join(
            accounts, dids.c.account_id == accounts.c.id
        )
    ).all()
    for pk, e164, account in rows:
        if (e164 in owner and owner[e164] != account) or account in deleted:
            ctx.conn.execute(update(dids).where(dids.c.id == pk).values(account_id=None))


def execute(ctx: Context, changes: list[Change]) -> None:
    """Carry out ``plan``'s changes in the caller's transaction, each one audited (a
    progress bar on a terminal: a big file takes a while)."""
    if any(c.kind.name == "account" for c in changes):
        _release_moving_dids(ctx, changes)
    with progress.task("Applying", total=len(changes)) as shown:
        for c in changes:
            _execute_one(ctx, c)
            shown.advance()


def _execute_one(ctx: Context, c: Change) -> None:
    try:
        if c.action == "create":
            assert c.after is not None
            c.kind.insert(ctx, c.after)
        elif c.action == "update":
            assert c.after is not None
            c.kind.update(ctx, c.key, c.after)
        else:
            c.kind.delete(ctx, c.key)
    except InvalidInput as exc:
        raise exc.under(c.where) from None
    except GatewayError as exc:
        raise type(exc)(f"{c.where}: {exc}") from None
    after = None
    if c.action != "delete":  # from the parsed record: no re-read per change in big files
        assert c.after is not None
        public = {f: c.after[f] for f in c.kind.public_fields}
        after = audited(public, c.kind, c.after)
    audit.record(ctx, c.action, c.kind.name, c.key, c.before, after)
