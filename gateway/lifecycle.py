# A message's life cycle: one transition table from accepted to a final state (issue 5).
"""Every message the gateway accepts moves through the states below, and only through the
pairs in ``TABLE``; the pipeline persists each step (grouped commits). Pure: the caller
passes ``now`` and the retry schedule, and gets the next state, when to try again, and the
row changes to write.

::

    accepted --route--> routed --send--> sending --ok--> delivered
      |--reject--> rejected  ^             |--permanent--> failed
      |--expire--> expired   |             |--temporary--> retry-wait --expire--> expired
      |--cancel--> deleted   +----due-------------------------/
                                           |--handed--> forwarded --ok--> delivered
                                                          |--permanent--> failed
                                                          |--expire--> expired
    routed and retry-wait may also expire or be cancelled; routed may go straight to
    retry-wait (temporary: e.g. the app is offline); a lost send is recovered to routed.

``forwarded``: a peer environment or vendor accepted the message (submit_sm_resp ESME_ROK);
its delivery receipt decides the outcome. A message that never gets one expires at the end
of its validity.

A temporary failure after the validity has run out, or with no retry left in the validity,
ends in ``expired`` (the receipt says EXPIRED), never in another retry. ``sending`` cannot
expire or be cancelled: its outcome decides. After a crash, a message left in ``sending``
is ``recover``ed to ``routed`` and sent again (at-least-once delivery).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from gateway.errors import GatewayError


class MessageState(StrEnum):
    ACCEPTED = "accepted"
    ROUTED = "routed"
    SENDING = "sending"
    RETRY_WAIT = "retry-wait"
    DELIVERED = "delivered"
    FORWARDED = "forwarded"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"
    DELETED = "deleted"


class MessageEvent(StrEnum):
    ROUTE = "route"  # a destination was found (local app or connection)
    REJECT = "reject"  # no destination: nothing will ever deliver it
    SEND = "send"  # handed to SIP / SMPP
    OK = "ok"  # the app answered 2xx / the peer accepted it (and its receipt says delivered)
    TEMPORARY = "temporary"  # 408/480/503/timeout/transport error, offline, peer throttling
    PERMANENT = "permanent"  # 404/415/488/other final failure, peer refused for good
    HANDED = "handed"  # a peer accepted it over SMPP: its receipt will tell the outcome
    DUE = "due"  # retry time reached (or the offline account registered)
    EXPIRE = "expire"  # validity ran out
    CANCEL = "cancel"  # the originator cancelled it (cancel_sm)
    RECOVER = "recover"  # after a restart: a send whose outcome was never recorded


S, E = MessageState, MessageEvent
FINAL = frozenset({S.DELIVERED, S.FAILED, S.EXPIRED, S.REJECTED, S.DELETED})

TABLE: dict[tuple[MessageState, MessageEvent], MessageState] = {
    (S.ACCEPTED, E.ROUTE): S.ROUTED,
    (S.ACCEPTED, E.REJECT): S.REJECTED,
    (S.ACCEPTED, E.EXPIRE): S.EXPIRED,
    (S.ACCEPTED, E.CANCEL): S.DELETED,
    (S.ROUTED, E.SEND): S.SENDING,
    (S.ROUTED, E.TEMPORARY): S.RETRY_WAIT,  # e.g. the app is offline: wait for it
    (S.ROUTED, E.EXPIRE): S.EXPIRED,
    (S.ROUTED, E.CANCEL): S.DELETED,
    (S.SENDING, E.OK): S.DELIVERED,
    (S.SENDING, E.TEMPORARY): S.RETRY_WAIT,
    (S.SENDING, E.PERMANENT): S.FAILED,
    (S.SENDING, E.RECOVER): S.ROUTED,
    (S.SENDING, E.HANDED): S.FORWARDED,
    (S.FORWARDED, E.OK): S.DELIVERED,
    (S.FORWARDED, E.PERMANENT): S.FAILED,
    (S.FORWARDED, E.EXPIRE): S.EXPIRED,
    (S.RETRY_WAIT, E.DUE): S.ROUTED,
    (S.RETRY_WAIT, E.EXPIRE): S.EXPIRED,
    (S.RETRY_WAIT, E.CANCEL): S.DELETED,
}
# Left out on purpose: nothing leaves a final state; a send cannot be cancelled or expired
# while its outcome is awaited (the outcome decides), routing happens once per attempt.


class BadTransition(GatewayError):
    """An event that the life cycle does not allow in the message's state."""

    def __init__(self, state: MessageState, event: MessageEvent) -> None:
        self.state = state
        self.event = event
        super().__init__(f"message in state {state} cannot take event {event}")


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one event: the new state and what to write with it."""

    state: MessageState
    next_attempt_at: datetime | None  # when a retry-wait message is due again
    final: bool


def retry_delay(attempts: int, schedule: Sequence[timedelta]) -> timedelta:
    """Wait after the ``attempts``-th failed attempt (1-based): the schedule in order, its last
    entry repeating."""
    if not schedule:
        raise ValueError("the retry schedule is empty")
    return schedule[min(max(attempts, 1), len(schedule)) - 1]


def advance(
    state: MessageState,
    event: MessageEvent,
    *,
    now: datetime,
    validity_until: datetime,
    attempts: int = 0,
    schedule: Sequence[timedelta] = (),
) -> Step:
    """Apply ``event``; a temporary failure is scheduled by ``schedule`` after ``attempts``
    failed attempts, or expires when the next try would fall outside the validity."""
    target = TABLE.get((state, event))
    if target is None:
        raise BadTransition(state, event)
    if target is S.RETRY_WAIT:
        if now >= validity_until:
            return Step(S.EXPIRED, None, True)
        due = now + retry_delay(attempts, schedule) if schedule else now
        if due >= validity_until:
            due = validity_until  # one last look at the deadline: it then expires
        return Step(S.RETRY_WAIT, due, False)
    if target is S.ROUTED and now >= validity_until:
        return Step(S.EXPIRED, None, True)
    return Step(target, None, target in FINAL)
