# Call detail records: the row a final message leaves, and the fingerprint of a set of CDRs.
"""A CDR is written once, in the same grouped commit as its message's final state
(gateway/pipeline_store.py), idempotent on (message id, leg), and never updated afterwards
(migration 0005 adds a trigger refusing UPDATE). It has no message text.

Legs: ``in`` is the message as its originator handed it to us (a carrier, an app account, a
peer environment's connection); the ``route`` names where it went (``sip``, or the outbound
connection's name). Settlement bills carriers on their ``in`` legs. ``out`` is the message as a
carrier bound to us took it (a policy ``--carrier``: MO deliver_sm, every part answered
ESME_ROK): ``carrier_id`` is that carrier, ``parts`` the deliver_sm it took, ``route``
``carrier:NAME``; rated by the carrier's ``out`` tariffs (our cost) and shown apart.

:func:`fingerprint_terms` are SQL aggregates that, summed over a set of CDRs, identify it:
the count, the sum of ids and the sum of a 32-bit multiplicative hash of (id, parts, state).
Any CDR added, removed or changed moves them; they are order-free, so the database computes
them in the same pass that groups the CDRs for rating.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func

from gateway.store.schema import cdrs

LEG_IN = "in"
LEG_OUT = "out"
STATE_CODES = {"delivered": 1, "failed": 2, "expired": 3, "rejected": 4, "deleted": 5}
_HASH_MULTIPLIER = 2654435761  # Knuth's multiplicative constant; (2**31 - 1) * it < 2**63
_MAX_REASON = 255


def row(
    *,
    cdr_id: int,
    message_id: int,
    carrier_id: int | None,
    account_id: int | None,
    connection_id: int | None,
    source: str,
    destination: str,
    parts: int,
    data_coding: int,
    route: str | None,
    state: str,
    reason: str | None,
    accepted_at: datetime,
    final_at: datetime,
    part_ids: str | None = None,
    leg: str = LEG_IN,
) -> dict[str, Any]:
    """The ``in`` CDR of a message that reached ``state`` (``part_ids``: the ids a carrier
    got for the parts of a concatenated message, space-separated in part order)."""
    return {
        "id": cdr_id,
        "message_id": message_id,
        "leg": leg,
        "carrier_id": carrier_id,
        "account_id": account_id,
        "connection_id": connection_id,
        "source": source,
        "destination": destination,
        "parts": parts,
        "data_coding": data_coding,
        "route": route,
        "state": state,
        "reason": None if reason is None else reason[:_MAX_REASON],
        "accepted_at": accepted_at,
        "final_at": final_at,
        "part_ids": part_ids,
    }


def fingerprint_terms() -> list[ColumnElement[Any]]:
    """count, sum(id), sum(hash(id, parts, state)) over the selected CDRs."""
    state_code = case(
        *((cdrs.c.state == name, code) for name, code in STATE_CODES.items()), else_=9
    )
    hashed = ((cdrs.c.id % 2147483648) * _HASH_MULTIPLIER + cdrs.c.parts * 97 + state_code) % (
        4294967296
    )
    return [func.count(), func.coalesce(func.sum(cdrs.c.id), 0), func.coalesce(func.sum(hashed), 0)]


def checksum(parts: Any) -> str:
    """SHA-256 (hex) of a JSON-able description of a CDR set (fingerprints and groups)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
