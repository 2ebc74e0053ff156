# Settlement exports: CSV and JSON for finance systems (deterministic), a PDF for people.
"""Three renderings of one stored settlement (billing/runs.py ``load``).

CSV and JSON are byte-identical for the same settlement data: fixed column and key order,
decimals as exact text, times in ISO 8601 UTC, no build timestamp (a rebuild of unchanged
data gives the same file). The columns are documented in docs/billing.md.

The PDF is an invoice statement a clerk can read: carrier, period and time zone, lines,
totals per currency, the rounding rule and the count and checksum of the CDRs it was built
from. fpdf2 writes it (pure Python, maintained, no system libraries); its core fonts cover
Latin-1, so other characters are shown as '?'.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.settlement import ROUNDING_NOTE

FORMAT = "gateway-settlement/1"
CSV_COLUMNS = (
    "carrier",
    "period",
    "state",
    "line",
    "kind",
    "source_period",
    "prefix",
    "description",
    "currency",
    "unit",
    "unit_price",
    "messages",
    "parts",
    "units",
    "amount",
    "cdr_count",
    "cdr_checksum",
)


def _text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def to_json(s: Mapping[str, Any]) -> str:
    """The settlement as a JSON document (keys sorted, decimals as text)."""
    doc = {
        "format": FORMAT,
        "carrier": s["carrier"],
        "period": s["period"],
        "state": s["state"],
        "timezone": s["timezone"],
        "period_start": _text(s["period_start"]),
        "period_end": _text(s["period_end"]),
        "billable": s["billable"],
        "rounding": ROUNDING_NOTE,
        "messages": s["messages"],
        "messages_by_state": s["states"],
        "pending": s["pending"],
        "cdr_count": s["cdr_count"],
        "cdr_checksum": s["cdr_checksum"],
        "finalised_at": _text(s["finalised_at"]),
        "lines": [{k: _text(v) for k, v in line.items()} for line in s["lines"]],
        "totals": [{"currency": c, "amount": _text(a)} for c, a in s["totals"].items()],
    }
    cost = s.get("outbound_cost")
    if cost is not None:  # what we pay the carrier (leg out), apart from what it pays us
        doc["outbound_cost"] = {
            "messages": cost["messages"],
            "parts": cost["parts"],
            "unrated": cost["unrated"],
            "lines": [{k: _text(v) for k, v in line.items()} for line in cost["lines"]],
            "totals": [{"currency": c, "amount": _text(a)} for c, a in cost["totals"].items()],
        }
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def to_csv(s: Mapping[str, Any]) -> str:
    """One row per line, then one ``total`` row per currency."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    common = {
        "carrier": s["carrier"],
        "period": s["period"],
        "state": s["state"],
        "cdr_count": s["cdr_count"],
        "cdr_checksum": s["cdr_checksum"],
    }
    for line in s["lines"]:
        row = {**common, **line, "line": line["seq"]}
        writer.writerow(["" if row.get(c) is None else _text(row.get(c)) for c in CSV_COLUMNS])
    for currency, amount in s["totals"].items():
        row = {
            **common,
            "kind": "total",
            "source_period": s["period"],
            "description": f"total {currency}",
            "currency": currency,
            "amount": amount,
        }
        writer.writerow(["" if row.get(c) is None else _text(row.get(c)) for c in CSV_COLUMNS])
    cost = s.get("outbound_cost")
    if cost is not None:  # outbound (cost) rows: kind prefixed "cost-", after the invoice
        for line in cost["lines"]:
            row = {**common, **line, "line": line["seq"], "kind": f"cost-{line['kind']}"}
            writer.writerow(["" if row.get(c) is None else _text(row.get(c)) for c in CSV_COLUMNS])
        for currency, amount in cost["totals"].items():
            row = {
                **common,
                "kind": "cost-total",
                "source_period": s["period"],
                "description": f"outbound (cost) total {currency}",
                "currency": currency,
                "amount": amount,
            }
            writer.writerow(["" if row.get(c) is None else _text(row.get(c)) for c in CSV_COLUMNS])
    return out.getvalue()


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def to_pdf(s: Mapping[str, Any]) -> bytes:
    """The settlement as a one-or-more page A4 PDF statement."""
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_creation_date(s["finalised_at"] or s["built_at"])
    pdf.set_title(_latin1(f"Settlement {s['carrier']} {s['period']}"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def text_line(text: str, size: float = 10, style: str = "", height: float = 6) -> None:
        pdf.set_font("Helvetica", style, size)
        pdf.multi_cell(width, height, _latin1(text), new_x="LMARGIN", new_y="NEXT")

    text_line("Settlement statement", 16, "B", 9)
    state = "FINAL" if s["state"] == "final" else "DRAFT - not an invoice until finalised"
    text_line(f"Carrier: {s['carrier']}", 11, "B")
    text_line(
        f"Period: {s['period']} ({s['timezone']}): {s['period_start']:%Y-%m-%d %H:%M} to "
        f"{s['period_end']:%Y-%m-%d %H:%M} UTC"
    )
    text_line(f"State: {state}")
    what = "every accepted message" if s["billable"] == "accepted" else "delivered messages only"
    text_line(f"Billable: {what}; {s['messages']:,} billable messages in the period")
    pdf.ln(3)

    columns = (("Description", 0.46), ("Msgs", 0.09), ("Parts", 0.09), ("Units", 0.09),
               ("Unit price", 0.12), ("Amount", 0.15))  # fmt: skip
    with pdf.table(
        col_widths=[w for _, w in columns],
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
        line_height=5,
        first_row_as_headings=True,
    ) as table:
        pdf.set_font("Helvetica", "", 8)
        header = table.row()
        for name, _ in columns:
            header.cell(name)
        for line in s["lines"]:
            row = table.row()
            row.cell(_latin1(f"{line['seq']}. [{line['kind']}] {line['description']}"))
            row.cell(f"{line['messages']:,}")
            row.cell(f"{line['parts']:,}")
            row.cell(f"{line['units']:,}")
            price = line["unit_price"]
            row.cell("-" if price is None else f"{price} {line['currency']}")
            amount = line["amount"]
            row.cell("not priced" if amount is None else f"{amount} {line['currency']}")
    pdf.ln(3)
    if s["totals"]:
        for currency, amount in s["totals"].items():
            text_line(f"Total {currency}: {amount}", 12, "B", 7)
    else:
        text_line("Total: nothing to invoice", 12, "B", 7)
    cost = s.get("outbound_cost")
    if cost is not None:  # what we pay the carrier, apart: not part of the totals above
        pdf.ln(2)
        text_line("Outbound (cost): messages we delivered to the carrier", 11, "B")
        for line in cost["lines"]:
            price = "-" if line["unit_price"] is None else f"{line['unit_price']}"
            amount = "not priced" if line["amount"] is None else f"{line['amount']}"
            text_line(
                f"{line['seq']}. [{line['kind']}] {line['description']}: {line['messages']:,}"
                f" msgs, {line['units']:,} units x {price} = {amount} {line['currency'] or ''}",
                8, "", 4,
            )  # fmt: skip
        for currency, amount in cost["totals"].items():
            text_line(f"Outbound (cost) total {currency}: {amount}", 10, "B", 6)
    pdf.ln(2)
    text_line(f"Rounding: {ROUNDING_NOTE}.", 8, "", 4)
    text_line(f"Built from {s['cdr_count']:,} CDRs; CDR set checksum (SHA-256):", 8, "", 4)
    pdf.set_font("Courier", "", 8)
    pdf.multi_cell(width, 4, s["cdr_checksum"], new_x="LMARGIN", new_y="NEXT")
    if s["pending"]:
        text_line(
            f"{s['pending']:,} messages accepted in the period had no final state yet; they "
            "are billed as an adjustment of a later month.",
            8, "", 4,
        )  # fmt: skip
    if s["finalised_at"] is not None:
        text_line(
            f"Finalised {s['finalised_at']:%Y-%m-%d %H:%M} UTC by {s['finalised_by']}.", 8, "", 4
        )
    return bytes(pdf.output())


def render(s: Mapping[str, Any], fmt: str) -> bytes:
    if fmt == "csv":
        return to_csv(s).encode()
    if fmt == "json":
        return to_json(s).encode()
    if fmt == "pdf":
        return to_pdf(s)
    raise ValueError(f"unknown export format {fmt!r}")
