# The outbox's tracked parts (messages delivered to a carrier): answers reported, not retried;
# the carrier's throughput caps them; stale rows dropped; a lost bind hands them back.
from __future__ import annotations

import asyncio
from typing import Any

from gateway.smpp.codec import Pdu
from gateway.smpp.constants import CommandId
from gateway.smpp.outbox import Item, Outbox, _Attempted, _Remove

CARRIER = 7


class Writer:
    def __init__(self) -> None:
        self.ops: list[Any] = []

    def submit(self, op: Any) -> None:
        self.ops.append(op)


class Receiver:
    def __init__(self) -> None:
        self.sent: list[Item] = []

    def can_deliver(self) -> bool:
        return True

    def deliver(self, item: Item) -> None:
        self.sent.append(item)


def parts(n: int, message_id: int = 1) -> list[Item]:
    pdu = Pdu(CommandId.DELIVER_SM, 0, 0, {"short_message": b"x"})
    return [Item(100 + i, CARRIER, pdu, message_id=message_id, part=i) for i in range(1, n + 1)]


def bound_box(rate: int | None) -> tuple[Outbox, Writer, Receiver]:
    writer, receiver = Writer(), Receiver()
    box = Outbox(writer)  # type: ignore[arg-type]
    box.rate_of = lambda carrier_id: rate
    box.bound(receiver, CARRIER)  # type: ignore[arg-type]
    box.loaded(CARRIER, [], None)  # the table held nothing for it
    return box, writer, receiver


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_throughput_caps_the_parts_sent_to_the_carrier() -> None:
    async def go() -> tuple[int, int]:
        box, _, receiver = bound_box(rate=2)
        box.track(parts(5), lambda *a: None)
        return len(receiver.sent), box.waiting(CARRIER)

    assert run(go()) == (2, 3)  # a burst of 2 at 2/s; the rest wait for tokens


def test_without_a_throughput_every_part_goes_at_once() -> None:
    async def go() -> int:
        box, _, receiver = bound_box(rate=None)
        box.track(parts(5), lambda *a: None)
        return len(receiver.sent)

    assert run(go()) == 5


def test_answers_are_reported_and_a_refusal_is_not_retried() -> None:
    async def go() -> tuple[list[Any], list[Any]]:
        box, writer, receiver = bound_box(rate=None)
        reports: list[Any] = []
        box.track(parts(2), lambda item, status, why: reports.append((item.part, status)))
        box.answered(receiver.sent[0], 0)
        box.answered(receiver.sent[1], 0x45)
        return reports, writer.ops

    reports, ops = run(go())
    assert reports == [(1, 0), (2, 0x45)]
    assert [type(op) for op in ops if isinstance(op, _Remove | _Attempted)] == [_Remove, _Remove]


def test_stale_part_rows_are_dropped_unsent_and_a_lost_bind_hands_parts_back() -> None:
    async def go() -> tuple[int, list[Any], list[Any]]:
        box, writer, receiver = bound_box(rate=1)
        box.loaded(CARRIER, [(99, b"sealed", 0, 5, 1)], None)  # a previous run's part
        dropped = [op.pk for op in writer.ops if isinstance(op, _Remove)]
        reports: list[Any] = []
        box.track(parts(3), lambda item, status, why: reports.append((item.part, status, why)))
        box.gone(receiver, CARRIER, [receiver.sent[0]])  # the only receiver goes
        return len(receiver.sent), dropped, reports

    sent, dropped, reports = run(go())
    assert dropped == [99] and sent == 1
    assert [(p, s) for p, s, _ in reports] == [(1, None), (2, None), (3, None)]
    assert "closed before it answered" in reports[0][2]
    assert "last receiver unbound" in reports[1][2]
