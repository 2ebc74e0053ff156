# Message ids known before the insert: blocks reserved in table id_blocks (the hi/lo pattern).
"""Ids for messages and message parts.

A process reserves a block of ids in its own short transaction and hands them out from
memory, so an id is known before the row is written (the grouped insert needs no RETURNING)
and several processes on one database never collide. A block a process did not use up is
simply skipped; ids are unique and increasing per process, not gap-free.
"""

from __future__ import annotations

import threading

from sqlalchemy import Engine, select, update

from gateway.store.schema import id_blocks


class IdAllocator:
    """Hands out ids; thread-safe, though the batch writer is its only caller."""

    def __init__(self, engine: Engine, name: str = "message", block: int = 1000) -> None:
        self._engine = engine
        self._name = name
        self._block = block
        self._next = 0
        self._end = 0
        self._lock = threading.Lock()
        self._spare: list[tuple[int, int]] = []  # reserved ranges to use after the current one

    def take(self, count: int) -> list[int]:
        with self._lock:
            out: list[int] = []
            while len(out) < count:
                if self._next >= self._end and self._spare:
                    self._next, self._end = self._spare.pop(0)
                if self._next >= self._end:
                    self._reserve(max(self._block, count - len(out)))
                upto = min(self._end, self._next + count - len(out))
                out.extend(range(self._next, upto))
                self._next = upto
            return out

    def ensure(self, count: int) -> None:
        """Have at least ``count`` ids at hand, reserving a block now if not. The batch
        writer calls it before each transaction: ids taken *inside* a transaction (by a
        statement that stages receipts) then never need a reservation, which on SQLite would
        wait for the writer's own lock. The rest of the current block is kept."""
        with self._lock:
            if self._end - self._next + sum(e - n for n, e in self._spare) >= count:
                return
            current = (self._next, self._end)
            self._reserve(max(self._block, count))
            if current[1] > current[0]:
                self._spare.append((self._next, self._end))
                self._next, self._end = current

    def _reserve(self, size: int) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(id_blocks)
                .where(id_blocks.c.name == self._name)
                .values(next_id=id_blocks.c.next_id + size)
            )
            end = conn.execute(
                select(id_blocks.c.next_id).where(id_blocks.c.name == self._name)
            ).scalar_one()
        self._next, self._end = end - size, end
