# The pipeline's periodic counts (parked per number, waiting per route, by state) on a big backlog.
"""``python -m bench.counts [--count 1000000] [--database URL]``: a store with ``count``
messages not ended yet (90% retry-wait, 10% routed; half for an SMPP route; 50,000
numbers), then the three queries the pipeline runs every 30 s, timed. They run on a
connection of their own, off the batch writer, so their time is not a pause of the commits.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from gateway.pipeline_store import parked_counts, state_counts, waiting_counts
from gateway.store.engine import make_engine, migrate

FILL = """
WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < :n)
INSERT INTO messages (id, origin, source, source_ton, destination, data_coding, esm_class,
  parts, registered_delivery, priority, lane, state, attempts, route, accepted_at,
  next_attempt_at, validity_until)
SELECT x, 'carrier', 'AsiaCell', 5, '964' || (700000000 + x % 50000), 0, 0, 1, 1, 0, 'bulk',
  CASE WHEN x % 10 = 0 THEN 'routed' ELSE 'retry-wait' END, 0,
  CASE WHEN x % 2 = 0 THEN 'smpp:to-env4' ELSE 'sip:1111' END, :now, :now, :now
FROM seq
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.counts", description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--database", help="an empty store's URL (default: temporary SQLite)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-counts-") as folder:
        engine = make_engine(args.database or f"sqlite:///{Path(folder) / 'counts.db'}")
        migrate(engine)
        now = datetime.now(UTC)
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text(FILL), {"n": args.count, "now": now})
        report: dict[str, object] = {"messages": args.count,
                                     "fill_s": round(time.perf_counter() - started, 1)}  # fmt: skip
        with engine.connect() as conn:
            for name, query in (
                ("parked_counts", parked_counts(50_000)),
                ("waiting_counts", waiting_counts),
                ("state_counts", state_counts),
            ):
                started = time.perf_counter()
                query(conn)
                report[f"{name}_ms"] = round((time.perf_counter() - started) * 1000, 1)
        engine.dispose()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
