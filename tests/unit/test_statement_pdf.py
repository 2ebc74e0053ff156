# The settlement PDF prints any name (Arabic shaped), numbers its pages, marks drafts; destinations.
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pypdf

from billing.export import font_file, to_csv, to_json, to_pdf

ZAIN = "زين العراق"


def statement(state: str = "draft", lines: int = 2, carrier: str = ZAIN) -> dict:
    prefixes = ["96477", "96478", *(f"964{n:04d}" for n in range(1000, 1000 + lines))][:lines]
    return {
        "carrier": carrier,
        "period": "2026-10",
        "state": state,
        "timezone": "Asia/Baghdad",
        "period_start": datetime(2026, 9, 30, 21, tzinfo=UTC),
        "period_end": datetime(2026, 10, 31, 21, tzinfo=UTC),
        "billable": "accepted",
        "cdr_count": 10 * lines,
        "cdr_checksum": "ab" * 32,
        "pending": 0,
        "built_at": datetime(2026, 11, 1, 3, tzinfo=UTC),
        "finalised_at": None if state == "draft" else datetime(2026, 11, 2, tzinfo=UTC),
        "finalised_by": None if state == "draft" else "finance",
        "states": {"delivered": 10 * lines},
        "messages": 10 * lines,
        "lines": [
            {
                "seq": i + 1,
                "kind": "usage",
                "source_period": "2026-10",
                "prefix": prefix,
                "description": f"{prefix} at 0.01 USD per message",
                "tariff_id": i + 1,
                "currency": "USD",
                "unit": "message",
                "unit_price": Decimal("0.01"),
                "messages": 10,
                "parts": 10,
                "units": 10,
                "amount": Decimal("0.10"),
            }
            for i, prefix in enumerate(prefixes)
        ],
        "totals": {"USD": Decimal(lines) / 10},
    }


def pages(pdf: bytes) -> list[str]:
    return [p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def test_an_arabic_carrier_name_prints_as_itself_not_question_marks():
    text = "\n".join(pages(to_pdf(statement())))
    assert f"Carrier: {ZAIN}" in text
    assert "?" not in text


def test_a_long_statement_numbers_its_pages_n_of_m():
    texts = pages(to_pdf(statement(lines=150)))
    total = len(texts)
    assert total >= 3
    for n, text in enumerate(texts, 1):
        assert f"page {n} of {total}" in text


def test_a_draft_is_watermarked_on_every_page_and_a_final_nowhere():
    draft = pages(to_pdf(statement("draft", lines=150)))
    assert len(draft) >= 3
    assert all("DRAFT" in text for text in draft)  # the state line is on page 1 only
    final = pages(to_pdf(statement("final", lines=150)))
    assert not any("DRAFT" in text for text in final)
    assert "State: FINAL" in final[0]


def test_re_exporting_gives_the_same_pdf_bytes():
    for state in ("draft", "final"):
        assert to_pdf(statement(state, lines=40)) == to_pdf(statement(state, lines=40))


def test_destinations_are_named_beside_their_prefix_in_pdf_csv_and_json():
    s = statement()
    text = "\n".join(pages(to_pdf(s))).replace("\n", " ")
    assert "Iraq - mobile (Asiacell) (96477)" in text
    assert "Iraq - mobile (Zain) (96478)" in text
    rows = list(csv.DictReader(io.StringIO(to_csv(s))))
    assert [(r["prefix"], r["destination"]) for r in rows] == [
        ("96477", "Iraq - mobile (Asiacell)"),
        ("96478", "Iraq - mobile (Zain)"),
        ("", ""),  # the total row
    ]
    doc = json.loads(to_json(s))
    assert [(ln["prefix"], ln["destination"]) for ln in doc["lines"]] == [
        ("96477", "Iraq - mobile (Asiacell)"),
        ("96478", "Iraq - mobile (Zain)"),
    ]


def test_the_font_ships_inside_the_built_package_with_its_licence(tmp_path: Path):
    """setuptools' build (what a wheel and ``pip install`` copy) holds the font and licence,
    and the package finds them there, apart from the source tree and any system font."""
    root = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"
    shutil.copytree(
        root, src,
        ignore=shutil.ignore_patterns(".git", "tests", "bench", "docs", "*.egg-info",
                                      "__pycache__", "build", ".*"),
    )  # fmt: skip
    built = tmp_path / "built"
    subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py",
         "-d", str(built)],
        check=True, cwd=src, capture_output=True,
    )  # fmt: skip
    probe = (
        "import billing.export as e, pathlib, sys;"
        "p = pathlib.Path(e.font_file('')); b = pathlib.Path(e.font_file('B'));"
        "assert p.is_relative_to(sys.argv[1]), p;"
        "assert p.stat().st_size > 100000 and b.stat().st_size > 100000;"
        "assert (p.parent / 'LICENSE-DejaVu.txt').is_file()"
    )
    subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(built)!r}); {probe}",
         str(built)],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    assert Path(font_file("")).is_file()
