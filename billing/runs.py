# Settlement runs: aggregate a carrier's CDRs in the database, rate them, store and freeze.
"""The store side of settlement (``gatewayctl settlement run|finalise``).

A run reads, in one pass of the database over the month's CDRs, their counts grouped by
(first ``key_length`` digits of the destination, tariff bucket, state) together with the
CDR-set fingerprint (billing/cdr.py); Python then rates the groups - distinct destination keys x
buckets x states, tens of thousands for prefixes of up to 7 digits - not millions of rows
(billing/settlement.py). The draft is written in its own transaction, replacing the
previous draft of that month.

Finalising rebuilds the month and freezes it. Months are finalised in order, without gaps,
and only once they are over. A CDR can reach a frozen month later (a message accepted on
the 31st, delivered on the 2nd): the run of the month after the last frozen one re-counts
the frozen months of the last ``LATE_LOOKBACK`` and bills exactly the difference between
what the CDRs say now and what was invoiced (the month's groups plus earlier adjustments)
as ``adjustment`` lines. No timing window is involved, so no CDR is billed twice or lost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, and_, case, delete, func, insert, literal, select, text, update
from sqlalchemy.engine import Connection

from billing import cdr
from billing.fees import Fee, Tier
from billing.periods import Month, parse_month, zone
from billing.settlement import MIN_KEY_LENGTH, Group, Statement, build, is_billable, shown_counts
from billing.tariffs import RateTable, rate_of
from gateway import progress, words
from gateway.errors import Conflict, NotFound
from gateway.lifecycle import FINAL, MessageState
from gateway.store.schema import (
    carriers,
    cdrs,
    fees,
    messages,
    settlement_groups,
    settlement_lines,
    settlements,
    tariffs,
)

LATE_LOOKBACK = timedelta(days=93)
"""How far back a run looks for CDRs that reached frozen months late. A CDR is written when
its message ends, at most the longest validity period after acceptance."""


@dataclass(frozen=True, slots=True)
class CarrierBilling:
    id: int
    name: str
    timezone: str
    billable: str

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)


@dataclass(frozen=True, slots=True)
class Aggregate:
    groups: list[Group]
    fingerprint: tuple[int, int, int]  # count, sum of ids, sum of hashes


@dataclass
class Outcome:
    """What a run did, for the command line."""

    carrier: str
    period: str
    state: str
    statement: Statement | None
    cdr_count: int
    pending: int
    checksum: str
    skipped: str | None = None  # why nothing was built
    notices: list[str] = field(default_factory=list)


def billing_of(conn: Connection, name: str | None = None) -> list[CarrierBilling]:
    """Every carrier (by name), or the one called ``name`` (NotFound otherwise)."""
    query = select(carriers.c.id, carriers.c.name, carriers.c.billing_timezone, carriers.c.billable)
    if name is not None:
        query = query.where(carriers.c.name == name)
    rows = conn.execute(query.order_by(carriers.c.name)).all()
    if name is not None and not rows:
        raise NotFound(f"no carrier {name!r}")
    return [CarrierBilling(r.id, r.name, r.billing_timezone, r.billable) for r in rows]


def rate_table(conn: Connection, carrier: CarrierBilling, direction: str = "in") -> RateTable:
    """The carrier's tariffs of one direction: ``in`` (it pays us) or ``out`` (our cost)."""
    tz = carrier.tz
    rows = conn.execute(
        select(tariffs).where(tariffs.c.carrier_id == carrier.id, tariffs.c.direction == direction)
    ).mappings()
    return RateTable(
        rate_of(
            r["id"], r["prefix"], r["price"], r["currency"], r["unit"],
            r["effective_from"], r["effective_to"], tz,
        )
        for r in rows
    )  # fmt: skip


def fees_of(conn: Connection, carrier_id: int) -> list[Fee]:
    rows = conn.execute(
        select(fees).where(fees.c.carrier_id == carrier_id).order_by(fees.c.name, fees.c.id)
    ).mappings()
    return [
        Fee(
            fee_id=r["id"],
            name=r["name"],
            kind=r["kind"],
            unit=r["unit"],
            currency=r["currency"],
            tiers=tuple(Tier(int(start), Decimal(str(price))) for start, price in r["tiers"]),
            first_month=r["effective_from"],
            last_month=r["effective_to"],
        )
        for r in rows
    ]


def in_period(carrier_id: int, start: datetime, end: datetime, leg: str = cdr.LEG_IN) -> Any:
    """The carrier's CDRs (leg in; ``out``: what we delivered to it) accepted in [start, end):
    the filter every report uses."""
    return and_(
        cdrs.c.carrier_id == carrier_id,
        cdrs.c.leg == leg,
        cdrs.c.accepted_at >= start,
        cdrs.c.accepted_at < end,
    )


def aggregate(
    conn: Connection,
    carrier_id: int,
    period: str,
    start: datetime,
    end: datetime,
    key_length: int,
    boundaries: list[datetime],
    leg: str = cdr.LEG_IN,
) -> Aggregate:
    """The month's CDRs (of ``leg``) grouped for rating, and their fingerprint, in one query."""
    key: Any = func.substr(cdrs.c.destination, 1, key_length) if key_length else literal("")
    bucket: Any = (
        case(
            *((cdrs.c.accepted_at < b, i) for i, b in enumerate(boundaries)), else_=len(boundaries)
        )
        if boundaries
        else literal(0)
    )
    query = (
        select(
            key.label("dest_key"),
            bucket.label("bucket"),
            cdrs.c.state,
            func.count(),
            func.sum(cdrs.c.parts),
            *cdr.fingerprint_terms()[1:],
        )
        .where(in_period(carrier_id, start, end, leg))
        .group_by(text("1, 2, 3"))  # by position: PostgreSQL cannot match bound expressions
    )
    groups: list[Group] = []
    count = id_sum = hash_sum = 0
    for dest_key, b, state, n, parts, ids, hashes in conn.execute(query):
        groups.append(Group(period, dest_key, int(b), state, int(n), int(parts)))
        count += int(n)
        id_sum += int(ids)
        hash_sum += int(hashes)
    groups.sort(key=lambda g: (g.dest_key, g.bucket, g.state))
    return Aggregate(groups, (count, id_sum, hash_sum))


def count_cdrs(conn: Connection, carrier_id: int, start: datetime, end: datetime) -> int:
    query = select(func.count()).select_from(cdrs).where(in_period(carrier_id, start, end))
    return int(conn.execute(query).scalar() or 0)


def pending_messages(conn: Connection, carrier_id: int, start: datetime, end: datetime) -> int:
    """Messages accepted in the period that have no final state (so no CDR) yet."""
    not_final = sorted(str(state) for state in MessageState if state not in FINAL)
    query = (
        select(func.count())
        .select_from(messages)
        .where(
            messages.c.state.in_(not_final),
            messages.c.carrier_id == carrier_id,
            messages.c.accepted_at >= start,
            messages.c.accepted_at < end,
        )
    )
    return int(conn.execute(query).scalar() or 0)


def _settlement(conn: Connection, carrier_id: int, period: str) -> Any:
    return (
        conn.execute(
            select(settlements).where(
                settlements.c.carrier_id == carrier_id, settlements.c.period == period
            )
        )
        .mappings()
        .first()
    )


def _finals(conn: Connection, carrier_id: int) -> list[Any]:
    return list(
        conn.execute(
            select(settlements)
            .where(settlements.c.carrier_id == carrier_id, settlements.c.state == "final")
            .order_by(settlements.c.period)
        ).mappings()
    )


def _accounted(
    conn: Connection, carrier_id: int, period: str
) -> dict[tuple[str, int, str], list[int]]:
    """What final settlements invoiced of ``period``: its own groups and later adjustments."""
    query = (
        select(
            settlement_groups.c.dest_key,
            settlement_groups.c.bucket,
            settlement_groups.c.state,
            func.sum(settlement_groups.c.messages),
            func.sum(settlement_groups.c.parts),
        )
        .join(settlements, settlements.c.id == settlement_groups.c.settlement_id)
        .where(
            settlements.c.carrier_id == carrier_id,
            settlements.c.state == "final",
            settlement_groups.c.source_period == period,
        )
        .group_by(
            settlement_groups.c.dest_key, settlement_groups.c.bucket, settlement_groups.c.state
        )
    )
    return {(k, int(b), s): [int(m), int(p)] for k, b, s, m, p in conn.execute(query)}


def _bucket_starts(start: datetime, boundaries: Iterable[Any]) -> list[datetime]:
    return [
        start,
        *(b if isinstance(b, datetime) else datetime.fromisoformat(b) for b in boundaries),
    ]


@dataclass
class _Late:
    groups: list[Group]
    starts: dict[str, list[datetime]]  # source period -> bucket start instants
    bounds: dict[str, tuple[datetime, datetime]]
    fingerprints: dict[str, tuple[int, int, int]]
    notices: list[str]


def late_cdrs(conn: Connection, carrier: CarrierBilling, month: Month, start: datetime) -> _Late:
    """CDRs of frozen months not yet invoiced, when ``month`` follows the last frozen one."""
    late = _Late([], {}, {}, {}, [])
    previous = _settlement(conn, carrier.id, str(month.previous()))
    if previous is None or previous["state"] != "final":
        return late
    for frozen in _finals(conn, carrier.id):
        if frozen["period"] >= str(month) or frozen["period_end"] < start - LATE_LOOKBACK:
            continue
        period = frozen["period"]
        accounted = _accounted(conn, carrier.id, period)
        invoiced = sum(m for m, _ in accounted.values())
        s, e = frozen["period_start"], frozen["period_end"]
        if count_cdrs(conn, carrier.id, s, e) == invoiced:
            continue
        boundaries = _bucket_starts(s, frozen["boundaries"])[1:]
        now = aggregate(conn, carrier.id, period, s, e, frozen["key_length"], boundaries)
        late.starts[period] = [s, *boundaries]
        late.bounds[period] = (s, e)
        late.fingerprints[period] = now.fingerprint
        for g in now.groups:
            m, p = accounted.pop((g.dest_key, g.bucket, g.state), [0, 0])
            if g.messages > m:
                late.groups.append(
                    Group(period, g.dest_key, g.bucket, g.state, g.messages - m, g.parts - p)
                )
            elif g.messages < m:
                gone = m - g.messages
                late.notices.append(
                    f"{carrier.name} {period}: {words.count(gone, 'CDR')} invoiced "
                    f"{words.plural(gone, 'is')} no longer in the store (removed outside the"
                    " gateway?)"
                )
        if accounted:
            missing = sum(m for m, _ in accounted.values())
            late.notices.append(
                f"{carrier.name} {period}: {words.count(missing, 'CDR')} invoiced "
                f"{words.plural(missing, 'is')} no longer in the store"
            )
    return late


def _check_order(conn: Connection, carrier: CarrierBilling, month: Month, finalising: bool) -> None:
    """Months are settled in order: nothing after a final month, finalise without gaps."""
    rows = list(
        conn.execute(
            select(settlements.c.period, settlements.c.state).where(
                settlements.c.carrier_id == carrier.id
            )
        )
    )
    later = sorted(p for p, st in rows if p > str(month) and st == "final")
    if later:
        raise Conflict(
            f"{carrier.name}'s settlement of {later[0]} is final: {month} can no longer be "
            "settled (its late CDRs are billed in the month after the last final one)"
        )
    if not finalising:
        return
    drafts = sorted(p for p, st in rows if p < str(month) and st != "final")
    if drafts:
        raise Conflict(f"finalise {carrier.name}'s {drafts[0]} first: months are final in order")
    finals = [p for p, st in rows if p < str(month) and st == "final"]
    if finals and str(month.previous()) not in finals:
        raise Conflict(
            f"{carrier.name}'s {month.previous()} has no settlement: run and finalise it first "
            "(finalised months have no gaps, so late CDRs always have a month to go to)"
        )


def month_bounds(
    conn: Connection, carrier: CarrierBilling, month: Month
) -> tuple[datetime, datetime]:
    """[start, end) of ``month`` in the carrier's zone; it starts where the month before was
    invoiced to, if it was, so a change of time zone neither bills an hour twice nor skips one."""
    start, end = month.bounds(carrier.tz)
    previous = _settlement(conn, carrier.id, str(month.previous()))
    if previous is not None and previous["state"] == "final":
        start = previous["period_end"]
    return start, end


def compute(
    conn: Connection, carrier: CarrierBilling, month: Month
) -> tuple[Aggregate, _Late, Statement, dict[str, Any]]:
    """Read and rate the month (no writes)."""
    tz = carrier.tz
    start, end = month_bounds(conn, carrier, month)
    table = rate_table(conn, carrier)
    boundaries = table.boundaries(start, end)
    key_length = max(table.key_length, MIN_KEY_LENGTH)  # unrated lines name the country at least
    usage = aggregate(conn, carrier.id, str(month), start, end, key_length, boundaries)
    late = late_cdrs(conn, carrier, month, start)
    late.starts[str(month)] = [start, *boundaries]
    late.bounds[str(month)] = (start, end)

    def rate(g: Group) -> Any:
        return table.at(g.dest_key, late.starts[g.source_period][g.bucket])

    fees_now = [f for f in fees_of(conn, carrier.id) if f.applies(month.first_day)]
    statement = build(
        str(month),
        [*usage.groups, *late.groups],
        rate,
        billable=carrier.billable,
        fees=fees_now,
        bounds=lambda period: late.bounds[period],
        tz=tz,
    )
    header = {
        "carrier_id": carrier.id,
        "period": str(month),
        "timezone": carrier.timezone,
        "period_start": start,
        "period_end": end,
        "billable": carrier.billable,
        "key_length": key_length,
        "boundaries": [b.isoformat() for b in boundaries],
        "cdr_count": usage.fingerprint[0] + sum(g.messages for g in late.groups),
        "cdr_checksum": cdr.checksum(
            {"usage": usage.fingerprint, "late": late.fingerprints, "billable": carrier.billable}
        ),
        "pending": pending_messages(conn, carrier.id, start, end),
    }
    return usage, late, statement, header


def _line_row(settlement_id: int, line: Any) -> dict[str, Any]:
    return {
        "settlement_id": settlement_id,
        "seq": line.seq,
        "kind": line.kind,
        "source_period": line.source_period,
        "prefix": line.prefix,
        "description": line.description,
        "tariff_id": line.tariff_id,
        "currency": line.currency,
        "unit": line.unit,
        "unit_price": line.unit_price,
        "messages": line.messages or 0,  # NOT NULL: a fee line's "none" (shown_counts)
        "parts": line.parts or 0,
        "units": line.units or 0,
        "amount": line.amount,
    }


def run_one(
    engine: Engine,
    carrier: CarrierBilling,
    month: Month,
    *,
    actor: str,
    now: datetime,
    finalise: bool = False,
    note: Callable[[str], None] = lambda text: None,
) -> Outcome:
    """Build (or rebuild) the draft of ``month``, or rebuild and freeze it (``finalise``);
    ``note`` hears what is being done (for a progress display)."""
    with engine.connect() as conn, conn.begin():
        existing = _settlement(conn, carrier.id, str(month))
        if existing is not None and existing["state"] == "final":
            raise Conflict(
                f"{carrier.name}'s settlement of {month} is final (since "
                f"{existing['finalised_at']:%Y-%m-%d %H:%M} UTC, by {existing['finalised_by']}); "
                "CDRs that reach it late are billed as adjustments of the next open month"
            )
        _check_order(conn, carrier, month, finalise)
        if finalise:
            end = month.bounds(carrier.tz)[1]
            if end > now:
                raise Conflict(
                    f"{month} is not over for {carrier.name} until {end:%Y-%m-%d %H:%M} UTC "
                    f"({carrier.timezone}): it cannot be finalised yet"
                )
        note(f"{carrier.name}: grouping and rating the CDRs of {month}")
        usage, late, statement, header = compute(conn, carrier, month)
    note(f"{carrier.name}: writing the settlement")
    with engine.connect() as conn, conn.begin():
        # checked again in the writing transaction: another admin may have finalised meanwhile
        existing = _settlement(conn, carrier.id, str(month))
        if existing is not None and existing["state"] == "final":
            raise Conflict(f"{carrier.name}'s settlement of {month} was finalised meanwhile")
        _check_order(conn, carrier, month, finalise)
        values = {
            **header,
            "state": "final" if finalise else "draft",
            "built_at": now,
            "built_by": actor,
            "finalised_at": now if finalise else None,
            "finalised_by": actor if finalise else None,
        }
        if existing is None:
            sid = conn.execute(insert(settlements).values(**values)).inserted_primary_key[0]
        else:
            sid = existing["id"]
            conn.execute(delete(settlement_groups).where(settlement_groups.c.settlement_id == sid))
            conn.execute(delete(settlement_lines).where(settlement_lines.c.settlement_id == sid))
            conn.execute(update(settlements).where(settlements.c.id == sid).values(**values))
        groups = [*usage.groups, *late.groups]
        if groups:
            conn.execute(
                insert(settlement_groups),
                [
                    {
                        "settlement_id": sid,
                        "source_period": g.source_period,
                        "dest_key": g.dest_key,
                        "bucket": g.bucket,
                        "state": g.state,
                        "messages": g.messages,
                        "parts": g.parts,
                    }
                    for g in groups
                ],
            )
        if statement.lines:
            conn.execute(insert(settlement_lines), [_line_row(sid, ln) for ln in statement.lines])
    return Outcome(
        carrier=carrier.name,
        period=str(month),
        state=values["state"],
        statement=statement,
        cdr_count=header["cdr_count"],
        pending=header["pending"],
        checksum=header["cdr_checksum"],
        notices=late.notices,
    )


def run(
    engine: Engine,
    month_text: str,
    *,
    carrier: str | None,
    actor: str,
    now: datetime,
    finalise: bool = False,
) -> list[Outcome]:
    """``settlement run`` / ``finalise`` for one carrier, or every carrier (skipping, with
    the reason, those whose month is final already); a progress bar on a terminal."""
    month = parse_month(month_text)
    with engine.connect() as conn:
        chosen = billing_of(conn, carrier)
    out: list[Outcome] = []
    verb = "Finalising" if finalise else "Settling"
    with progress.task(f"{verb} {month}", total=len(chosen)) as shown:
        for c in chosen:
            try:
                out.append(
                    run_one(
                        engine, c, month, actor=actor, now=now, finalise=finalise,
                        note=shown.note,
                    )
                )  # fmt: skip
            except Conflict as exc:
                if carrier is not None:
                    raise
                skipped = Outcome(c.name, str(month), "skipped", None, 0, 0, "", skipped=str(exc))
                out.append(skipped)
            shown.advance()
    return out


_INTERNAL = ("id", "settlement_id")


def outbound_cost(
    conn: Connection, carrier: CarrierBilling, period: str, start: datetime, end: datetime
) -> dict[str, Any] | None:
    """What we pay the carrier for the messages it took from us (CDRs of leg ``out``,
    accepted in [start, end)), rated by its ``out`` tariffs: lines and totals, apart from
    what it pays us. None when it took nothing in the period. Computed when shown (never
    frozen with the settlement: the settlement's own lines and totals are what it pays us)."""
    table = rate_table(conn, carrier, cdr.LEG_OUT)
    boundaries = table.boundaries(start, end)
    key_length = max(table.key_length, MIN_KEY_LENGTH)
    usage = aggregate(conn, carrier.id, period, start, end, key_length, boundaries, leg=cdr.LEG_OUT)
    if not usage.groups:
        return None
    starts = [start, *boundaries]
    statement = build(
        period,
        usage.groups,
        lambda g: table.at(g.dest_key, starts[g.bucket]),
        billable="accepted",  # a leg out exists only for what the carrier took
        fees=[],
        bounds=lambda _: (start, end),
        tz=carrier.tz,
    )
    return {
        "messages": statement.messages,
        "parts": statement.parts,
        "unrated": statement.unrated,
        "lines": [
            {k: v for k, v in dataclasses.asdict(line).items() if k != "tariff_id"}
            for line in statement.lines
        ],
        "totals": dict(statement.totals),
    }


def load(conn: Connection, carrier_name: str, month_text: str) -> dict[str, Any]:
    """A stored settlement as the exports show it: header, lines, totals, message counts."""
    month = parse_month(month_text)
    [carrier] = billing_of(conn, carrier_name)
    row = _settlement(conn, carrier.id, str(month))
    if row is None:
        raise NotFound(
            f"no settlement of {month} for {carrier.name}: run "
            f"'gatewayctl settlement run --month {month} --carrier {carrier.name}' first"
        )
    lines = [
        dict(r)
        for r in conn.execute(
            select(settlement_lines)
            .where(settlement_lines.c.settlement_id == row["id"])
            .order_by(settlement_lines.c.seq)
        ).mappings()
    ]
    states: dict[str, int] = {}
    for state, n in conn.execute(
        select(settlement_groups.c.state, func.sum(settlement_groups.c.messages))
        .where(
            settlement_groups.c.settlement_id == row["id"],
            settlement_groups.c.source_period == str(month),
        )
        .group_by(settlement_groups.c.state)
    ):
        states[state] = int(n)
    totals: dict[str, Decimal] = {}
    for line in lines:
        if line["amount"] is not None and line["currency"] is not None:
            totals[line["currency"]] = totals.get(line["currency"], Decimal(0)) + line["amount"]
    billable = row["billable"]
    cost = outbound_cost(conn, carrier, str(month), row["period_start"], row["period_end"])
    return {
        **({"outbound_cost": cost} if cost is not None else {}),
        "carrier": carrier.name,
        "period": row["period"],
        "state": row["state"],
        "timezone": row["timezone"],
        "period_start": row["period_start"],
        "period_end": row["period_end"],
        "billable": billable,
        "cdr_count": row["cdr_count"],
        "cdr_checksum": row["cdr_checksum"],
        "pending": row["pending"],
        "built_at": row["built_at"],
        "finalised_at": row["finalised_at"],
        "finalised_by": row["finalised_by"],
        "states": dict(sorted(states.items())),
        "messages": sum(n for s, n in states.items() if is_billable(s, billable)),
        "lines": [
            shown_counts({k: v for k, v in ln.items() if k not in _INTERNAL}) for ln in lines
        ],
        "totals": dict(sorted(totals.items())),
    }
