# Retention on the store (SQLite and PostgreSQL): text erased, old records and CDRs dropped.
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from gateway.config import ConfigError, RetentionConfig, parse_config
from gateway.retention import purge
from gateway.store.engine import make_engine, migrate
from gateway.store.schema import carriers, cdrs, fragments, message_events, messages

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def message(mid: int, *, final: datetime | None, text: str = "secret code 1234") -> dict:
    accepted = (final or NOW) - timedelta(minutes=5)
    return dict(
        id=mid, origin="carrier", carrier_id=1, source="4477", source_ton=1,
        destination="9647701234567", data_coding=0, esm_class=0, body_text=text, parts=1,
        registered_delivery=0, priority=0, lane="bulk",
        state="delivered" if final else "retry-wait", attempts=1, accepted_at=accepted,
        validity_until=accepted + timedelta(days=2), final_at=final,
    )  # fmt: skip


def cdr(cid: int, accepted: datetime) -> dict:
    return dict(id=cid, message_id=cid, leg="in", carrier_id=1, source="4477",
                destination="9647701234567", parts=1, data_coding=0, state="delivered",
                accepted_at=accepted, final_at=accepted + timedelta(seconds=1))  # fmt: skip


@pytest.fixture
def engine(store_url):
    engine = make_engine(store_url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(insert(carriers).values(
            id=1, name="TATA", system_id="TATA", password_hash="x", allowed_networks=[],
            max_binds=1, receipt_id_format="dec", data_coding_default="gsm", enabled=True,
            created_at=NOW, updated_at=NOW,
        ))  # fmt: skip
        conn.execute(insert(messages), [
            message(1, final=NOW - timedelta(days=31)),  # text erased, record kept
            message(2, final=NOW - timedelta(days=29)),  # both kept
            message(3, final=NOW - timedelta(days=91)),  # record deleted
            message(4, final=None),  # not ended: never touched, however old
        ])  # fmt: skip
        conn.execute(insert(fragments).values(
            id=10, carrier_id=1, group_key="k", total=2, seq=1, payload=b"secret", meta={},
            registered_delivery=0, accepted_at=NOW - timedelta(days=32),
            expires_at=NOW - timedelta(days=30), message_id=1,
        ))  # fmt: skip
        conn.execute(insert(message_events), [
            dict(id=20 + mid, message_id=mid, at=NOW - timedelta(days=100), event="sending")
            for mid in (1, 2, 3, 4)
        ])  # fmt: skip
        conn.execute(insert(cdrs), [
            cdr(1, NOW - timedelta(days=1828)),  # past five years
            cdr(2, NOW - timedelta(days=1826)),
        ])  # fmt: skip
    yield engine
    engine.dispose()


def test_purge_erases_text_and_drops_what_is_past_its_period(engine):
    policy = RetentionConfig()
    dry = purge(engine, policy, NOW, dry_run=True)
    assert (dry.texts, dry.messages, dry.cdrs) == (2, 1, 1)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(messages)).scalar() == 4
    done = purge(engine, policy, NOW)
    assert (done.texts, done.messages, done.cdrs) == (2, 1, 1)
    with engine.connect() as conn:
        left = {
            r.id: r.body_text for r in conn.execute(select(messages.c.id, messages.c.body_text))
        }
        assert left == {1: None, 2: "secret code 1234", 4: "secret code 1234"}
        assert conn.execute(select(func.count()).select_from(fragments)).scalar() == 0
        assert list(conn.execute(select(cdrs.c.id)).scalars()) == [2]
        events = conn.execute(select(message_events.c.message_id)).scalars()
        assert sorted(events) == [1, 2, 4]  # the dropped message's life went with it
    again = purge(engine, policy, NOW)
    assert (again.texts, again.messages, again.cdrs) == (0, 0, 0)


def test_retention_settings_are_checked():
    with pytest.raises(ConfigError, match=r"retention\.cdrs: must be at least 1827d"):
        parse_config({"retention": {"cdrs": "365d"}}, "test.yaml")
    with pytest.raises(ConfigError, match=r"retention\.messages: .* shorter than message_text"):
        parse_config({"retention": {"message_text": "60d", "messages": "30d"}}, "test.yaml")
    config = parse_config({"retention": {"message_text": "7d", "cdrs": "3650d"}}, "test.yaml")
    assert config.retention.message_text == timedelta(days=7)
    assert config.retention.cdrs == timedelta(days=3650)


def test_gatewayctl_purge_reports_what_it_did(ctl):
    assert ctl.ok("purge", "--dry-run").stdout.startswith("dry run: would have 0 message texts")
    assert "0 CDRs deleted" in ctl.ok("purge").stdout
