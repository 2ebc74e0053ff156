# Settlement exports: CSV and JSON for finance systems (deterministic), a PDF for people.
"""Three renderings of one stored settlement (billing/runs.py ``load``).

CSV and JSON are byte-identical for the same settlement data: fixed column and key order,
decimals as exact text, times in ISO 8601 UTC, no build timestamp (a rebuild of unchanged
data gives the same file). The columns are documented in docs/billing.md.

The PDF is an invoice statement a clerk can read: carrier, period and time zone, lines,
totals per currency, the rounding rule and the count and checksum of the CDRs it was built
from. fpdf2 writes it (pure Python, maintained, no system libraries) in DejaVu Sans, shipped
in billing/fonts (any name prints: Arabic, Cyrillic ...; fpdf2 embeds only the glyphs used),
shaped by HarfBuzz (uharfbuzz) so that Arabic letters join and read right to left. Each page
says "page N of M"; a draft carries a DRAFT watermark on every page, a final one none.

Each line with a prefix also names its destination (billing/destinations.py).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from importlib.resources import files
from typing import Any

from billing.destinations import name as destination_name
from billing.settlement import ROUNDING_NOTE
from gateway.words import count

FORMAT = "gateway-settlement/1"
CSV_COLUMNS = (
    "carrier",
    "period",
    "state",
    "line",
    "kind",
    "source_period",
    "prefix",
    "destination",
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


def _line(line: Mapping[str, Any]) -> dict[str, Any]:
    """A line for CSV and JSON: its stored fields plus the name of its prefix's destination."""
    return {
        **{k: _text(v) for k, v in line.items()},
        "destination": destination_name(line.get("prefix")),
    }


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
        "lines": [_line(line) for line in s["lines"]],
        "totals": [{"currency": c, "amount": _text(a)} for c, a in s["totals"].items()],
    }
    cost = s.get("outbound_cost")
    if cost is not None:  # what we pay the carrier (leg out), apart from what it pays us
        doc["outbound_cost"] = {
            "messages": cost["messages"],
            "parts": cost["parts"],
            "unrated": cost["unrated"],
            "lines": [_line(line) for line in cost["lines"]],
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
        row = {**common, **_line(line), "line": line["seq"]}
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
            row = {**common, **_line(line), "line": line["seq"], "kind": f"cost-{line['kind']}"}
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


def _number(value: int | None) -> str:
    """A count in a table cell; empty where a line has none (a fee's volume, a fixed amount)."""
    return "" if value is None else f"{value:,}"


FONT = "DejaVuSans"  # billing/fonts: DejaVu Sans (Bitstream Vera licence, LICENSE-DejaVu.txt)
FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}


def font_file(style: str = "") -> str:
    """The shipped TTF file of ``style`` ("" or "B"), found in the installed package."""
    return str(files("billing") / "fonts" / FONT_FILES[style])


def _document(footer: str, draft: bool) -> Any:
    """An A4 FPDF with the Unicode font, page "N of M" footers and, on drafts, a watermark."""
    from fpdf import FPDF

    class Statement(FPDF):
        def header(self) -> None:
            if not draft:
                return
            # drawn first on each page, in light grey, so that every line stays readable
            shaping = self.text_shaping
            with self.local_context(text_color=(225, 225, 225)):
                self.set_font(FONT, "B", 120)
                mark = "DRAFT"
                x = (self.w - self.get_string_width(mark)) / 2
                self.text_shaping = None
                with self.rotation(45, x=self.w / 2, y=self.h / 2):
                    self.text(x, self.h / 2 + 15, mark)
            self.text_shaping = shaping  # a table running over the page goes on as it was

        def footer(self) -> None:
            shaping, self.text_shaping = self.text_shaping, None
            self.set_y(-12)
            self.set_font(FONT, "", 8)
            self.cell(0, 5, f"{footer} - page {self.page_no()} of {{nb}}", align="R")
            self.text_shaping = shaping

    pdf = Statement(orientation="P", unit="mm", format="A4")
    for style in FONT_FILES:
        pdf.add_font(FONT, style, font_file(style))
    return pdf


def _needs_shaping(text: str) -> bool:
    """Text in a script whose letters join or run right to left (Arabic, Hebrew, Indic ...).

    Shaping costs time on every cell, so Latin, Greek and Cyrillic text is set without it."""
    return any(ord(c) >= 0x0590 for c in text)


def _shape_for(pdf: Any, *texts: str) -> None:
    pdf.set_text_shaping(any(_needs_shaping(t) for t in texts))


def _destination(line: Mapping[str, Any]) -> str:
    """``Iraq - mobile (Asiacell) (96477)``: the name with its prefix beside it."""
    prefix = line.get("prefix")
    if not prefix:
        return ""
    named = destination_name(prefix)
    return f"{named} ({prefix})" if named else prefix


def to_pdf(s: Mapping[str, Any]) -> bytes:
    """The settlement as a one-or-more page A4 PDF statement."""
    title = f"Settlement {s['carrier']} {s['period']}"
    pdf = _document(f"Settlement {s['period']}", draft=s["state"] != "final")
    pdf.set_creation_date(s["finalised_at"] or s["built_at"])
    pdf.set_title(title)
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def text_line(text: str, size: float = 10, style: str = "", height: float = 6) -> None:
        pdf.set_font(FONT, style, size)
        _shape_for(pdf, text)
        pdf.multi_cell(width, height, text, new_x="LMARGIN", new_y="NEXT")

    text_line("Settlement statement", 16, "B", 9)
    state = "FINAL" if s["state"] == "final" else "DRAFT - not an invoice until finalised"
    text_line(f"Carrier: {s['carrier']}", 11, "B")
    text_line(
        f"Period: {s['period']} ({s['timezone']}): {s['period_start']:%Y-%m-%d %H:%M} to "
        f"{s['period_end']:%Y-%m-%d %H:%M} UTC"
    )
    text_line(f"State: {state}")
    what = "every accepted message" if s["billable"] == "accepted" else "delivered messages only"
    text_line(f"Billable: {what}; {count(s['messages'], 'billable message')} in the period")
    pdf.ln(3)

    columns = (("Description", 0.28), ("Destination (prefix)", 0.27), ("Msgs", 0.07),
               ("Parts", 0.07), ("Units", 0.07), ("Unit price", 0.11),
               ("Amount", 0.13))  # fmt: skip
    cells = [
        (f"{line['seq']}. [{line['kind']}] {line['description']}", _destination(line))
        for line in s["lines"]
    ]
    _shape_for(pdf, *(text for pair in cells for text in pair))  # the table is set at its end
    with pdf.table(
        col_widths=[w for _, w in columns],
        text_align=("LEFT", "LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
        line_height=5,
        first_row_as_headings=True,
    ) as table:
        pdf.set_font(FONT, "", 7)
        header = table.row()
        for name, _ in columns:
            header.cell(name)
        for line, (description, destination) in zip(s["lines"], cells, strict=True):
            row = table.row()
            row.cell(description)
            row.cell(destination)
            row.cell(_number(line["messages"]))
            row.cell(_number(line["parts"]))
            row.cell(_number(line["units"]))
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
            named = f" to {_destination(line)}" if line.get("prefix") else ""
            text_line(
                f"{line['seq']}. [{line['kind']}] {line['description']}{named}: "
                f"{count(line['messages'], 'msg')}, {count(line['units'], 'unit')} x {price} = "
                f"{amount} {line['currency'] or ''}",
                8, "", 4,
            )  # fmt: skip
        for currency, amount in cost["totals"].items():
            text_line(f"Outbound (cost) total {currency}: {amount}", 10, "B", 6)
    pdf.ln(2)
    text_line(f"Rounding: {ROUNDING_NOTE}.", 8, "", 4)
    text_line(f"Built from {count(s['cdr_count'], 'CDR')}; CDR set checksum (SHA-256):", 8, "", 4)
    pdf.set_font("Courier", "", 8)
    pdf.multi_cell(width, 4, s["cdr_checksum"], new_x="LMARGIN", new_y="NEXT")
    if s["pending"]:
        text_line(
            f"{count(s['pending'], 'message')} accepted in the period had no final state yet; "
            f"{'it is' if s['pending'] == 1 else 'they are'} billed as an adjustment of a later"
            " month.",
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
