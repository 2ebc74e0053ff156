# An admin session: config, store and provisioning context for one gatewayctl command.
"""Opens what a ``gatewayctl`` command needs, in one place, so every command treats
the config, the schema revision, the secret key and the actor the same way."""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache

from sqlalchemy import Engine

from gateway.config import Config
from gateway.provisioning.base import Context
from gateway.secrets import SecretBox
from gateway.store.engine import make_engine, require_current, translated


def default_actor() -> str:
    """Who is acting: ``$GATEWAY_ACTOR``, else the login name and host."""
    explicit = os.environ.get("GATEWAY_ACTOR", "").strip()
    if explicit:
        return explicit[:128]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (containers)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"[:128]


def open_store(config: Config) -> Engine:
    """An engine on the configured database, refused unless it exists (only ``init``
    creates one) and its schema is current."""
    engine = make_engine(config.database, create=False)
    require_current(engine)
    return engine


@contextlib.contextmanager
def session(config: Config, actor: str, *, dry_run: bool = False) -> Iterator[Context]:
    """One admin transaction: committed when the block ends normally, else rolled back.

    With ``dry_run`` it is always rolled back, so a command can show what it would do."""
    engine = open_store(config)
    box = cache(lambda: SecretBox.from_key_file(config.secret_key_file))
    try:
        with translated(config.database), engine.connect() as conn:
            transaction = conn.begin()
            ctx = Context(
                conn=conn,
                actor=actor,
                now=datetime.now(UTC),
                plan=config.numbering,
                realm=config.sip.domain,
                secret_box=box,
            )
            try:
                yield ctx
            except BaseException:
                transaction.rollback()
                raise
            if dry_run:
                transaction.rollback()
            else:
                transaction.commit()
    finally:
        engine.dispose()
