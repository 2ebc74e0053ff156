# The audit log: who changed what and when, with the record before and after (no secrets).
"""Every admin change is written here in the same transaction as the change itself."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from gateway.provisioning.base import Context, Record, json_ready
from gateway.store.schema import audit_log

# What the log keeps of a secret that was given: only that it was.
SECRET_SET = "(set)"  # noqa: S105 - a marker, not a password


def record(
    ctx: Context,
    action: str,
    entity: str,
    key: str,
    before: Record | None,
    after: Record | None,
) -> None:
    """Append one entry; ``before``/``after`` are public records (secrets already removed)."""
    ctx.conn.execute(
        insert(audit_log).values(
            at=ctx.now,
            actor=ctx.actor,
            action=action,
            entity=entity,
            key=key[:255],
            before=json_ready(before) if before is not None else None,
            after=json_ready(after) if after is not None else None,
        )
    )


def entries(
    ctx_conn: Any,
    *,
    entity: str | None = None,
    key: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[Record]:
    """The newest ``limit`` entries matching the filters, oldest first."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if entity:
        query = query.where(audit_log.c.entity == entity)
    if key:
        query = query.where(audit_log.c.key == key)
    if since:
        query = query.where(audit_log.c.at >= since)
    rows = ctx_conn.execute(query).mappings().all()
    return [
        {
            "id": row["id"],
            "at": row["at"].isoformat(),
            "actor": row["actor"],
            "action": row["action"],
            "entity": row["entity"],
            "key": row["key"],
            "before": row["before"],
            "after": row["after"],
        }
        for row in reversed(rows)
    ]


def summary(entry: Record) -> str:
    """One readable line for an entry: what changed, field by field."""
    before, after = entry["before"] or {}, entry["after"] or {}
    if entry["action"] == "create":
        detail = ", ".join(f"{k}={_text(v)}" for k, v in sorted(after.items()))
    elif entry["action"] == "delete":
        detail = ", ".join(f"{k}={_text(v)}" for k, v in sorted(before.items()))
    else:
        keys = sorted(set(before) | set(after))
        detail = ", ".join(
            f"{k} changed"
            if after.get(k) == SECRET_SET
            else f"{k}: {_text(before.get(k))} -> {_text(after.get(k))}"
            for k in keys
            if before.get(k) != after.get(k)
        )
    return (
        f"{entry['at']} {entry['actor']} {entry['action']} {entry['entity']} "
        f"{entry['key']!r}" + (f": {detail}" if detail else "")
    )


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return "-" if value is None else str(value)
