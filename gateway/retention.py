# Retention: erase ended messages' text, drop old message records and CDRs past their period.
"""What ``retention`` in the config promises (gateway/config.py ``RetentionConfig``):

* the text of a message (``body_text``, ``body_bytes`` and its parts' payloads) is erased
  ``message_text`` after the message ended - CDRs never hold text, so billing is untouched;
* the record of an ended message (and its parts, forward ids and events) is deleted ``messages``
  after it ended;
* CDRs are deleted ``cdrs`` after acceptance (at least five years).

Messages that have not ended are never touched. Work goes in chunks of ``CHUNK`` rows per
transaction, so the gateway's writer is never locked out for long; a running gateway calls
:func:`purge` every ``retention.interval``, ``gatewayctl purge`` runs it on demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, or_, select, update

from gateway.config import RetentionConfig
from gateway.store.schema import carriers, cdrs, forwards, fragments, message_events, messages
from gateway.words import count

CHUNK = 5000


@dataclass
class Purged:
    texts: int = 0
    messages: int = 0
    cdrs: int = 0

    def __str__(self) -> str:
        return (
            f"{count(self.texts, 'message text')} erased, "
            f"{count(self.messages, 'message record')} and {count(self.cdrs, 'CDR')} deleted"
        )


def _chunks(engine: Engine, query: Any, act: Any, dry_run: bool) -> int:
    """Run ``act(conn, ids)`` on each chunk of ids ``query`` selects, one transaction each;
    with ``dry_run``, only count them."""
    if dry_run:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(query.subquery())).scalar())
    done = 0
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(query.limit(CHUNK)).scalars())
            if ids:
                act(conn, ids)
        done += len(ids)
        if len(ids) < CHUNK:
            return done


def purge(
    engine: Engine, policy: RetentionConfig, now: datetime, *, dry_run: bool = False
) -> Purged:
    """Apply the retention periods as of ``now``."""
    out = Purged()
    text_before = now - policy.message_text
    with_text = (
        select(messages.c.id)
        .where(
            messages.c.final_at < text_before,
            or_(messages.c.body_text.is_not(None), messages.c.body_bytes.is_not(None)),
        )
        .order_by(messages.c.final_at)
    )

    def erase(conn: Any, ids: list[int]) -> None:
        conn.execute(
            update(messages).where(messages.c.id.in_(ids)).values(body_text=None, body_bytes=None)
        )
        conn.execute(delete(fragments).where(fragments.c.message_id.in_(ids)))

    out.texts = _chunks(engine, with_text, erase, dry_run)

    record_before = now - policy.messages
    old = (
        select(messages.c.id)
        .where(messages.c.final_at < record_before)
        .order_by(messages.c.final_at)
    )

    def drop(conn: Any, ids: list[int]) -> None:
        conn.execute(delete(fragments).where(fragments.c.message_id.in_(ids)))
        conn.execute(delete(forwards).where(forwards.c.message_id.in_(ids)))
        conn.execute(delete(message_events).where(message_events.c.message_id.in_(ids)))
        conn.execute(delete(messages).where(messages.c.id.in_(ids)))

    out.messages = _chunks(engine, old, drop, dry_run)

    cdr_before = now - policy.cdrs
    with engine.connect() as conn:
        owners: list[int | None] = [*conn.execute(select(carriers.c.id)).scalars(), None]
    for owner in owners:  # the (carrier_id, accepted_at) index serves each carrier's range
        owned = cdrs.c.carrier_id.is_(None) if owner is None else cdrs.c.carrier_id == owner
        expired = select(cdrs.c.id).where(owned, cdrs.c.accepted_at < cdr_before)

        def forget(conn: Any, ids: list[int]) -> None:
            conn.execute(delete(cdrs).where(cdrs.c.id.in_(ids)))

        out.cdrs += _chunks(engine, expired, forget, dry_run)
    return out
