# Registrations in the store: save/expire via the batch writer, load, admin rows; both backends.
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from gateway.sip.registrar import Binding
from gateway.sip.regstore import (
    ExpireBindingsOp,
    SaveBindingsOp,
    load_bindings,
    registration_rows,
)
from gateway.store.engine import make_engine, migrate
from gateway.store.schema import accounts, customers, dids, products, registrations
from gateway.store.writer import BatchWriter

T0 = datetime(2026, 11, 23, 8, 0, 0, 250_000, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = make_engine(store_url)
    migrate(engine)
    with engine.begin() as conn:
        customer = conn.execute(
            insert(customers).values(name="John Doe", created_at=T0)
        ).inserted_primary_key[0]
        product = conn.execute(
            insert(products).values(name="Call & Chat", messaging=True, created_at=T0)
        ).inserted_primary_key[0]
        for pk, account_id in ((1, "1111"), (2, "2222"), (3, "3333")):
            conn.execute(
                insert(accounts).values(
                    id=pk,
                    account_id=account_id,
                    customer_id=customer,
                    product_id=product,
                    enabled=True,
                    sip_realm="env1.example.net",
                    sip_ha1_md5="0" * 32,
                    sip_ha1_sha256="0" * 64,
                    created_at=T0,
                    updated_at=T0,
                )
            )
        conn.execute(
            insert(dids),
            [
                {"e164": "964111222334", "account_id": 1, "assigned_at": T0},
                {"e164": "964111222333", "account_id": 1, "assigned_at": T0},
                {"e164": "964999000000", "account_id": None, "assigned_at": None},
            ],
        )
    yield engine
    engine.dispose()


def binding(
    account: int,
    contact: str,
    expires: float = 600,
    *,
    q: float | None = None,
    cseq: int = 1,
    source: tuple[str, int] = ("198.51.100.7", 40123),
    transport: str = "tcp",
    user_agent: str | None = "TestApp/1.0",
    updated: float = 0,
) -> Binding:
    return Binding(
        account=account,
        aor={1: "1111", 2: "2222", 3: "3333"}.get(account, "?"),
        contact=contact,
        expires_at=at(expires),
        call_id=f"reg-{account}@app",
        cseq=cseq,
        q=q,
        transport=transport,
        source=source,
        user_agent=user_agent,
        updated_at=at(updated),
    )


class Writer:
    """A BatchWriter on a running loop; each group of ops is submitted at once (so they may
    share a batch) and awaited before the next group."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def run(self, *groups: list) -> None:
        writer = BatchWriter(self.engine)
        writer.start(asyncio.get_running_loop())
        try:
            for ops in groups:
                for op in ops:
                    writer.submit(op)
                await writer.barrier()
        finally:
            writer.close()


class Done:
    """A done callback that remembers what it was told."""

    def __init__(self) -> None:
        self.calls: list[BaseException | None] = []

    def __call__(self, error: BaseException | None) -> None:
        self.calls.append(error)


def save(account: int, bindings: tuple[Binding, ...]) -> tuple[SaveBindingsOp, Done]:
    done = Done()
    return SaveBindingsOp(account, bindings, done), done


def stored(engine: Engine, now: datetime = T0) -> list[Binding]:
    with engine.connect() as conn:
        return load_bindings(conn, now)


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(registrations)).scalar_one()


def test_save_replaces_an_accounts_rows_and_loads_back_exactly(engine: Engine) -> None:
    phone = binding(1, "sip:1111@198.51.100.7:40123;transport=tcp", q=0.5)
    tablet = binding(
        1, "sip:1111@[2001:db8::7]:5060", 300, source=("2001:db8::7", 5060), transport="udp"
    )
    other = binding(2, "sips:2222@app.example.com", user_agent=None)
    op1, done1 = save(1, (phone, tablet))
    op2, done2 = save(2, (other,))
    asyncio.run(Writer(engine).run([op1, op2]))
    assert done1.calls == [None] and done2.calls == [None]
    loaded = stored(engine)
    assert sorted(loaded, key=lambda b: (b.account, b.contact)) == sorted(
        [phone, tablet, other], key=lambda b: (b.account, b.contact)
    )
    assert all(b.expires_at.tzinfo == UTC and b.updated_at.tzinfo == UTC for b in loaded)
    # a later save of account 1 replaces its rows only
    refreshed = binding(1, phone.contact, 900, q=0.5, cseq=2, updated=60)
    op3, done3 = save(1, (refreshed,))
    asyncio.run(Writer(engine).run([op3]))
    assert done3.calls == [None]
    assert {(b.account, b.contact, b.expires_at) for b in stored(engine)} == {
        (1, phone.contact, at(900)),
        (2, other.contact, other.expires_at),
    }
    # saving nothing removes the account's rows
    op4, _ = save(1, ())
    asyncio.run(Writer(engine).run([op4]))
    assert [b.account for b in stored(engine)] == [2]


def test_saves_of_one_account_apply_in_queue_order(engine: Engine) -> None:
    ops = [save(1, (binding(1, f"sip:1111@192.0.2.{i}", cseq=i),))[0] for i in range(1, 8)]
    asyncio.run(Writer(engine).run(ops))
    [last] = stored(engine)
    assert last.contact == "sip:1111@192.0.2.7" and last.cseq == 7
    assert count(engine) == 1


def test_a_failing_save_fails_alone_and_says_so(engine: Engine) -> None:
    good, good_done = save(1, (binding(1, "sip:1111@192.0.2.1"),))
    bad, bad_done = save(99, (binding(99, "sip:nobody@192.0.2.9"),))  # no such account (FK)
    asyncio.run(Writer(engine).run([good, bad]))
    assert good_done.calls == [None]
    assert len(bad_done.calls) == 1 and bad_done.calls[0] is not None
    assert [b.account for b in stored(engine)] == [1]


def test_save_refuses_bindings_of_another_account() -> None:
    with pytest.raises(ValueError):
        SaveBindingsOp(1, (binding(2, "sip:x@192.0.2.1"),), Done())


def test_expire_deletes_exactly_the_expired_rows_not_refreshed_ones(engine: Engine) -> None:
    a = binding(1, "sip:1111@192.0.2.1", 100)
    b = binding(1, "sip:1111@192.0.2.2", 100)
    c = binding(2, "sip:2222@192.0.2.3", 100)
    keep = binding(3, "sip:3333@192.0.2.4", 100)
    op, _ = save(1, (a, b))
    asyncio.run(Writer(engine).run([op, save(2, (c,))[0], save(3, (keep,))[0]]))
    # b was refreshed (a later expiry committed) after the registrar decided it had expired
    b_later = binding(1, b.contact, 700, cseq=2, updated=90)
    done = Done()
    expire = ExpireBindingsOp([a, b, c], done)
    asyncio.run(Writer(engine).run([save(1, (a, b_later))[0]], [expire]))
    assert done.calls == [None]
    assert {(x.account, x.contact, x.expires_at) for x in stored(engine)} == {
        (1, b.contact, at(700)),
        (3, keep.contact, at(100)),
    }
    # an empty expiry is a no-op; without a callback it only logs failures
    asyncio.run(Writer(engine).run([ExpireBindingsOp([])]))
    assert count(engine) == 2


def test_load_skips_expired_rows_and_names_the_account(engine: Engine) -> None:
    live = binding(1, "sip:1111@192.0.2.1", 100)
    dead = binding(2, "sip:2222@192.0.2.2", 10)
    asyncio.run(Writer(engine).run([save(1, (live,))[0], save(2, (dead,))[0]]))
    loaded = stored(engine, at(10))
    assert [(b.aor, b.contact) for b in loaded] == [("1111", live.contact)]
    assert stored(engine, at(100)) == []


def test_registration_rows_for_the_admin(engine: Engine) -> None:
    rows = (
        binding(1, "sip:1111@192.0.2.9", 300, source=("203.0.113.5", 5062)),
        binding(1, "sip:1111@192.0.2.1", 600, source=("2001:db8::1", 5060), transport="tls"),
    )
    asyncio.run(
        Writer(engine).run(
            [
                save(2, (binding(2, "sip:2222@192.0.2.5", user_agent=None),))[0],
                save(1, rows)[0],
                save(3, (binding(3, "sip:3333@192.0.2.6", 5),))[0],  # expired at T0+10
            ]
        )
    )
    with engine.connect() as conn:
        listed = registration_rows(conn, now=at(10.5))
        only = registration_rows(conn, now=at(10.5), account="2222")
        none = registration_rows(conn, now=at(10.5), account="3333")
    assert [(r["account"], r["contact"]) for r in listed] == [
        ("1111", "sip:1111@192.0.2.1"),
        ("1111", "sip:1111@192.0.2.9"),
        ("2222", "sip:2222@192.0.2.5"),
    ]
    assert listed[0] == {
        "account": "1111",
        "did": "964111222333",
        "contact": "sip:1111@192.0.2.1",
        "transport": "tls",
        "source": "[2001:db8::1]:5060",
        "expires_at": at(600).isoformat(),
        "expires_in": 590,
        "user_agent": "TestApp/1.0",
    }
    assert listed[1]["source"] == "203.0.113.5:5062" and listed[1]["expires_in"] == 290
    assert only == [
        {
            "account": "2222",
            "did": None,
            "contact": "sip:2222@192.0.2.5",
            "transport": "tcp",
            "source": "198.51.100.7:40123",
            "expires_at": at(600).isoformat(),
            "expires_in": 590,
            "user_agent": None,
        }
    ]
    assert none == []


def test_deleting_an_account_deletes_its_registrations(engine: Engine) -> None:
    asyncio.run(Writer(engine).run([save(1, (binding(1, "sip:1111@192.0.2.1"),))[0]]))
    with engine.begin() as conn:
        conn.execute(delete(dids).where(dids.c.account_id == 1))
        conn.execute(delete(accounts).where(accounts.c.id == 1))
    assert count(engine) == 0


def test_one_contact_per_account_is_enforced(engine: Engine) -> None:
    row = {
        "account_id": 1,
        "contact": "sip:1111@192.0.2.1",
        "expires_at": T0,
        "call_id": "x",
        "cseq": 1,
        "q": None,
        "transport": "udp",
        "source_host": "192.0.2.1",
        "source_port": 5060,
        "user_agent": None,
        "updated_at": T0,
    }
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(registrations), [row, row])
