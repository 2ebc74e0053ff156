# Opening the store: engine settings per backend, schema upgrades, and translated DB errors.
"""Engines for SQLite (embedded default, WAL, durable commits) and PostgreSQL (psycopg 3).

Everything that touches the database from outside goes through here, so a database that is
missing, unreachable or at the wrong schema revision becomes one ``StoreError`` saying what
to do, instead of a driver traceback.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

import migrations
from gateway.errors import GatewayError
from gateway.secrets import require_private_file

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


class StoreError(GatewayError):
    """The store cannot be used as it is (unreachable, not initialised, wrong revision)."""


def display_url(url: str) -> str:
    """The URL with any password hidden, fit for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we acknowledge anything (accepted means durable).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///FILE`` store (None for other backends, memory and URIs)."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return None if database.startswith("file:") else database


def sqlite_files(url: str) -> list[str]:
    """The SQLite store's file and its side files (WAL, shared memory, journal) that exist."""
    database = sqlite_path(url)
    if database is None:
        return []
    names = [database + suffix for suffix in ("", *SQLITE_SIDE_FILES)]
    return [name for name in names if os.path.exists(name)]


def restrict_sqlite_files(url: str) -> list[str]:
    """Make the SQLite store's files owner-only (0600); the ones changed. They hold digest
    hashes (password-equivalent), message texts and the audit log."""
    changed = []
    for name in sqlite_files(url):
        mode = os.stat(name).st_mode
        if stat.S_ISREG(mode) and mode & 0o077:
            os.chmod(name, 0o600)
            changed.append(name)
    return changed


def require_private_store(url: str) -> None:
    """Refuse a SQLite store (or side file) that group or others can read or change."""
    for name in sqlite_files(url):
        require_private_file(name, "database", "SQLite store file")


def make_engine(url: str, *, create: bool = True) -> Engine:
    """An engine for a ``sqlite:///`` or ``postgresql+psycopg://`` URL. A new SQLite file is
    created owner-only (0600) whatever the umask; SQLite gives its side files the same mode.

    With ``create`` False (every gatewayctl command but ``init``, and the server) a missing
    SQLite file is refused instead: a mistyped path must not leave an empty store behind."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = sqlite_path(url)
        if database is not None:
            folder = Path(database).expanduser().resolve().parent
            if not folder.is_dir():
                raise StoreError(f"database {url}: folder {folder} does not exist")
            if not create and not Path(database).expanduser().exists():
                raise StoreError(
                    f"database {url}: file {database} does not exist (a typo in the path?);"
                    " run 'gatewayctl init' to create it"
                )
            if create:
                _create_private(str(Path(database).expanduser()))
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _create_private(database: str) -> None:
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as error:
        raise StoreError(f"database {database}: cannot create it: {error.strerror}") from None


def _alembic_config(connection: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The schema revision this version of the gateway needs."""
    script = ScriptDirectory(str(Path(migrations.__file__).parent))
    head = script.get_current_head()
    assert head is not None, "migrations folder has no revision"
    return head


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """Turn driver errors into a StoreError naming the database (password hidden)."""
    try:
        yield
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreError(f"database {display_url(url)} is unavailable: {reason}") from exc
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreError(f"database {display_url(url)}: {reason}") from exc


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never initialised."""
    with translated(str(engine.url)), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema to head; returns (revision before, revision after)."""
    with translated(str(engine.url)), engine.begin() as conn:
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(_alembic_config(conn), "head")
    return before, head_revision()


def require_current(engine: Engine) -> None:
    """Refuse to run against a database that is not at this gateway's schema revision."""
    have, need = current_revision(engine), head_revision()
    shown = display_url(str(engine.url))
    if have is None:
        raise StoreError(f"database {shown} is not initialised: run 'gatewayctl init'")
    if have != need:
        raise StoreError(
            f"database {shown} is at schema revision {have}, this gateway needs {need}: "
            "run 'gatewayctl init' to upgrade"
        )
