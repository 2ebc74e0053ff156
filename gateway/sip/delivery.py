# MESSAGE to an app (RFC 3428 UAC): the request, forking to contacts, the outcome.
"""Pure pieces of delivering one text to an app: the MESSAGE request for one contact and the
aggregation of parallel forks into one outcome for the caller (the pipeline).

Outcome rules (the issue's contract): any 2xx from any contact means ``delivered``; 408,
480, 503, a timeout (timer F) or a transport error is ``temporary`` (retry later); any other
final 3xx-6xx (404, 415, 488, ...) is ``permanent``. With several contacts the delivery is
settled at the first 2xx; otherwise once every fork has ended, temporary when any fork's
failure was temporary (another try may reach that device), permanent when all were.

A delivery is *superseded* (:meth:`Delivery.superseded`) when its account registers again
from a flow none of its forks uses (an app that crashed and came back on a new port or
connection): it ends at once as temporary with ``retry_now``, so the pipeline sends again
to the new binding at once instead of waiting for timer F on the stale contact.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from gateway.sip.message import Headers, Request, parse_uri

TEMPORARY_STATUSES = frozenset({408, 480, 503})
USER_SAFE = "-_.!~*'()&=+$,;?/"  # RFC 3261 §25.1 user part: unreserved / user-unreserved
MESSAGE_CONTENT_TYPE = "text/plain;charset=UTF-8"

OutcomeKind = Literal["delivered", "temporary", "permanent"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a delivery ended; ``status``/``reason`` are the SIP answer that decided it
    (408 for a timeout, 503 for a transport error, 480 when no contact is registered)."""

    kind: OutcomeKind
    status: int
    reason: str
    retry_now: bool = False
    """Try again at once, not after ``delivery.retry``: the account registered anew."""

    @property
    def delivered(self) -> bool:
        return self.kind == "delivered"


def classify(status: int) -> OutcomeKind:
    if 200 <= status < 300:
        return "delivered"
    return "temporary" if status in TEMPORARY_STATUSES else "permanent"


OFFLINE = Outcome("temporary", 480, "Temporarily Unavailable (no registered contact)")


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def message_request(
    contact: str,
    *,
    transport: str,
    via: tuple[str, int],
    domain: str,
    from_user: str,
    to_user: str,
    text: str,
) -> tuple[Request, str]:
    """A MESSAGE for one registered contact, and its Via branch: Request-URI the contact,
    To the AOR, From the original sender, the text as UTF-8 plain text."""
    host, port = via
    sent_by = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    branch = new_branch()
    headers = Headers(
        [
            ("Via", f"SIP/2.0/{transport.upper()} {sent_by};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{quote(from_user, USER_SAFE)}@{domain}>;tag={secrets.token_hex(6)}"),
            ("To", f"<sip:{quote(to_user, USER_SAFE)}@{domain}>"),
            ("Call-ID", f"{secrets.token_hex(12)}@{domain}"),
            ("CSeq", "1 MESSAGE"),
            ("Content-Type", MESSAGE_CONTENT_TYPE),
        ]
    )
    return Request("MESSAGE", parse_uri(contact), headers, text.encode("utf-8")), branch


class Delivery:
    """One text forked to ``forks`` contacts; ``result`` resolves with the Outcome."""

    def __init__(self, forks: int) -> None:
        self.result: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending = forks
        self._failures: list[Outcome] = []

    def superseded(self, reason: str) -> bool:
        """End the delivery now as temporary, to be retried at once (the account registered
        again elsewhere); False when it had already ended."""
        if self.result.done():
            return False
        self.result.set_result(Outcome("temporary", 503, reason, retry_now=True))
        return True

    def ended(self, status: int, reason: str) -> None:
        """One fork's final answer (or 408/503 for timeout/transport error)."""
        if self.result.done():
            return
        outcome = Outcome(classify(status), status, reason)
        self._pending -= 1
        if outcome.delivered:
            self.result.set_result(outcome)
            return
        self._failures.append(outcome)
        if self._pending <= 0:
            temporary = [o for o in self._failures if o.kind == "temporary"]
            self.result.set_result(temporary[0] if temporary else self._failures[0])
