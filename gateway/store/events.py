# The life of a message as message_events rows: one per step, written in the step's transaction.
"""``stage_event`` adds a row to the batch that writes the step itself, so the trace
(``gatewayctl messages show``) can never disagree with the message's state: a step is in
both or in neither. The acceptance is the messages row itself (who, when, the carrier's id);
events are what happened after it."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.store.schema import message_events
from gateway.store.writer import Batch

MAX_DETAIL = 255


def stage_event(
    batch: Batch,
    message_id: int,
    event: str,
    *,
    detail: str | None = None,
    route: str | None = None,
    error_code: int | None = None,
    attempt: int | None = None,
    at: datetime | None = None,
) -> None:
    [pk] = batch.new_ids(1)
    batch.add(
        message_events,
        {
            "id": pk,
            "message_id": message_id,
            "at": at or datetime.now(UTC),
            "event": event,
            "detail": None if detail is None else detail[:MAX_DETAIL],
            "route": route,
            "error_code": error_code,
            "attempt": attempt,
        },
    )
