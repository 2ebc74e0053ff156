# The writer's lean executemany stores exactly what SQLAlchemy's own insert would, both backends.
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import insert, select

from gateway.store.engine import make_engine, migrate
from gateway.store.fastinsert import FastInsert
from gateway.store.schema import carriers, fragments, messages


def message(i: int, when: datetime) -> dict:
    return {
        "id": i,
        "origin": "carrier",
        "carrier_id": 1,
        "account_id": None,
        "connection_id": None,
        "source": "AsiaCell",
        "source_ton": 5,
        "destination": "964111222333",
        "data_coding": 8,
        "esm_class": 0,
        "body_text": "رمز 4711 😀" if i % 2 else None,
        "body_bytes": None if i % 2 else b"\x00\xff\x10",
        "parts": 1,
        "registered_delivery": 1,
        "priority": 0,
        "lane": "bulk",
        "state": "accepted",
        "reason": None,
        "error_code": None,
        "attempts": 0,
        "route": None,
        "peer_message_id": None,
        "path": "env1,env4" if i % 2 else None,
        "upstream_id": "4711" if i % 2 else None,
        "accepted_at": when,
        "next_attempt_at": when + timedelta(seconds=i),
        "validity_until": when + timedelta(days=2),
        "final_at": None,
    }


def test_fast_rows_read_back_like_sqlalchemy_rows(store_url: str) -> None:
    engine = make_engine(store_url)
    migrate(engine)
    plus3 = timezone(timedelta(hours=3))
    when = datetime(2026, 11, 22, 7, 30, 15, 123456, tzinfo=plus3)
    with engine.begin() as conn:
        conn.execute(
            insert(carriers).values(
                id=1,
                name="T",
                system_id="T",
                password_hash="x",
                allowed_networks=["127.0.0.1/32"],
                max_binds=1,
                receipt_id_format="dec",
                data_coding_default="gsm",
                enabled=True,
                created_at=when,
                updated_at=when,
            )
        )
        conn.execute(insert(messages), [message(1, when), message(2, when)])
        FastInsert(messages, conn.dialect).execute(conn, [message(3, when), message(4, when)])
        part = {
            "id": 9,
            "carrier_id": 1,
            "group_key": "1|a|b|7|2",
            "total": 2,
            "seq": 1,
            "payload": b"\x06'",
            "registered_delivery": 1,
            "meta": {"source": "AsiaCell", "n": [1, 2]},
            "accepted_at": when,
            "expires_at": when + timedelta(minutes=5),
            "message_id": None,
        }
        FastInsert(fragments, conn.dialect).execute(conn, [part])
    with engine.connect() as conn:
        rows = {r["id"]: dict(r) for r in conn.execute(select(messages)).mappings()}
        stored_part = dict(conn.execute(select(fragments)).mappings().one())
        # times compare correctly in SQL whichever way they were written
        later = (
            conn.execute(
                select(messages.c.id).where(
                    messages.c.next_attempt_at >= when + timedelta(seconds=3)
                )
            )
            .scalars()
            .all()
        )
    engine.dispose()
    for slow, fast in ((1, 3), (2, 4)):
        a, b = rows[slow], rows[fast]
        assert {k: v for k, v in a.items() if k not in ("id", "next_attempt_at")} == {
            k: v for k, v in b.items() if k not in ("id", "next_attempt_at")
        }
    assert rows[3]["accepted_at"] == when and rows[3]["accepted_at"].tzinfo == UTC
    assert rows[4]["body_bytes"] == b"\x00\xff\x10" and rows[3]["body_text"] == "رمز 4711 😀"
    assert (
        stored_part["meta"] == {"source": "AsiaCell", "n": [1, 2]}
        and stored_part["payload"] == b"\x06'"
    )
    assert sorted(later) == [3, 4]


def test_grouped_updates_and_ignored_duplicates_in_one_batch(store_url: str) -> None:
    from gateway.store.ids import IdAllocator
    from gateway.store.schema import cdrs
    from gateway.store.writer import Batch, UpdateSpec

    engine = make_engine(store_url)
    migrate(engine)
    when = datetime(2026, 12, 1, 7, 30, tzinfo=UTC)
    with engine.begin() as conn:
        rows = [{**message(i, when), "carrier_id": None} for i in (1, 2, 3)]
        FastInsert(messages, conn.dialect).execute(conn, rows)
        conn.execute(messages.update().where(messages.c.id == 3).values(state="delivered"))
    spec = UpdateSpec(messages, ("state", "final_at"), guard="state <> 'delivered'")
    cdr = {
        "id": 50,
        "message_id": 1,
        "leg": "in",
        "carrier_id": None,
        "account_id": None,
        "connection_id": None,
        "source": "a",
        "destination": "1",
        "parts": 1,
        "data_coding": 0,
        "route": None,
        "state": "failed",
        "reason": None,
        "accepted_at": when,
        "final_at": when,
        "part_ids": None,
    }
    batch = Batch(IdAllocator(engine))
    for i in (1, 2, 3):
        batch.change(spec, {"id": i, "state": "failed", "final_at": when + timedelta(hours=1)})
    batch.add(cdrs, cdr, ignore=True)
    # a statement may add more rows: they are written in a second round of the transaction
    batch.then(lambda conn: batch.add(cdrs, {**cdr, "id": 51}, ignore=True))
    with engine.begin() as conn:
        batch.write(conn)
    with engine.connect() as conn:
        states = dict(conn.execute(select(messages.c.id, messages.c.state)).all())
        final = conn.execute(select(messages.c.final_at).where(messages.c.id == 2)).scalar_one()
        stored = conn.execute(select(cdrs.c.id)).scalars().all()
    engine.dispose()
    assert states == {1: "failed", 2: "failed", 3: "delivered"}  # the guard kept 3
    assert final == when + timedelta(hours=1)
    assert stored == [50]  # the duplicate (message_id, leg) was ignored


def test_ids_taken_inside_the_transaction_need_no_second_connection(store_url: str) -> None:
    """A statement that stages rows inside the writer's transaction (receipts of a settled
    message) takes ids then; with the headroom reserved before the transaction it never has
    to reserve a block on another connection (on SQLite that waits for the writer's lock)."""
    import asyncio

    from gateway.store.schema import outbox
    from gateway.store.writer import BatchWriter

    engine = make_engine(store_url)
    migrate(engine)
    when = datetime(2026, 12, 1, 7, 30, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(carriers).values(
                id=1, name="T", system_id="T", password_hash="x", allowed_networks=[],
                max_binds=1, receipt_id_format="dec", data_coding_default="gsm", enabled=True,
                created_at=when, updated_at=when,
            )
        )  # fmt: skip

    class Op:
        error: BaseException | None = None

        def stage(self, batch):
            [first] = batch.new_ids(1)  # a row written first: the transaction holds the lock
            batch.add(outbox, {"id": first, "carrier_id": 1, "message_id": None, "pdu": b"x",
                               "created_at": when, "attempts": 0, "part": None})  # fmt: skip

            def inside(conn):
                for pk in batch.new_ids(30):  # more than one block of 10
                    batch.add(outbox, {"id": pk, "carrier_id": 1, "message_id": None,
                                       "pdu": b"x", "created_at": when, "attempts": 0,
                                       "part": None})  # fmt: skip

            batch.then(inside)

        def finish(self, error):
            self.error = error

    async def main() -> Op:
        writer = BatchWriter(engine, block=10)
        writer.start(asyncio.get_running_loop())
        op = Op()
        writer.submit(op)
        await writer.barrier()
        await asyncio.get_running_loop().run_in_executor(None, writer.close)
        return op

    op = asyncio.run(main())
    with engine.connect() as conn:
        stored = conn.execute(select(outbox.c.id)).scalars().all()
    engine.dispose()
    assert op.error is None
    assert len(set(stored)) == 31
