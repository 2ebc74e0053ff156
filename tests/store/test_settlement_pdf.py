# A settlement of a carrier with an Arabic name, exported by gatewayctl: PDF text, names, DRAFT.
from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pypdf
import pytest
from sqlalchemy import insert, select

from gateway.store.engine import make_engine
from gateway.store.schema import carriers, cdrs

ZAIN = "زين العراق"
MONTH = "2026-10"


@pytest.fixture
def zain(ctl, store_url):
    ctl.ok("carrier", "add", ZAIN, "--system-id", "ZAINIQ", "--password", "zain1234",
           "--allow-ip", "127.0.0.1")  # fmt: skip
    for prefix, price in (("96477", "0.01"), ("96478", "0.02")):
        ctl.ok("tariff", "add", "--carrier", ZAIN, "--prefix", prefix, "--price", price,
               "--currency", "USD", "--from", f"{MONTH}-01")  # fmt: skip
    engine = make_engine(store_url)
    with engine.begin() as conn:
        cid = conn.execute(select(carriers.c.id).where(carriers.c.name == ZAIN)).scalar_one()
        start = datetime(2026, 10, 5, tzinfo=UTC)
        conn.execute(insert(cdrs), [
            dict(id=i, message_id=i, leg="in", carrier_id=cid, source="4477",
                 destination=dest, parts=1, data_coding=0, route="sip:1111", state="delivered",
                 accepted_at=start + timedelta(minutes=i),
                 final_at=start + timedelta(minutes=i, seconds=2))
            for i, dest in enumerate(["9647701234567"] * 3 + ["9647801234567"] * 2, 1)
        ])  # fmt: skip
    engine.dispose()


def export(ctl, fmt: str, path) -> bytes:
    ctl.ok("settlement", "export", "--month", MONTH, "--carrier", ZAIN, "--format", fmt,
           "--out", str(path))  # fmt: skip
    return path.read_bytes()


def pdf_text(data: bytes) -> list[str]:
    return [p.extract_text() for p in pypdf.PdfReader(io.BytesIO(data)).pages]


def test_an_arabic_carrier_s_statement_names_it_and_its_destinations(ctl, zain, tmp_path):
    ctl.ok("settlement", "run", "--month", MONTH, "--carrier", ZAIN)
    draft = export(ctl, "pdf", tmp_path / "draft.pdf")
    assert export(ctl, "pdf", tmp_path / "again.pdf") == draft  # re-export: same bytes
    [page] = pdf_text(draft)
    assert f"Carrier: {ZAIN}" in page
    flat = page.replace("\n", " ")
    assert "Iraq - mobile (Asiacell) (96477)" in flat
    assert "Iraq - mobile (Zain) (96478)" in flat
    assert "page 1 of 1" in page
    assert "DRAFT" in page

    rows = list(csv.DictReader(io.StringIO(export(ctl, "csv", tmp_path / "s.csv").decode())))
    assert [(r["prefix"], r["destination"], r["amount"]) for r in rows] == [
        ("96477", "Iraq - mobile (Asiacell)", "0.03"),
        ("96478", "Iraq - mobile (Zain)", "0.04"),
        ("", "", "0.07"),
    ]
    doc = json.loads(export(ctl, "json", tmp_path / "s.json"))
    assert doc["carrier"] == ZAIN
    assert [ln["destination"] for ln in doc["lines"]] == [
        "Iraq - mobile (Asiacell)", "Iraq - mobile (Zain)",
    ]  # fmt: skip

    ctl.ok("settlement", "finalise", "--month", MONTH, "--carrier", ZAIN)
    final = export(ctl, "pdf", tmp_path / "final.pdf")
    [page] = pdf_text(final)
    assert f"Carrier: {ZAIN}" in page
    assert "State: FINAL" in page
    assert "DRAFT" not in page
    assert export(ctl, "pdf", tmp_path / "final-again.pdf") == final
