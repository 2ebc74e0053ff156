# Password checks (scrypt) on a few threads of their own, behind a bounded and fair line.
"""Where bind passwords are checked, so binds cannot starve the rest of the node.

scrypt takes ~50-100 ms of CPU and 16 MiB per check. Run in the event loop's default
executor, a flood of binds kept the store ping of /readyz and the provisioning reloads
waiting behind it and grew the process by one malloc arena per thread. :class:`CheckPool`
gives the checks ``threads`` threads of their own and a line of at most ``limit`` waiting
checks:

- the line is fair: each key (the bind's system_id) has its own line and the threads take
  one check of each key in turn, so a carrier binding during a flood of another system_id's
  binds waits for a few checks, not for the flood;
- when the line is full, the newest check of the longest line is dropped to make room for a
  key with a shorter line (the flood gives way); if no line is longer, the new check is
  refused (:meth:`CheckPool.submit` returns None) and the bind is refused at once;
- when the threads run out of work, the memory the checks used is handed back to the system
  (glibc ``malloc_trim``; elsewhere nothing happens).

Futures are :class:`concurrent.futures.Future` (``asyncio.wrap_future`` to await them); a
dropped check's future raises :class:`Dropped`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("gateway.smpp")


class Dropped(Exception):
    """A check was dropped from a full line to make room for another key's."""


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_MALLOC_TRIM = _load_malloc_trim()


def return_memory() -> bool:
    """Give free heap memory back to the system (all malloc arenas); False if unsupported."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


Job = tuple[Callable[[], Any], "Future[Any]"]


class CheckPool:
    """``threads`` worker threads taking jobs round-robin by key; at most ``limit`` waiting."""

    def __init__(self, threads: int, limit: int, name: str = "bind-check") -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self._lines: OrderedDict[str, deque[Job]] = OrderedDict()
        self._waiting = 0
        self._running = 0
        self._closed = False
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self.checks = 0  # jobs run (read without the lock: a metric)
        self.trims = 0
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def waiting(self) -> int:
        """Jobs in the line, not yet started."""
        return self._waiting

    def submit(self, key: str, job: Callable[[], Any]) -> Future[Any] | None:
        """Queue ``job`` on ``key``'s line; None when the line is full and ``key`` cannot take
        a place from a longer line (or the pool is closed)."""
        future: Future[Any] = Future()
        dropped: Future[Any] | None = None
        with self._lock:
            if self._closed:
                return None
            line = self._lines.get(key)
            if self._waiting >= self.limit:
                longest_key = max(self._lines, key=lambda k: len(self._lines[k]))
                longest = self._lines[longest_key]
                if len(longest) <= (len(line) if line else 0) + 1:
                    return None
                dropped = longest.pop()[1]
                self._waiting -= 1
            if line is None:
                line = self._lines[key] = deque()
            line.append((job, future))
            self._waiting += 1
            self._work.notify()
        if dropped is not None:
            dropped.set_exception(Dropped("password checks busy"))
        return future

    def close(self) -> None:
        """Refuse new jobs, drop the waiting ones, let the running ones end (threads exit)."""
        with self._lock:
            self._closed = True
            pending = [future for line in self._lines.values() for _, future in line]
            self._lines.clear()
            self._waiting = 0
            self._work.notify_all()
        for future in pending:
            future.set_exception(Dropped("shutting down"))

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._lines and not self._closed:
                    self._work.wait()
                if not self._lines:
                    return
                key, line = next(iter(self._lines.items()))
                job, future = line.popleft()
                self._waiting -= 1
                if line:
                    self._lines.move_to_end(key)  # the next key's turn
                else:
                    del self._lines[key]
                self._running += 1
            ran = future.set_running_or_notify_cancel()  # False: the bind went away
            if ran:
                try:
                    future.set_result(job())
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting bind
                    future.set_exception(exc)
            with self._lock:
                self._running -= 1
                self.checks += ran
                idle = self._running == 0 and not self._lines
            if idle and ran and return_memory():
                self.trims += 1
