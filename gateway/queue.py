# Messages waiting for delivery, in memory: priority lanes, per-destination order, held lines.
"""The pipeline's queue (pure: no I/O, no clock of its own).

Every destination (an E.164 number) has one :class:`Line`. A line sends one message at a
time, so messages to one destination arrive in the order they were accepted *within a lane*;
a ``priority`` message (a verification code, or SMPP priority_flag > 0) is sent before any
``bulk`` one still waiting for the same or another destination: that is the point of the lanes.

A line is in one of four states, and only the pairs in ``TABLE`` move it:

::

    open --send--> busy --done--> open
      |              |--hold--> held --release--> releasing --released--> open
      +----hold------+            ^--hold (due time moved)

``held``: the destination cannot take messages now (its app is offline, or a temporary
failure waits for its retry time); its messages are kept in the store (retry-wait), not in
memory, and messages accepted for it meanwhile are stored the same way (:meth:`admit`
says ``park``). ``releasing``: the app registered or the retry time came; the store is being
read. Messages accepted meanwhile queue in memory behind it and :meth:`released` merges
the loaded ones in id order before them, so order survives the hand-over.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from gateway.errors import GatewayError

LANES = ("priority", "bulk")
Lane = Literal["priority", "bulk"]


class LineState(StrEnum):
    OPEN = "open"
    BUSY = "busy"
    HELD = "held"
    RELEASING = "releasing"


class LineEvent(StrEnum):
    SEND = "send"  # its next message goes out
    DONE = "done"  # that message's attempt ended (delivered, failed, handed to a peer)
    HOLD = "hold"  # it cannot take messages until a registration or a retry time
    RELEASE = "release"  # that moment came: its stored messages are being read
    RELEASED = "released"  # read: they are in the line again


L, V = LineState, LineEvent
TABLE: dict[tuple[LineState, LineEvent], LineState] = {
    (L.OPEN, V.SEND): L.BUSY,
    (L.BUSY, V.DONE): L.OPEN,
    (L.BUSY, V.HOLD): L.HELD,
    (L.OPEN, V.HOLD): L.HELD,  # at start: messages wait in the store for it
    (L.HELD, V.HOLD): L.HELD,  # a new due time
    (L.HELD, V.RELEASE): L.RELEASING,
    (L.RELEASING, V.RELEASED): L.OPEN,
}


class LineError(GatewayError):
    """An event the line's state does not allow (a bug in the caller)."""


@dataclass(slots=True, eq=False)
class Pending:
    """One message the pipeline is to deliver, as held in memory (no ORM, no text copy)."""

    id: int
    destination: str  # E.164 digits
    source: str
    source_ton: int
    lane: Lane
    priority: int
    data_coding: int
    text: str | None
    body: bytes | None
    registered_delivery: int
    validity_until: datetime
    accepted_at: datetime
    parts: int
    attempts: int = 0
    origin: str = "carrier"  # carrier | account | connection
    carrier_id: int | None = None
    account_id: int | None = None  # the sending app's account (origin account)
    connection_id: int | None = None  # the connection an MO came in on
    path: str | None = None  # envs it came through, comma-separated
    concatenated: bool = False  # the carrier sent it in parts (receipts go to each part's id)
    route: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # what plugins attach
    unreadable: str | None = None  # why its stored text cannot be decrypted (it is failed)


@dataclass(slots=True, eq=False)
class Line:
    destination: str
    state: LineState = L.OPEN
    held_until: datetime | None = None
    lanes: dict[str, deque[Pending]] = field(
        default_factory=lambda: {lane: deque() for lane in LANES}
    )
    listed: set[str] = field(default_factory=set)  # lanes whose ready list names this line

    def move(self, event: LineEvent) -> None:
        target = TABLE.get((self.state, event))
        if target is None:
            raise LineError(f"line {self.destination} in state {self.state} cannot {event}")
        self.state = target

    def __len__(self) -> int:
        return sum(len(q) for q in self.lanes.values())

    def head(self, lane: str) -> Pending | None:
        queue = self.lanes[lane]
        return queue[0] if queue else None


class DeliveryQueue:
    """Lines by destination, the lanes' ready lists, and the held lines' due times."""

    def __init__(self) -> None:
        self._lines: dict[str, Line] = {}
        self._ready: dict[str, deque[Line]] = {lane: deque() for lane in LANES}
        self._due: list[tuple[datetime, str]] = []
        self._by_id: dict[int, Pending] = {}

    # -- what is inside -----------------------------------------------------------------
    def __len__(self) -> int:
        """Messages queued in memory (not those in flight, nor those parked in the store)."""
        return len(self._by_id)

    def __contains__(self, message_id: int) -> bool:
        return message_id in self._by_id

    def depth(self, lane: str) -> int:
        return sum(len(line.lanes[lane]) for line in self._lines.values())

    def line(self, destination: str) -> Line | None:
        return self._lines.get(destination)

    def state(self, destination: str) -> LineState:
        line = self._lines.get(destination)
        return L.OPEN if line is None else line.state

    def held(self) -> Iterator[Line]:
        return (line for line in self._lines.values() if line.state is L.HELD)

    # -- messages in ------------------------------------------------------------------
    def admit(self, destination: str) -> Literal["queue", "park"]:
        """Where a newly accepted message for ``destination`` goes: memory, or the store."""
        return "park" if self.state(destination) is L.HELD else "queue"

    def push(self, message: Pending) -> None:
        """Queue ``message`` on its line (kept in id order within its lane)."""
        line = self._line(message.destination)
        queue = line.lanes[message.lane]
        if queue and queue[-1].id > message.id:
            queue.append(message)
            ordered = sorted(queue, key=lambda m: m.id)
            queue.clear()
            queue.extend(ordered)
        else:
            queue.append(message)
        self._by_id[message.id] = message
        self._list(line, message.lane)

    def get(self, message_id: int) -> Pending | None:
        """A message queued in memory, left in its place; None when it is not."""
        return self._by_id.get(message_id)

    def remove(self, message_id: int) -> Pending | None:
        """Take a queued message out (cancel_sm); None when it is not queued in memory."""
        message = self._by_id.pop(message_id, None)
        if message is None:
            return None
        line = self._lines[message.destination]
        line.lanes[message.lane].remove(message)
        self._forget_if_idle(line)
        return message

    # -- messages out -------------------------------------------------------------------
    def pop(self) -> Pending | None:
        """The next message to send: the priority lane first, one per destination at a time.
        Its line becomes busy until :meth:`done` or :meth:`hold`."""
        for lane in LANES:
            ready = self._ready[lane]
            while ready:
                line = ready.popleft()
                line.listed.discard(lane)
                if line.state is not L.OPEN or not line.lanes[lane]:
                    continue  # stale entry: busy, held or emptied since it was listed
                message = line.lanes[lane].popleft()
                del self._by_id[message.id]
                line.move(V.SEND)
                return message
        return None

    def done(self, destination: str) -> None:
        """The attempt of the line's message ended; the line may send its next one."""
        line = self._lines[destination]
        line.move(V.DONE)
        self._relist(line)

    def hold(self, destination: str, until: datetime) -> list[Pending]:
        """The line cannot take messages before ``until`` (or a release); returns the messages
        that were queued in memory for it, which the caller parks in the store."""
        line = self._line(destination)
        earlier = line.held_until if line.state is L.HELD else None
        line.move(V.HOLD)
        line.held_until = until if earlier is None else min(earlier, until)
        if line.held_until != earlier:
            heapq.heappush(self._due, (line.held_until, destination))
        parked: list[Pending] = []
        for queue in line.lanes.values():
            parked.extend(queue)
            queue.clear()
        for message in parked:
            del self._by_id[message.id]
        parked.sort(key=lambda m: m.id)
        return parked

    def due(self, now: datetime) -> list[str]:
        """Held lines whose time has come (the caller releases them)."""
        out: list[str] = []
        while self._due and self._due[0][0] <= now:
            until, destination = heapq.heappop(self._due)
            line = self._lines.get(destination)
            if line is not None and line.state is L.HELD and line.held_until == until:
                out.append(destination)
        return out

    def next_due(self) -> datetime | None:
        while self._due:
            until, destination = self._due[0]
            line = self._lines.get(destination)
            if line is not None and line.state is L.HELD and line.held_until == until:
                return until
            heapq.heappop(self._due)
        return None

    def release(self, destination: str) -> bool:
        """Begin reading a held line's messages back; False when it is not held."""
        line = self._lines.get(destination)
        if line is None or line.state is not L.HELD:
            return False
        line.move(V.RELEASE)
        line.held_until = None
        return True

    def released(self, destination: str, loaded: list[Pending]) -> None:
        """The held messages were read: they go before anything queued meanwhile."""
        line = self._lines[destination]
        line.move(V.RELEASED)
        for message in loaded:
            self.push(message)
        self._relist(line)
        self._forget_if_idle(line)

    # -- internals ----------------------------------------------------------------------
    def _line(self, destination: str) -> Line:
        line = self._lines.get(destination)
        if line is None:
            line = self._lines[destination] = Line(destination)
        return line

    def _list(self, line: Line, lane: str) -> None:
        if line.state is L.OPEN and lane not in line.listed and line.lanes[lane]:
            line.listed.add(lane)
            self._ready[lane].append(line)

    def _relist(self, line: Line) -> None:
        for lane in LANES:
            self._list(line, lane)
        self._forget_if_idle(line)

    def _forget_if_idle(self, line: Line) -> None:
        if line.state is L.OPEN and not len(line) and not line.listed:
            self._lines.pop(line.destination, None)
