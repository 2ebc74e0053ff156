# The alembic migrations build exactly the tables the code declares, on SQLite and PostgreSQL.
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select

from gateway.store.engine import (
    StoreError,
    current_revision,
    head_revision,
    make_engine,
    migrate,
    require_current,
)
from gateway.store.schema import carriers, customers, metadata, tariffs


def test_migrations_match_the_declared_schema(store_url: str) -> None:
    engine = make_engine(store_url)
    assert current_revision(engine) is None
    before, after = migrate(engine)
    assert (before, after) == (None, head_revision())
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
        tables = set(inspect(conn).get_table_names())
    assert diff == []
    assert set(metadata.tables) <= tables
    # running again is a no-op
    assert migrate(engine) == (head_revision(), head_revision())
    require_current(engine)
    engine.dispose()


def test_uninitialised_store_is_refused_with_the_command_to_run(store_url: str) -> None:
    engine = make_engine(store_url)
    with pytest.raises(StoreError, match="not initialised: run 'gatewayctl init'"):
        require_current(engine)
    engine.dispose()


def test_times_come_back_utc_and_money_exact(store_url: str) -> None:
    engine = make_engine(store_url)
    migrate(engine)
    plus3 = timezone(timedelta(hours=3))
    local = datetime(2026, 1, 31, 23, 30, tzinfo=plus3)
    with engine.begin() as conn:
        conn.execute(insert(customers).values(name="c", created_at=local))
        carrier = conn.execute(
            insert(carriers).values(
                name="T",
                system_id="T",
                password_hash="x",
                allowed_networks=["10.0.0.0/8"],
                max_binds=1,
                receipt_id_format="dec",
                data_coding_default="gsm",
                enabled=True,
                created_at=local,
                updated_at=local,
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(tariffs).values(
                carrier_id=carrier,
                prefix="964",
                price=Decimal("0.000001"),
                currency="USD",
                effective_from=local.date(),
                created_at=local,
            )
        )
    with engine.connect() as conn:
        at = conn.execute(select(customers.c.created_at)).scalar_one()
        price = conn.execute(select(tariffs.c.price)).scalar_one()
    assert at == local and at.tzinfo == UTC and at.hour == 20
    assert price == Decimal("0.000001") and isinstance(price, Decimal)
    with pytest.raises(Exception, match="naive datetime"), engine.begin() as conn:
        conn.execute(insert(customers).values(name="d", created_at=datetime(2026, 1, 1)))
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_durable_commits(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_missing_sqlite_folder_and_unreachable_postgres_are_clear(tmp_path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        make_engine(f"sqlite:///{tmp_path / 'nope' / 'g.db'}")
    engine = make_engine("postgresql+psycopg://nobody:secretpw@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(StoreError, match="is unavailable") as info:
        current_revision(engine)
    assert "secretpw" not in str(info.value)
