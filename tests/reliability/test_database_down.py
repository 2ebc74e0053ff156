# The database goes away under traffic: the gateway stops acknowledging, keeps its sessions,
# and resumes by itself when the database is back; nothing acknowledged is lost.
from __future__ import annotations

import pytest

from tests.reliability.private_pg import PrivatePostgres
from tests.scenarios.carrier import Carrier
from tests.scenarios.test_section1_carriers_to_apps import john, rows

REFUSALS = {0x08, 0x14}  # ESME_RSYSERR, ESME_RMSGQFUL


@pytest.fixture
def private_pg():
    pg = PrivatePostgres()
    pg.start()
    yield pg
    pg.close()


def test_postgresql_stopped_and_started_again(make_env, sip_ua, private_pg):
    gw = make_env(database=private_pg.url).start()
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    with Carrier(gw.smpp_port) as tata:
        before = [tata.submit(f"before {i}") for i in range(20)]
        assert all(r.status == 0 for r in before)
        assert sorted(app.next_message(timeout=30).body for _ in range(20)) == sorted(
            f"before {i}" for i in range(20)
        )
        # 100 more are acknowledged and then, mid-delivery, the database crashes
        inflight = [f"inflight {i}" for i in range(100)]
        assert all(r.status == 0 for r in tata.submit_many(inflight))
        private_pg.stop("immediate")
        during = [tata.submit(f"during {i}") for i in range(10)]
        assert {r.status for r in during} <= REFUSALS, [hex(r.status) for r in during]
        # an app's MESSAGE cannot be stored either: 503, try later
        assert app.send_message(f"sip:+964111222333@{gw.domain}", "to myself") == 503
        private_pg.start()
        # the writer finds the database back by itself (writing what waited)
        gw.wait_for_log("database available again", timeout=30)
        after = [f"after {i}" for i in range(10)]
        assert all(r.status == 0 for r in tata.submit_many(after))  # same bind, no reconnect
        wanted, got = set(inflight) | set(after), set()
        while not wanted <= got:  # at least once: an outcome lost in the crash is sent again
            got.add(app.next_message(timeout=60).body)
    gw.stop()
    states = {r["body_text"]: r["state"] for r in rows(gw)}
    assert all(states[text] == "delivered" for text in wanted), {
        t: states[t] for t in wanted if states[t] != "delivered"
    }
    assert all(states[f"before {i}"] == "delivered" for i in range(20))
    assert not any(text.startswith("during") for text in states)  # refused, not stored


def sqlite_outage(make_env, sip_ua, take_away, give_back) -> None:
    """Messages being delivered when the SQLite store stops taking writes; then it does again:
    refused meanwhile, resumed by itself, every acknowledged message delivered."""
    gw = make_env().start()
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    with Carrier(gw.smpp_port) as tata:
        inflight = [f"inflight {i}" for i in range(50)]
        assert all(r.status == 0 for r in tata.submit_many(inflight))
        take_away(gw.folder / "gateway.db")
        try:
            during = [tata.submit(f"during {i}") for i in range(3)]
            assert {r.status for r in during} <= REFUSALS, [hex(r.status) for r in during]
        finally:
            give_back(gw.folder / "gateway.db")
        gw.wait_for_log("database available again", timeout=30)
        after = [f"after {i}" for i in range(10)]
        assert all(r.status == 0 for r in tata.submit_many(after))
        wanted, got = set(inflight) | set(after), set()
        while not wanted <= got:
            got.add(app.next_message(timeout=60).body)
    gw.stop()
    states = {r["body_text"]: r["state"] for r in rows(gw)}
    assert all(states[text] == "delivered" for text in wanted)
    assert not any(text.startswith("during") for text in states)


def test_sqlite_store_locked_by_another_process(make_env, sip_ua):
    """Another process holds the SQLite file's write lock longer than the busy timeout (a
    backup tool, an admin's sqlite3 shell)."""
    import sqlite3

    holders = []

    def lock(database):
        holder = sqlite3.connect(database, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # waits for the gateway's current commit, then holds
        holders.append(holder)

    def unlock(database):
        holder = holders.pop()
        holder.execute("ROLLBACK")
        holder.close()

    sqlite_outage(make_env, sip_ua, lock, unlock)


def test_sqlite_store_on_a_disk_that_refuses_writes(make_env, sip_ua):
    """The store's files become unwritable (here: immutable, chattr +i, which even root
    cannot write; SQLite reports a disk I/O error) - as a failing or read-only disk would."""
    import subprocess

    def files(database):
        return [str(p) for p in (database, database.with_name(database.name + "-wal"))]

    def freeze(database):
        subprocess.run(["chattr", "+i", *files(database)], check=True)

    def thaw(database):
        subprocess.run(["chattr", "-i", *files(database)], check=True)

    sqlite_outage(make_env, sip_ua, freeze, thaw)


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MiB file system of its own (tmpfs), so the store can really fill it."""
    import subprocess

    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill(disk) -> None:
    """Take every free byte of ``disk`` (1 MiB writes, then 4 KiB ones, until ENOSPC)."""
    import errno

    with open(disk / "filler", "wb", buffering=0) as filler:
        for size in (1 << 20, 4096, 512):
            while True:
                try:
                    filler.write(b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break


def test_sqlite_store_on_a_full_disk(make_env, sip_ua, small_disk):
    """The store's file system fills up under traffic (SQLite: database or disk is full):
    the gateway takes what still fits, then refuses; it resumes by itself once there is room,
    and every message it acknowledged is delivered."""
    gw = make_env(database=f"sqlite:///{small_disk / 'gateway.db'}").start()
    app = john(sip_ua, gw)
    assert app.wait_registered() == 200
    wanted: set[str] = set()
    with Carrier(gw.smpp_port) as tata:
        before = [f"before {i}" for i in range(50)]
        assert all(r.status == 0 for r in tata.submit_many(before))
        wanted |= set(before)
        fill(small_disk)
        refusals = []
        for i in range(5000):  # what still fits in the WAL is taken; then refused
            text = f"disk full {i}"
            status = tata.submit(text).status
            if status == 0:
                wanted.add(text)
            else:
                refusals.append(status)
                if len(refusals) == 3:
                    break
        assert len(refusals) == 3 and set(refusals) <= REFUSALS, refusals
        assert "database or disk is full" in gw.log()
        (small_disk / "filler").unlink()  # room again
        gw.wait_for_log("database available again", timeout=30)
        after = [f"after {i}" for i in range(10)]
        assert all(r.status == 0 for r in tata.submit_many(after))
        wanted |= set(after)
        got: set[str] = set()
        while not wanted <= got:
            got.add(app.next_message(timeout=60).body)
    gw.stop()
    states = {r["body_text"]: r["state"] for r in rows(gw)}
    assert all(states[text] == "delivered" for text in wanted)
    print(f"full disk: {len(wanted) - 60} taken after the disk filled, then refused {refusals}")
