# The provisioning model: a Context for one admin transaction and the Kind every object follows.
"""What every provisioned kind of object (customer, account, carrier, ...) provides.

A kind turns input into a canonical *record* (a plain dict of public fields, plus write-only
secrets in clear while in memory), lists the stored records, and writes them. The generic
operations (``service``) and the declarative ``apply`` are built on that alone, so the
command line and a provisioning file go through the same validation and the same writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Table, delete, func, select
from sqlalchemy.engine import Connection

from gateway.errors import Conflict, InvalidInput, NotFound
from gateway.provisioning.fields import REQUIRED, Field
from gateway.secrets import SecretBox
from gateway.store.schema import carriers, cdrs, messages, settlements
from routing.numbers import NumberingPlan

Record = dict[str, Any]


@dataclass
class Context:
    """One admin transaction: the connection, who acts, when, and the settings it needs."""

    conn: Connection
    actor: str
    now: datetime
    plan: NumberingPlan
    realm: str
    secret_box: Callable[[], SecretBox]
    notices: list[str] = field(default_factory=list)

    @property
    def today(self) -> date:
        return self.now.date()


class Kind:
    """Base of a provisioned kind; subclasses set the class attributes and the four writes."""

    name: ClassVar[str]  # command group and audit entity: "carrier"
    section: ClassVar[str]  # key in a provisioning file: "carriers"
    table: ClassVar[Table]
    store_key: ClassVar[str]  # the unique column holding the key: "name", "account_id", ...
    fields: ClassVar[tuple[Field, ...]]
    ref_help: ClassVar[str]  # what identifies one on the command line

    def key(self, record: Record) -> str:
        """The identity of a record: what a provisioning file and the audit log call it."""
        return str(record[self.fields[0].name])

    ref_by_id: ClassVar[bool] = False  # named on the command line by the id `list` shows

    def ref(self, ctx: Context, text: str) -> str:
        """The key named by a command-line reference (the key itself, or the listed id)."""
        if self.ref_by_id:
            for key, record in self.records(ctx).items():
                if str(record["id"]) == text.strip():
                    return key
        return text

    # -- input ---------------------------------------------------------------------------
    def parse(self, raw: Mapping[str, Any], ctx: Context, *, creating: bool = True) -> Record:
        """Validate a whole record; missing optional fields take their defaults.

        Secrets (write-only fields) are required when ``creating``; otherwise an absent one
        means "keep what is stored"."""
        known = {f.name for f in self.fields}
        for key in raw:
            if key not in known:
                expected = ", ".join(f.name for f in self.fields)
                raise InvalidInput(
                    str(key), f"unknown field for a {self.name} (expected: {expected})"
                )
        record: Record = {}
        for f in self.fields:
            if f.name in raw:
                record[f.name] = f.parse(raw[f.name], f.name)
            elif f.write_only:
                continue
            elif f.default_from is not None:
                record[f.name] = f.default_from(ctx)
            elif f.default is REQUIRED:
                raise InvalidInput(f.name, f"required for a {self.name}")
            else:
                record[f.name] = f.default
        if creating:
            self.require_secrets(record)
        return self.check(record, ctx)

    def require_secrets(self, record: Record) -> None:
        """A new object needs its secrets (an existing one keeps them when none are given)."""
        for f in self.fields:
            if f.write_only and f.name not in record:
                raise InvalidInput(f.name, f"required for a new {self.name}")

    def editable(self, record: Record) -> Record:
        """A stored record as input to ``parse`` again (for a change of some fields)."""
        return {f: record[f] for f in self.public_fields}

    def check(self, record: Record, ctx: Context) -> Record:
        """Rules across fields of one record; the default has none."""
        return record

    @property
    def public_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if not f.write_only)

    @property
    def secret_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.write_only)

    # -- store ---------------------------------------------------------------------------
    def records(self, ctx: Context) -> dict[str, Record]:
        """Every stored record by key, public fields only."""
        raise NotImplementedError

    def insert(self, ctx: Context, record: Record) -> None:
        raise NotImplementedError

    def update(self, ctx: Context, key: str, record: Record) -> None:
        raise NotImplementedError

    def delete(self, ctx: Context, key: str) -> None:
        raise NotImplementedError

    def secret_differs(self, ctx: Context, key: str, record: Record) -> bool:
        """Whether the secrets given in ``record`` differ from the stored ones."""
        return False


class NamedColumns(Kind):
    """A kind keyed by a ``name`` column whose other public fields map onto one column each."""

    columns: ClassVar[dict[str, str]]  # field -> column

    def records(self, ctx: Context) -> dict[str, Record]:
        out: dict[str, Record] = {}
        for row in ctx.conn.execute(select(self.table).order_by(self.table.c.name)).mappings():
            record: Record = {"name": row["name"]}
            for name, column in self.columns.items():
                value = row[column]
                record[name] = list(value) if isinstance(value, list) else value
            out[row["name"]] = record
        return out

    def column_values(self, record: Record) -> dict[str, Any]:
        return {column: record[name] for name, column in self.columns.items()}


class ByCarrier(Kind):
    """A kind whose rows belong to a carrier (tariffs, fees), named by the id ``list`` shows."""

    store_key = "id"
    ref_help = "ID"
    ref_by_id = True
    order: ClassVar[tuple[str, ...]]  # columns sorted by, after the carrier's name

    def record_of(self, row: Mapping[str, Any]) -> Record:
        """A stored row (with its carrier's ``carrier`` name) as a public record."""
        raise NotImplementedError

    def records(self, ctx: Context) -> dict[str, Record]:
        rows = ctx.conn.execute(
            select(self.table, carriers.c.name.label("carrier"))
            .join(carriers, self.table.c.carrier_id == carriers.c.id)
            .order_by(carriers.c.name, *(self.table.c[name] for name in self.order))
        ).mappings()
        out: dict[str, Record] = {}
        for row in rows:
            record = self.record_of(row)
            out[self.key(record)] = record
        return out

    def carrier_pk(self, ctx: Context, record: Record) -> int:
        return id_of(ctx, carriers, "name", record["carrier"], "carrier", "carrier")

    def pk(self, ctx: Context, key: str) -> int:
        return int(self.records(ctx)[key]["id"])

    def span(self, record: Record) -> tuple[date, date | None]:
        """The first and last day (None: open-ended) the record prices."""
        raise NotImplementedError

    start_word: ClassVar[str] = "on"  # "start it on 2026-11-01"; a fee: "in 2026-11"

    def day_text(self, day: date) -> str:
        """A day as the ``from``/``to`` fields take it (a tariff's day; a fee's month)."""
        return day.isoformat()

    # -- the rule for finalised months: one place for every carrier-owned kind -------------
    def insert(self, ctx: Context, record: Record) -> None:
        self.refuse_in_final(ctx, record)
        self.write_new(ctx, record)

    def update(self, ctx: Context, key: str, record: Record) -> None:
        self.refuse_changed_days(ctx, self.records(ctx)[key], record)
        self.write_changed(ctx, key, record)

    def delete(self, ctx: Context, key: str) -> None:
        record = self.records(ctx)[key]
        found = self.final_month(ctx, record)
        if found is not None:
            period, after = found
            raise Conflict(
                f"{record['carrier']}'s settlement of {period} is final: {self.name} "
                f"{record['id']} priced its days, so it stays on record (to end it, set its "
                f"to: {self.day_text(after - timedelta(days=1))} or later)"
            )
        ctx.conn.execute(delete(self.table).where(self.table.c.id == self.pk(ctx, key)))

    def write_new(self, ctx: Context, record: Record) -> None:
        """Store a new record (``insert`` checked the final months first)."""
        raise NotImplementedError

    def write_changed(self, ctx: Context, key: str, record: Record) -> None:
        """Store a changed record (``update`` checked the final months first)."""
        raise NotImplementedError

    def final_month(
        self, ctx: Context, record: Record, days: tuple[date, date | None] | None = None
    ) -> tuple[str, date] | None:
        """The latest finalised month of the record's carrier among ``days`` (default: the
        record's span), and the first day after it; None when the days touch none."""
        start, end = days or self.span(record)
        final = ctx.conn.execute(
            select(settlements.c.period)
            .join(carriers, carriers.c.id == settlements.c.carrier_id)
            .where(carriers.c.name == record["carrier"], settlements.c.state == "final")
            .order_by(settlements.c.period.desc())
        ).scalars()
        for period in final:
            year, month = (int(part) for part in period.split("-"))
            month_start = date(year, month, 1)
            month_end = date(year + month // 12, month % 12 + 1, 1)  # exclusive
            if start < month_end and (end is None or month_start <= end):
                return period, month_end
        return None

    def refuse_in_final(
        self,
        ctx: Context,
        record: Record,
        days: tuple[date, date | None] | None = None,
        *,
        field: str = "from",
        hint: Callable[[date], str] | None = None,
    ) -> None:
        """Refuse a change that would price days (default: the record's span) of a finalised
        month: its invoice is frozen, and its late CDRs must be rated as the invoice was. One
        line naming ``field`` (an InvalidInput, so ``apply`` says where in its file);
        ``hint(first day after the month)`` says what to do instead."""
        found = self.final_month(ctx, record, days)
        if found is None:
            return
        period, after = found
        start = f"start it {self.start_word} {self.day_text(after)} or later"
        advice = hint(after) if hint else start
        raise InvalidInput(
            field,
            f"{record['carrier']}'s settlement of {period} is final: a {self.name} change that "
            f"prices its days would not reach its invoice ({advice})",
        )

    def refuse_changed_days(self, ctx: Context, before: Record, after: Record) -> None:
        """For an update: only the days whose pricing changes must be outside final months."""
        changed = [f for f in self.public_fields if f not in ("id", "to") and before[f] != after[f]]
        if changed:

            def instead(day: date) -> str:
                return f"for new terms, add a new {self.name} from {self.day_text(day)}"

            self.refuse_in_final(ctx, before, field=changed[0], hint=instead)
            self.refuse_in_final(ctx, after, field=changed[0], hint=instead)
        elif before["to"] != after["to"]:  # the start is part of the key: only the end moved
            old_end, new_end = self.span(before)[1], self.span(after)[1]
            shorter = new_end is not None and (old_end is None or new_end < old_end)
            ends = [end for end in (old_end, new_end) if end is not None]
            days = (min(ends) + timedelta(days=1), None if len(ends) < 2 else max(ends))

            def keep(day: date) -> str:
                if shorter:
                    last = self.day_text(day - timedelta(days=1))
                    return f"end it {self.start_word} {last} or later"
                return f"add a new {self.name} from {self.day_text(day)} instead"

            self.refuse_in_final(ctx, after, days, field="to", hint=keep)


# -- helpers the kinds share -----------------------------------------------------------
def id_of(ctx: Context, table: Table, column: str, value: str, what: str, field: str) -> int:
    """The primary key of the row whose ``column`` is ``value``; InvalidInput naming ``field``."""
    found = ctx.conn.execute(select(table.c.id).where(table.c[column] == value)).scalar()
    if found is None:
        raise InvalidInput(field, f"no {what} named {value!r}")
    return int(found)


def row_id(ctx: Context, kind: Kind, key: str) -> int:
    """The primary key of a record of ``kind`` by its key column."""
    return id_of(ctx, kind.table, kind.store_key, key, kind.name, kind.fields[0].name)


def refuse_if_used(
    ctx: Context, what: str, key: str, uses: Iterable[tuple[Table, Any, str]]
) -> None:
    """Refuse to delete ``what`` while rows in other tables still point at it."""
    for table, condition, described in uses:
        count = ctx.conn.execute(select(func.count()).select_from(table).where(condition)).scalar()
        if count:
            raise Conflict(f"{what} {key!r} {described} ({count}); remove or change those first")


def history_uses(column: str, pk: int) -> list[tuple[Table, Any, str]]:
    """The message and CDR rows that keep an object (carrier, account, connection) in use:
    history is kept for years, so such an object is disabled rather than deleted."""
    return [
        (messages, messages.c[column] == pk, "has message history; disable it instead"),
        (cdrs, cdrs.c[column] == pk, "has CDRs; disable it instead"),
    ]


def not_found(kind: Kind, key: str) -> NotFound:
    return NotFound(f"no {kind.name} {key!r}")


def json_ready(record: Mapping[str, Any]) -> Record:
    """A record with dates and decimals as text, for the audit log and --json output."""
    return {k: _json_value(v) for k, v in record.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return json_ready(value)
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, str | int | bool | float):
        return value
    return str(value)
