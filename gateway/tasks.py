# Supervision of background work: no loop or task ends on an unexpected error without a word.
"""Background loops and per-message tasks under supervision (issue 15, "nothing dies in
silence"; docs/architecture.md rule 4: no error swallowed without a count and a log line).

- :func:`forever` runs a loop (provisioning reload, retention, the pipeline's sweep) and,
  when it raises anything but its cancellation, reports the error and starts it again after
  a back-off (doubling from ``backoff`` to ``max_backoff``; back to ``backoff`` once a run
  lasted longer than ``max_backoff``).
- :func:`guarded` awaits one piece of work (a message's delivery, a count) and, when it
  raises, reports the error and calls ``recover`` with it, so that the message the work was
  about is not left in flight.

Every error is counted in ``gateway_background_errors_total{task}`` and logged at ERROR:
with its traceback the first time a distinct error is seen (same task, exception type and
place), as one line (with the message id when there is one) after that, so that a bug hit
by every message does not flood the log with tracebacks.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.logs import about
from gateway.metrics import BACKGROUND_ERRORS

log = logging.getLogger("gateway.tasks")

T = TypeVar("T")
MAX_SEEN = 1000  # distinct errors remembered (then forgotten all at once: tracebacks again)


class ErrorReport:
    """Counts and logs unexpected errors of background work, a traceback once per kind."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str, str]] = set()

    def __call__(self, task: str, exc: BaseException, message_id: int | None = None) -> None:
        BACKGROUND_ERRORS.labels(task).inc()
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "-"
        key = (task, type(exc).__name__, where)
        first = key not in self._seen
        if first:
            if len(self._seen) >= MAX_SEEN:
                self._seen.clear()
            self._seen.add(key)
        what = f"{task} failed" if message_id is None else f"{task} failed for message {message_id}"
        extra: dict[str, Any] = {} if message_id is None else about(message_id)
        reason = f"{type(exc).__name__}: {str(exc)[:300]}"
        if first:
            log.error("%s: %s", what, reason, exc_info=exc, extra=extra)
        else:
            log.error("%s: %s (seen before, at %s)", what, reason, where, extra=extra)


report = ErrorReport()


async def forever(
    task: str,
    loop: Callable[[], Awaitable[None]],
    *,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
) -> None:
    """Run ``loop()``; when it raises (not cancelled), report and run it again after a
    back-off. Returns when ``loop()`` returns."""
    clock = asyncio.get_running_loop()
    delay = backoff
    while True:
        started = clock.time()
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported (logged and counted), then restarted
            report(task, exc)
        if clock.time() - started > max_backoff:
            delay = backoff  # it had been running well: this is a new failure, not a series
        log.warning("%s: started again in %gs", task, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_backoff) if delay else backoff


async def guarded(
    task: str,
    work: Awaitable[T],
    recover: Callable[[BaseException], None] | None = None,
    message_id: int | None = None,
) -> T | None:
    """Await ``work``; when it raises (not cancelled), report it and call ``recover`` with
    the error (its own failure is reported too). None when it failed."""
    try:
        return await work
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported (logged and counted), then recovered
        report(task, exc, message_id)
        if recover is not None:
            try:
                recover(exc)
            except Exception as again:  # noqa: BLE001 - reported; nothing more can be done
                report(f"{task} (recovery)", again, message_id)
        return None
