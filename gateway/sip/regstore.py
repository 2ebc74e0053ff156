# The registrar's bindings in the store: writer operations, loading at start, the admin listing.
"""Persistence of SIP registrations (table ``registrations``).

The registrar (``gateway.sip.registrar``) holds bindings in memory; each REGISTER that
changes an account's bindings is written by ``SaveBindingsOp`` through the batch writer, and
the 200 is sent only once it is committed. Expired bindings are deleted by
``ExpireBindingsOp``, only when they were not refreshed meanwhile. ``load_bindings`` reads
the live ones back at start; ``registration_rows`` is what ``gatewayctl registrations list``
shows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.engine import Connection

from gateway.sip.registrar import Binding
from gateway.store.schema import accounts, dids, registrations
from gateway.store.writer import Batch

log = logging.getLogger("gateway.sip")


def binding_row(binding: Binding) -> dict[str, Any]:
    """The registrations row of a binding (without its id)."""
    return {
        "account_id": binding.account,
        "contact": binding.contact,
        "expires_at": binding.expires_at,
        "call_id": binding.call_id,
        "cseq": binding.cseq,
        "q": binding.q,
        "transport": binding.transport,
        "source_host": binding.source[0],
        "source_port": binding.source[1],
        "user_agent": binding.user_agent,
        "updated_at": binding.updated_at,
    }


class SaveBindingsOp:
    """Replace one account's stored bindings by ``bindings`` (its state after a REGISTER)."""

    def __init__(
        self,
        account: int,
        bindings: tuple[Binding, ...],
        done: Callable[[BaseException | None], None],
    ) -> None:
        for binding in bindings:
            if binding.account != account:
                raise ValueError(f"binding of account {binding.account} given for {account}")
        self.account = account
        self.bindings = bindings
        self.done = done

    def stage(self, batch: Batch) -> None:
        # One statement after the grouped inserts, so a delete never removes rows inserted by
        # a later operation of the same batch: operations apply in the order they were queued.
        batch.then(self._write)

    def _write(self, conn: Connection) -> None:
        conn.execute(delete(registrations).where(registrations.c.account_id == self.account))
        if self.bindings:
            conn.execute(insert(registrations), [binding_row(b) for b in self.bindings])

    def finish(self, error: BaseException | None) -> None:
        self.done(error)


_EXPIRE = (
    delete(registrations)
    .where(registrations.c.account_id == bindparam("b_account"))
    .where(registrations.c.contact == bindparam("b_contact"))
    .where(registrations.c.expires_at <= bindparam("b_expires_at"))
)


class ExpireBindingsOp:
    """Delete the rows of expired bindings, unless a refresh stored a later expiry meanwhile."""

    def __init__(
        self,
        bindings: list[Binding],
        done: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        self.bindings = list(bindings)
        self.done = done

    def stage(self, batch: Batch) -> None:
        if self.bindings:
            batch.then(self._write)

    def _write(self, conn: Connection) -> None:
        conn.execute(
            _EXPIRE,
            [
                {"b_account": b.account, "b_contact": b.contact, "b_expires_at": b.expires_at}
                for b in self.bindings
            ],
        )

    def finish(self, error: BaseException | None) -> None:
        if error is not None:
            # Harmless: the rows stay expired, load_bindings skips them and the next
            # REGISTER of the account rewrites its rows.
            log.warning("deleting %d expired registrations failed: %s", len(self.bindings), error)
        if self.done is not None:
            self.done(error)


def load_bindings(conn: Connection, now: datetime) -> list[Binding]:
    """The live bindings (``expires_at > now``) in the store, for the registrar at start."""
    query = (
        select(registrations, accounts.c.account_id.label("aor"))
        .join(accounts, registrations.c.account_id == accounts.c.id)
        .where(registrations.c.expires_at > now)
        .order_by(registrations.c.account_id, registrations.c.contact)
    )
    return [
        Binding(
            account=row.account_id,
            aor=row.aor,
            contact=row.contact,
            expires_at=row.expires_at,
            call_id=row.call_id,
            cseq=row.cseq,
            q=None if row.q is None else float(row.q),
            transport=row.transport,
            source=(row.source_host, row.source_port),
            user_agent=row.user_agent,
            updated_at=row.updated_at,
        )
        for row in conn.execute(query)
    ]


def registration_rows(
    conn: Connection, *, now: datetime, account: str | None = None
) -> list[dict[str, Any]]:
    """Live registrations for an admin, by account id then contact; ``account`` filters."""
    first_did = (
        select(func.min(dids.c.e164))
        .where(dids.c.account_id == accounts.c.id)
        .correlate(accounts)
        .scalar_subquery()
    )
    query = (
        select(
            accounts.c.account_id,
            first_did.label("did"),
            registrations.c.contact,
            registrations.c.transport,
            registrations.c.source_host,
            registrations.c.source_port,
            registrations.c.expires_at,
            registrations.c.user_agent,
        )
        .join(accounts, registrations.c.account_id == accounts.c.id)
        .where(registrations.c.expires_at > now)
        .order_by(accounts.c.account_id, registrations.c.contact)
    )
    if account is not None:
        query = query.where(accounts.c.account_id == account)
    return [
        {
            "account": row.account_id,
            "did": row.did,
            "contact": row.contact,
            "transport": row.transport,
            "source": _source(row.source_host, row.source_port),
            "expires_at": row.expires_at.isoformat(),
            "expires_in": max(0, math.ceil((row.expires_at - now).total_seconds())),
            "user_agent": row.user_agent,
        }
        for row in conn.execute(query)
    ]


def _source(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
