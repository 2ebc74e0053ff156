# The hot path's inserts: one precompiled executemany per table, values converted once, by hand.
"""Grouped inserts without SQLAlchemy's per-row parameter processing.

SQLAlchemy's executemany runs every value of every row through its type machinery, which
costs more Python time than SQLite takes to write the rows and holds the GIL the event loop
needs. ``FastInsert`` compiles the INSERT once per dialect and converts only the values that
need it (UTC times, JSON), exactly as the column types would, so rows read back through
SQLAlchemy are identical (tests/store/test_fastinsert.py proves it on both backends).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Dialect, Table, bindparam, insert, update
from sqlalchemy.engine import Connection

from gateway.store.types import UTCDateTime

Convert = Callable[[Any], Any]


def _sqlite_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: the store keeps UTC only")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # the text SQLAlchemy's SQLite DATETIME writes ("%Y-%m-%d %H:%M:%S.%f"), so comparisons
    # in SQL stay right; isoformat is the fast way to it
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _aware_time(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: the store keeps UTC only")
    return value


def _converter(column_type: Any, dialect: Dialect) -> Convert | None:
    if isinstance(column_type, UTCDateTime):
        return _sqlite_time if dialect.name == "sqlite" else _aware_time
    if isinstance(column_type, JSON):
        if dialect.name == "sqlite":
            return lambda v: None if v is None else json.dumps(v)
        from psycopg.types.json import Jsonb  # PostgreSQL only

        return lambda v: None if v is None else Jsonb(v)
    return None


class FastInsert:
    """An INSERT of every column of ``table``, compiled for ``dialect``; with ``ignore``, a
    row whose unique key is already stored is skipped (idempotent writes such as CDRs)."""

    def __init__(self, table: Table, dialect: Dialect, *, ignore: bool = False) -> None:
        names = [c.name for c in table.columns]
        compiled = insert(table).compile(dialect=dialect, column_keys=names)
        self.sql = str(compiled)
        if ignore:
            if dialect.name == "sqlite":
                self.sql = self.sql.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
            else:
                self.sql += " ON CONFLICT DO NOTHING"
        self.positional = bool(compiled.positional)
        order = list(compiled.positiontup or []) if self.positional else names
        self.order = order
        self.converters = [
            (i, name, _converter(table.c[name].type, dialect)) for i, name in enumerate(order)
        ]
        self.converting = [(name, conv) for _, name, conv in self.converters if conv is not None]

    def execute(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if self.positional:
            converters = self.converters
            params: list[Any] = [
                tuple(conv(row[name]) if conv else row[name] for _, name, conv in converters)
                for row in rows
            ]
        else:
            params = []
            for row in rows:
                out = dict(row)
                for name, conv in self.converting:
                    out[name] = conv(out[name])
                params.append(out)
        conn.exec_driver_sql(self.sql, params)


class FastUpdate:
    """``UPDATE table SET <columns> WHERE <key> = ? [AND guard]`` compiled once for ``dialect``,
    run as one executemany over dicts holding the columns and the key (values converted as
    the column types would)."""

    def __init__(
        self, table: Table, columns: list[str], key: str, dialect: Dialect, guard: str = ""
    ) -> None:
        statement = update(table).where(table.c[key] == bindparam("_key"))
        statement = statement.values({name: bindparam(name) for name in columns})
        compiled = statement.compile(dialect=dialect)
        # ``guard``: a fixed SQL condition of the code's own (never data), e.g. on the state
        self.sql = str(compiled) + (f" AND {guard}" if guard else "")
        self.positional = bool(compiled.positional)
        self.order = list(compiled.positiontup or []) if self.positional else [*columns, "_key"]
        self.key = key
        self.converters = [
            (name, None if name == "_key" else _converter(table.c[name].type, dialect))
            for name in self.order
        ]

    def execute(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        """Run the update for every row; returns the rows changed (as the driver counts)."""
        key = self.key
        if self.positional:
            params: list[Any] = [
                tuple(
                    (row[key] if name == "_key" else (conv(row[name]) if conv else row[name]))
                    for name, conv in self.converters
                )
                for row in rows
            ]
        else:
            params = [
                {
                    name: (row[key] if name == "_key" else (conv(row[name]) if conv else row[name]))
                    for name, conv in self.converters
                }
                for row in rows
            ]
        result = conn.exec_driver_sql(self.sql, params)
        return int(result.rowcount)
