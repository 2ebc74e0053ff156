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


# Off a terminal a table is as wide as its content (rich would cut it to 80 columns).
UNBOUNDED_WIDTH = 100_000


def console(*, stderr: bool = False) -> Console:
    """A console for tables: on a terminal, its width (long values fold onto more lines);
    off a terminal (a pipe, a file, ``| grep``), wide enough for every whole value."""
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, width=UNBOUNDED_WIDTH)


def table(records: Sequence[Record], columns: Iterable[str], title: str | None = None) -> None:
    """Print records as a table with the given columns, in order; values are never cut."""
    out_console = console()
    cols = list(columns)
    out = Table(title=title, show_lines=False, header_style="bold")
    for col in cols:
        out.add_column(col, overflow="fold")
    for record in records:
        out.add_row(*(Text(_cell(record.get(col))) for col in cols))
    out_console.print(out)
    if not records:
        out_console.print(Text("(none)"))


def details(record: Record) -> None:
    """Print one record as ``field  value`` lines."""
    out = Table(show_header=False, box=None)
    out.add_column(style="bold", no_wrap=True)
    out.add_column(overflow="fold")
    for key, value in record.items():
        out.add_row(Text(key), Text(_cell(value)))
    console().print(out)
