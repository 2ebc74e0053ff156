# Benchmark of monthly settlement: N million CDRs of one carrier in one month, rated and stored.
"""``python -m bench.settlement --count 10000000 [--database URL] [--profile FILE]``

Builds a fresh store (SQLite file in a temporary folder, or a fresh schema on the PostgreSQL
server ``--database`` names), provisions carrier TATA with 80 tariffs (40 prefixes of 4 to
7 digits, each with a price change on the 15th), generates ``--count`` CDRs spread over November 2026 in
the database itself (a recursive CTE on SQLite, generate_series on PostgreSQL: Python would
take longer to make them than settlement takes to read them), then times
``billing.runs.run_one`` - the whole ``gatewayctl settlement run`` - and a second, identical
run (a rebuild of the draft must give the same checksum and totals). Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url

from billing import runs
from billing.periods import Month
from gateway import progress
from gateway.store.engine import make_engine, migrate
from gateway.store.schema import carriers, tariffs

MONTH = Month(2026, 11)
START = datetime(2026, 11, 1, tzinfo=UTC)
SECONDS = 30 * 86400
PREFIXES = [f"964{n}" for n in range(10)] + [f"9647{n}" for n in range(10)]
PREFIXES += [f"96477{n}" for n in range(10)] + [f"964780{n}" for n in range(10)]


def provision(engine: Engine) -> runs.CarrierBilling:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(carriers).values(
                id=1, name="TATA", system_id="tata", password_hash="-", allowed_networks=[],  # noqa: S106
                max_binds=4, throughput=None, receipt_id_format="dec", data_coding_default="gsm",
                billing_timezone="UTC", billable="accepted", enabled=True, created_at=now,
                updated_at=now,
            )
        )  # fmt: skip
        rows = []
        for i, prefix in enumerate(PREFIXES):
            price = Decimal("0.01") + Decimal(i) / 1000
            rows.append(
                dict(carrier_id=1, prefix=prefix, price=price, currency="USD", unit="message",
                     effective_from=date(2026, 11, 1), effective_to=date(2026, 11, 14),
                     created_at=now)
            )  # fmt: skip
            rows.append(
                dict(carrier_id=1, prefix=prefix, price=price + Decimal("0.001"),
                     currency="USD", unit="segment", effective_from=date(2026, 11, 15),
                     effective_to=None, created_at=now)
            )  # fmt: skip
        conn.execute(insert(tariffs), rows)
    return runs.CarrierBilling(1, "TATA", "UTC", "accepted")


SQLITE_FILL = """
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < :count)
INSERT INTO cdrs (id, message_id, leg, carrier_id, source, destination, parts, data_coding,
                  route, state, accepted_at, final_at)
SELECT x, x, 'in', 1, '447700900123',
       '964' || printf('%09d', (x * 2654435761) % 1000000000),
       1 + (x % 4 = 0), 0, 'sip',
       CASE WHEN x % 50 = 0 THEN 'failed' WHEN x % 97 = 0 THEN 'expired' ELSE 'delivered' END,
       datetime(:epoch + ((x - 1) * :seconds) / :count, 'unixepoch') || '.000000',
       datetime(:epoch + ((x - 1) * :seconds) / :count + 2, 'unixepoch') || '.000000'
FROM n
"""

PG_FILL = """
INSERT INTO cdrs (id, message_id, leg, carrier_id, source, destination, parts, data_coding,
                  route, state, accepted_at, final_at)
SELECT x, x, 'in', 1, '447700900123',
       '964' || lpad(((x * 2654435761) % 1000000000)::text, 9, '0'),
       1 + (x % 4 = 0)::int, 0, 'sip',
       CASE WHEN x % 50 = 0 THEN 'failed' WHEN x % 97 = 0 THEN 'expired' ELSE 'delivered' END,
       to_timestamp(:epoch + ((x - 1) * :seconds) / :count),
       to_timestamp(:epoch + ((x - 1) * :seconds) / :count + 2)
FROM generate_series(1::bigint, :count) AS x
"""


def fill(engine: Engine, count: int) -> float:
    began = time.perf_counter()
    sql = SQLITE_FILL if engine.dialect.name == "sqlite" else PG_FILL
    params = {"count": count, "epoch": int(START.timestamp()), "seconds": SECONDS}
    with engine.begin() as conn:
        conn.execute(text(sql), params)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE cdrs"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return time.perf_counter() - began


def timed_run(
    engine: Engine, carrier: runs.CarrierBilling, profile: str | None
) -> tuple[float, runs.Outcome]:
    now = datetime.now(UTC)
    began = time.perf_counter()
    if profile:
        profiler = cProfile.Profile()
        outcome = profiler.runcall(runs.run_one, engine, carrier, MONTH, actor="bench", now=now)
        profiler.dump_stats(profile)
    else:
        outcome = runs.run_one(engine, carrier, MONTH, actor="bench", now=now)
    return time.perf_counter() - began, outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000_000, help="CDRs in the month")
    parser.add_argument("--database", help="PostgreSQL URL (default: a temporary SQLite file)")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the first run into FILE")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 50_000_000:
        parser.error("--count: 1 to 50,000,000")
    with tempfile.TemporaryDirectory(prefix="bench-settle-") as folder:
        schema = None
        if args.database:
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            admin = create_engine(args.database)
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            url = make_url(args.database).update_query_dict({"options": f"-csearch_path={schema}"})
            database = url.render_as_string(hide_password=False)
        else:
            database = f"sqlite:///{Path(folder) / 'bench.db'}"
        engine = make_engine(database)
        try:
            with progress.task(f"Settlement bench, {args.count:,} CDRs", total=4) as shown:
                shown.note("creating the store")
                migrate(engine)
                carrier = provision(engine)
                shown.advance()
                shown.note("generating the CDRs")
                filled = fill(engine, args.count)
                shown.advance()
                shown.note("settling the month")
                first, outcome = timed_run(engine, carrier, args.profile)
                shown.advance()
                shown.note("settling it again (rebuild)")
                second, again = timed_run(engine, carrier, None)
                shown.advance()
        finally:
            engine.dispose()
            if schema is not None:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    assert outcome.statement is not None and again.statement is not None
    report = {
        "backend": "postgresql" if args.database else "sqlite",
        "cdrs": args.count,
        "generate_s": round(filled, 1),
        "settlement_s": round(first, 2),
        "rebuild_s": round(second, 2),
        "cdrs_per_s": round(args.count / first),
        "lines": len(outcome.statement.lines),
        "totals": {c: str(a) for c, a in outcome.statement.totals.items()},
        "counted": outcome.cdr_count,
        "same_on_rebuild": outcome.checksum == again.checksum
        and outcome.statement.totals == again.statement.totals,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["counted"] == args.count and report["same_on_rebuild"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
