# gatewayctl registrations list: live registrations as a table and as JSON; both stores.
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import yaml
from sqlalchemy import insert, select

from gateway.store.engine import make_engine
from gateway.store.schema import accounts, registrations

PW = "john-Secret-1"


def provision(ctl) -> None:
    ctl.ok("customer", "add", "John Doe")
    ctl.ok("product", "add", "Call & Chat", "--messaging")
    for account_id, dids in (("1111", ["111222333"]), ("2222", [])):
        extra = [arg for d in dids for arg in ("--did", d)]
        ctl.ok(
            "account", "add", account_id, "--customer", "John Doe", "--product", "Call & Chat",
            "--password", PW, *extra,
        )  # fmt: skip


def insert_rows(ctl, rows: list[dict]) -> None:
    engine = make_engine(yaml.safe_load(ctl.config.read_text())["database"])
    with engine.begin() as conn:
        pks = dict(conn.execute(select(accounts.c.account_id, accounts.c.id)).all())
        conn.execute(
            insert(registrations),
            [{**row, "account_id": pks[row["account_id"]]} for row in rows],
        )
    engine.dispose()


def row(account_id: str, contact: str, expires_in: timedelta, **extra: object) -> dict:
    now = datetime.now(UTC)
    return {
        "account_id": account_id,
        "contact": contact,
        "expires_at": now + expires_in,
        "call_id": "reg@app",
        "cseq": 1,
        "q": None,
        "transport": "tcp",
        "source_host": "198.51.100.7",
        "source_port": 40123,
        "user_agent": "TestApp/1.0",
        "updated_at": now,
        **extra,
    }


def test_registrations_list_shows_live_ones_by_account_then_contact(ctl, monkeypatch) -> None:
    provision(ctl)
    assert ctl.json("registrations", "list") == []
    assert "(none)" in ctl.ok("registrations", "list").output
    hour = timedelta(hours=1)
    insert_rows(
        ctl,
        [
            row("2222", "sip:2222@192.0.2.5", hour, transport="udp", user_agent=None),
            row("1111", "sip:1111@192.0.2.9", hour, source_host="2001:db8::9", source_port=5060),
            row("1111", "sip:1111@192.0.2.1", hour / 2),
            row("1111", "sip:1111@192.0.2.7", -hour),  # expired: not shown
        ],
    )
    listed = ctl.json("registrations", "list")
    assert [(r["account"], r["contact"]) for r in listed] == [
        ("1111", "sip:1111@192.0.2.1"),
        ("1111", "sip:1111@192.0.2.9"),
        ("2222", "sip:2222@192.0.2.5"),
    ]
    first = listed[0]
    assert first["did"] == "964111222333"
    assert (first["transport"], first["source"], first["user_agent"]) == (
        "tcp",
        "198.51.100.7:40123",
        "TestApp/1.0",
    )
    assert 1700 <= first["expires_in"] <= 1800
    assert datetime.fromisoformat(first["expires_at"]).utcoffset() == timedelta(0)
    assert listed[1]["source"] == "[2001:db8::9]:5060"
    assert listed[2]["did"] is None and listed[2]["user_agent"] is None

    only = ctl.json("registrations", "list", "--account", "2222")
    assert [r["contact"] for r in only] == ["sip:2222@192.0.2.5"]

    monkeypatch.setenv("COLUMNS", "250")  # rich wraps a table to the terminal's width
    table = ctl.ok("registrations", "list").output
    for text in ("account", "expires_in", "sip:1111@192.0.2.1", "964111222333", "2222"):
        assert text in table
    assert "192.0.2.7" not in table


def test_registrations_list_refuses_an_unknown_account(ctl) -> None:
    provision(ctl)
    ctl.refused("registrations", "list", "--account", "9999", contains="no account '9999'")


def test_removing_an_account_removes_its_registrations(ctl) -> None:
    provision(ctl)
    insert_rows(ctl, [row("2222", "sip:2222@192.0.2.5", timedelta(hours=1))])
    ctl.ok("account", "remove", "2222")
    assert ctl.json("registrations", "list") == []


def test_registrations_help_is_listed() -> None:
    from click.testing import CliRunner

    import gatewayctl

    out = CliRunner().invoke(gatewayctl.main, ["--help"]).output
    assert "registrations" in out
    out = CliRunner().invoke(gatewayctl.main, ["registrations", "list", "--help"]).output
    assert "--account ID" in out and "--json" in out
