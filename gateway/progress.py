# Progress of long gatewayctl operations: a rich bar on a terminal, nothing anywhere else.
"""``with task("Settling 2026-11", total=3) as t: t.note("TATA: grouping CDRs"); t.advance()``

The bar goes to standard error and disappears when the task ends, so standard output stays
what the command prints (tables, ``--json``, a file written to ``-``). Off a terminal
(scripts, cron, CI, tests) nothing is drawn and the calls cost nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Task:
    def __init__(self, bar: Progress | None = None, task: TaskID | None = None) -> None:
        self._bar, self._task = bar, task

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def advance(self, amount: float = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, amount)

    def note(self, text: str) -> None:
        """What is being done now (shown beside the bar)."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, status=text)


@contextlib.contextmanager
def task(
    description: str, total: float | None = None, *, console: Console | None = None
) -> Iterator[Task]:
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield Task()
        return
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=True,
    )
    with bar:
        yield Task(bar, bar.add_task(description, total=total, status=""))
