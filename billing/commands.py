# gatewayctl's billing commands: settlement run/finalise/show/list/export, usage, cdrs export.
"""The command line of billing (click). ``gatewayctl`` adds these groups to its own; each
command gets gatewayctl's ``Obj`` (config and actor) as the click object."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from billing import export, runs, usage
from gateway import admin, progress, render
from gateway.errors import InvalidInput
from gateway.provisioning import fields as F
from gateway.store.engine import translated
from gateway.store.schema import carriers, settlements
from gateway.words import count, plural

FORMATS = ("csv", "json", "pdf")
month_option = click.option("--month", required=True, metavar="YYYY-MM", help="The month.")
json_option = render.json_option


@contextlib.contextmanager
def store(obj: Any) -> Iterator[Engine]:
    engine = admin.open_store(obj.config)
    try:
        with translated(obj.config.database):
            yield engine
    finally:
        engine.dispose()


def _day(text: str, option: str) -> date:
    day = F.day(text, option)
    if not 1970 <= day.year <= 9998:  # a day's bounds in any time zone stay within datetime's
        raise InvalidInput(option, f"{text!r} is out of range: give a day from 1970 to 9998")
    return day


def _money(value: Any) -> str:
    return "-" if value is None else str(value)


def line_counts(line: dict[str, Any]) -> str:
    """A line's counts in words: ``3 msgs, 3 units x 0.01``; a fee shows the volume it was
    computed on (``on 1,500 msgs``) and units only with a unit price; a fixed fee, nothing."""
    shown: list[str] = []
    if line["kind"] == "fee":
        for name, noun in (("messages", "msg"), ("parts", "segment")):
            if line[name] is not None:
                shown.append(f"on {count(line[name], noun)}")
    elif line["messages"] is not None:
        shown.append(count(line["messages"], "msg"))
    if line["units"] is not None:
        price = "" if line["unit_price"] is None else f" x {line['unit_price']}"
        shown.append(count(line["units"], "unit") + price)
    return ", ".join(shown)


def _print_lines(lines: list[dict[str, Any]]) -> None:
    """One line per invoice line: what, counts, unit price, amount."""
    for line in lines:
        amount = f"{_money(line['amount'])} {line['currency'] or ''}".rstrip()
        counts = line_counts(line)
        click.echo(
            f"  {line['seq']:>3}. {line['kind']:<10} {line['description']}: "
            f"{counts + ' = ' if counts else ''}{amount}"
        )


def _print_outcome(o: runs.Outcome) -> None:
    if o.skipped:
        click.echo(f"{o.carrier} {o.period}: skipped: {o.skipped}")
        return
    s = o.statement
    assert s is not None
    totals = ", ".join(f"{a} {c}" for c, a in s.totals.items()) or "nothing to invoice"
    click.echo(
        f"{o.carrier} {o.period} ({o.state}): {count(s.messages, 'billable message')}, "
        f"{count(s.parts, 'part')}; total {totals}"
    )
    _print_lines([dataclasses.asdict(line) for line in s.lines])
    if s.unrated:
        click.echo(
            f"  warning: {count(s.unrated, 'billable message')} {plural(s.unrated, 'has')} no"
            " tariff (not priced): see the unrated lines"
        )
    if s.not_billable:
        click.echo(
            f"  {count(s.not_billable, 'message')} not billable (carrier pays delivered only)"
        )
    if o.pending:
        click.echo(
            f"  {count(o.pending, 'message')} of the month {plural(o.pending, 'is')} not final yet"
            " (billed when final, as a later adjustment if the month is final by then)"
        )
    for notice in o.notices:
        click.echo(f"  warning: {notice}")
    click.echo(f"  {count(o.cdr_count, 'CDR')}, checksum {o.checksum}")


def _outcome_json(o: runs.Outcome) -> dict[str, Any]:
    s = o.statement
    return {
        "carrier": o.carrier,
        "period": o.period,
        "state": o.state,
        "skipped": o.skipped,
        "cdr_count": o.cdr_count,
        "cdr_checksum": o.checksum or None,
        "pending": o.pending,
        "messages": s.messages if s else 0,
        "unrated": s.unrated if s else 0,
        "totals": {c: str(a) for c, a in s.totals.items()} if s else {},
        "notices": o.notices,
    }


@click.group("settlement")
def settlement() -> None:
    """Monthly carrier settlements: build, freeze and export invoices."""


def _run(obj: Any, month: str, carrier: str | None, finalise: bool, as_json: bool) -> None:
    with store(obj) as engine:
        outcomes = runs.run(
            engine,
            month,
            carrier=carrier,
            actor=obj.actor,
            now=datetime.now(UTC),
            finalise=finalise,
        )
    if as_json:
        click.echo(render.to_json([_outcome_json(o) for o in outcomes]))
        return
    for o in outcomes:
        _print_outcome(o)
    if not outcomes:
        click.echo("no carriers")


@settlement.command("run")
@month_option
@click.option("--carrier", metavar="NAME", help="Only this carrier (default: every carrier).")
@json_option
@click.pass_obj
def settlement_run(obj: Any, month: str, carrier: str | None, as_json: bool) -> None:
    """Build, or rebuild while not final, the month's settlement of each carrier.

    Lines by tariff (prefix and price period), unrated messages, adjustments for CDRs that
    reached an already final month late, volume fees, totals per currency."""
    _run(obj, month, carrier, False, as_json)


@settlement.command("finalise")
@month_option
@click.option("--carrier", metavar="NAME", required=True, help="The carrier.")
@json_option
@click.pass_obj
def settlement_finalise(obj: Any, month: str, carrier: str, as_json: bool) -> None:
    """Rebuild the month's settlement and freeze it (the month must be over; months are
    finalised in order). CDRs arriving later go to the next month's adjustments."""
    _run(obj, month, carrier, True, as_json)


@settlement.command("show")
@month_option
@click.option("--carrier", metavar="NAME", required=True, help="The carrier.")
@json_option
@click.pass_obj
def settlement_show(obj: Any, month: str, carrier: str, as_json: bool) -> None:
    """Show a stored settlement: header, lines and totals."""
    with store(obj) as engine, engine.connect() as conn:
        s = runs.load(conn, carrier, month)
    if as_json:
        click.echo(export.to_json(s), nl=False)
        return
    header = {k: s[k] for k in ("carrier", "period", "state", "timezone", "billable",
                                "messages", "pending", "cdr_count", "cdr_checksum")}  # fmt: skip
    header["totals"] = ", ".join(f"{a} {c}" for c, a in s["totals"].items()) or "-"
    render.details(header)
    _print_lines(s["lines"])
    cost = s.get("outbound_cost")
    if cost is not None:  # what we pay the carrier for what it took from us: apart
        totals = ", ".join(f"{a} {c}" for c, a in cost["totals"].items()) or "-"
        delivered = count(cost["messages"], "msg")
        click.echo(f"outbound (cost): {delivered} delivered to it, total {totals}")
        _print_lines(cost["lines"])


@settlement.command("list")
@click.option("--carrier", metavar="NAME", help="Only this carrier.")
@json_option
@click.pass_obj
def settlement_list(obj: Any, carrier: str | None, as_json: bool) -> None:
    """List stored settlements, newest month first."""
    with store(obj) as engine, engine.connect() as conn:
        query = (
            select(
                carriers.c.name.label("carrier"),
                settlements.c.period,
                settlements.c.state,
                settlements.c.cdr_count,
                settlements.c.built_at,
                settlements.c.finalised_at,
                settlements.c.finalised_by,
            )
            .join(carriers, carriers.c.id == settlements.c.carrier_id)
            .order_by(settlements.c.period.desc(), carriers.c.name)
        )
        if carrier is not None:
            runs.billing_of(conn, carrier)
            query = query.where(carriers.c.name == carrier)
        rows = [dict(r) for r in conn.execute(query).mappings()]
    if as_json:
        click.echo(render.to_json(rows))
    else:
        render.table(rows, ("carrier", "period", "state", "cdr_count", "built_at", "finalised_at"))


def _carriers_with(conn: Connection, month: str) -> list[str]:
    query = (
        select(carriers.c.name)
        .join(settlements, settlements.c.carrier_id == carriers.c.id)
        .where(settlements.c.period == month)
        .order_by(carriers.c.name)
    )
    return list(conn.execute(query).scalars())


def _check_out_file(out: str) -> None:
    """``--out`` for one file: ``-`` (standard output), or a file in an existing folder."""
    if out == "-":
        return
    path = Path(out)
    if path.is_dir():
        raise InvalidInput("--out", f"{out} is a folder: give a file name (or '-' for stdout)")
    if not path.parent.is_dir():
        raise InvalidInput(
            "--out", f"folder {path.parent} does not exist: create it first, or write elsewhere"
        )


def _check_out_folder(out: str) -> None:
    """``--out`` for one file per carrier: an existing folder (never created, never ``-``)."""
    if out == "-":
        raise InvalidInput(
            "--out",
            "'-' (standard output) takes one carrier's export: add --carrier NAME,"
            " or give a folder for one file per carrier",
        )
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InvalidInput("--out", f"{out} is a file: without --carrier, give a folder")
    if not path.is_dir():
        raise InvalidInput("--out", f"folder {out} does not exist: create it first")


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as error:
        raise InvalidInput("--out", f"cannot write {path}: {error.strerror}") from None


@settlement.command("export")
@month_option
@click.option("--carrier", metavar="NAME", help="One carrier (default: each, one file each).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="File format.")
@click.option(
    "--out",
    required=True,
    metavar="PATH",
    help="With --carrier: the file to write ('-' for standard output); else an existing"
    " folder, where each carrier's export is settlement-MONTH-CARRIER.FORMAT.",
)
@click.pass_obj
def settlement_export(obj: Any, month: str, carrier: str | None, fmt: str, out: str) -> None:
    """Export settlements: CSV and JSON for finance systems (byte-identical for the same
    data; columns in docs/billing.md), PDF for people."""
    runs.parse_month(month)
    if carrier is not None:
        _check_out_file(out)
    else:
        _check_out_folder(out)
    with store(obj) as engine, engine.connect() as conn:
        names = [carrier] if carrier is not None else _carriers_with(conn, month)
        docs = [(name, runs.load(conn, name, month)) for name in names]
    if carrier is not None:
        data = export.render(docs[0][1], fmt)
        if out == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return
        _write(Path(out), data)
        click.echo(f"wrote {out} ({count(len(data), 'byte')})")
        return
    folder = Path(out)
    for name, doc in docs:
        path = folder / f"settlement-{month}-{name}.{fmt}"
        _write(path, export.render(doc, fmt))
        click.echo(f"wrote {path}")
    if not docs:
        click.echo(f"no settlements of {month}: run 'gatewayctl settlement run --month {month}'")


@click.command("usage")
@click.option("--carrier", metavar="NAME", required=True, help="The carrier.")
@click.option("--from", "first", metavar="YYYY-MM-DD", required=True, help="First day.")
@click.option("--to", "last", metavar="YYYY-MM-DD", required=True, help="Last day (included).")
@json_option
@click.pass_obj
def usage_cmd(obj: Any, carrier: str, first: str, last: str, as_json: bool) -> None:
    """A carrier's messages per day (its billing time zone), by final state."""
    start, end = _day(first, "from"), _day(last, "to")
    with store(obj) as engine, engine.connect() as conn:
        [who] = runs.billing_of(conn, carrier)
        rows = usage.per_day(conn, who, start, end)
        out = usage.per_day(conn, who, start, end, leg="out")
    if not any(r["messages"] for r in out):
        out = []  # it took nothing from us: the report is its inbound one alone
    if as_json:
        click.echo(render.to_json({"inbound": rows, "outbound": out} if out else rows))
        return
    render.table(
        rows,
        ("day", "messages", "parts", "billable", "delivered", "failed", "expired", "rejected",
         "deleted"),
        title=f"{who.name} ({who.timezone})",
    )  # fmt: skip
    click.echo(f"total: {count(sum(r['messages'] for r in rows), 'message')}")
    if out:
        render.table(
            out,
            ("day", "messages", "parts", "delivered"),
            title=f"{who.name}: outbound (cost) - messages delivered to it",
        )
        click.echo(f"outbound total: {count(sum(r['messages'] for r in out), 'message')}")


@click.group("cdrs")
def cdrs_group() -> None:
    """Call detail records."""


@cdrs_group.command("export")
@click.option("--carrier", metavar="NAME", required=True, help="The carrier.")
@click.option("--from", "first", metavar="YYYY-MM-DD", required=True, help="First day.")
@click.option("--to", "last", metavar="YYYY-MM-DD", required=True, help="Last day (included).")
@click.option("--format", "fmt", type=click.Choice(("csv", "json")), default="csv",
              show_default=True, help="File format.")  # fmt: skip
@click.option("--out", required=True, metavar="PATH", help="File to write ('-': standard output).")
@click.pass_obj
def cdrs_export(obj: Any, carrier: str, first: str, last: str, fmt: str, out: str) -> None:
    """Itemised CDRs of a carrier, for disputes: one per message, with the id the carrier
    was given and the tariff that rated it (columns in docs/billing.md)."""
    start, end = _day(first, "from"), _day(last, "to")
    _check_out_file(out)
    write = usage.write_csv if fmt == "csv" else usage.write_json
    with store(obj) as engine, engine.connect() as conn:
        [who] = runs.billing_of(conn, carrier)
        total = usage.count_itemised(conn, who, start, end)
        with progress.task(f"Exporting {carrier}'s CDRs", total=total) as shown:
            rows = counted(usage.itemised(conn, who, start, end), shown)
            if out == "-":
                write(rows, sys.stdout)
                return
            try:
                f = open(out, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
            except OSError as error:
                raise InvalidInput("--out", f"cannot write {out}: {error.strerror}") from None
            with f:
                n = write(rows, f)
    click.echo(f"wrote {count(n, 'CDR')} to {out}")


def counted(rows: Iterator[dict[str, Any]], shown: progress.Task) -> Iterator[dict[str, Any]]:
    """``rows``, advancing the progress display every 1,000."""
    n = 0
    for row in rows:
        yield row
        n += 1
        if n % 1000 == 0:
            shown.advance(1000)
    shown.advance(n % 1000)
