# Showing records to an admin: rich tables on a terminal, stable JSON for scripts.
"""Output of gatewayctl: ``--json`` is a contract for scripts (sorted keys, ISO dates,
decimals as text); the tables are for people and may change."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.provisioning.base import Record, json_ready

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
"""The ``--json`` flag every list/show command has (its parameter: ``as_json``)."""


def to_json(data: Any) -> str:
    if isinstance(data, dict):
        data = json_ready(data)
    elif isinstance(data, list):
        data = [json_ready(r) if isinstance(r, dict) else r for r in data]
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(json_ready(value), sort_keys=True, ensure_ascii=False)
    return str(value)


def table(records: Sequence[Record], columns: Iterable[str], title: str | None = None) -> None:
    """Print records as a table with the given columns, in order."""
    console = Console()
    cols = list(columns)
    out = Table(title=title, show_lines=False, header_style="bold")
    for col in cols:
        out.add_column(col)
    for record in records:
        out.add_row(*(Text(_cell(record.get(col))) for col in cols))
    console.print(out)
    if not records:
        console.print(Text("(none)"))


def details(record: Record) -> None:
    """Print one record as ``field  value`` lines."""
    console = Console()
    out = Table(show_header=False, box=None)
    out.add_column(style="bold")
    out.add_column()
    for key, value in record.items():
        out.add_row(Text(key), Text(_cell(value)))
    console.print(out)
