# Benchmark of SMPP acceptance: a fresh gateway process, a carrier, windowed submit_sm load.
"""One command that measures what issue 3 targets: accepted submit_sm per second and the
submit->resp latency, on the default durable store (SQLite, WAL, synchronous=FULL).

``python -m bench.smpp_accept --count 100000 --binds 4 --window 50 [--database URL]``

It writes a config in a temporary folder (SMPP on a free port on 127.0.0.1), runs
``gatewayctl init``, provisions one carrier, starts ``gatewayctl serve``, runs
``bench.smpp_load`` against it in this process, checks that every accepted message is in the
store, stops the gateway with SIGTERM and prints the load report. Everything stays on
127.0.0.1 and is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from sqlalchemy import func, select

from bench.smpp_load import LoadOptions, format_report, run
from gateway.store.engine import make_engine
from gateway.store.schema import messages

PASSWORD = "bench123"  # noqa: S105 - a throwaway carrier of a temporary store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(folder: Path, database: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    config = folder / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "env": "bench",
                "database": database,
                "secret_key_file": str(folder / "gateway.key"),
                "smpp": {"system_id": "GW-BENCH", "listen": [{"host": "127.0.0.1", "port": port}]},
                "sip": {
                    "domain": "bench.example.net",
                    "listen": [{"transport": "udp", "host": "127.0.0.1", "port": 0}],
                },
                "management": {"host": "127.0.0.1", "port": 0},
                "log": {"level": "INFO", "format": "text"},
            }
        ),
        encoding="utf-8",
    )
    ctl = ["gatewayctl", "--config", str(config)]
    subprocess.run([*ctl, "init"], check=True, capture_output=True)
    subprocess.run(
        [
            *ctl,
            "carrier",
            "add",
            "BENCH",
            "--system-id",
            "BENCH",
            "--password",
            PASSWORD,
            "--allow-ip",
            "127.0.0.1",
            "--max-binds",
            "64",
        ],
        check=True,
        capture_output=True,
    )
    process = subprocess.Popen(
        [*ctl, "serve"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    for line in process.stderr:  # blocks until the gateway logs; bounded by its bind timeout
        if "ready;" in line:
            break
        if re.search(r"Traceback|error:", line):
            raise SystemExit(f"gateway failed to start: {line}")
    else:
        raise SystemExit("gateway exited before it was ready")
    return process, port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.smpp_accept", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--binds", type=int, default=4)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--ucs2", action="store_true")
    parser.add_argument("--database", help="store URL (default: SQLite in the temporary folder)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp:
        folder = Path(tmp)
        database = args.database or f"sqlite:///{folder / 'gateway.db'}"
        process, port = start_gateway(folder, database)
        try:
            options = LoadOptions(
                port=port,
                system_id="BENCH",
                password=PASSWORD,
                binds=args.binds,
                window=args.window,
                count=args.count,
                ucs2=args.ucs2,
                timeout=args.timeout,
            )
            result = asyncio.run(run(options))
        finally:
            process.send_signal(signal.SIGTERM)
            tail = process.communicate(timeout=60)[1]
        commits = re.search(r"writer: .*", tail)
        engine = make_engine(database)
        with engine.connect() as conn:
            in_store = conn.execute(select(func.count()).select_from(messages)).scalar_one()
        engine.dispose()
        print(format_report(result))
        print(f"stored     {in_store} messages (accepted {result.accepted})")
        print(f"gateway    {commits.group(0) if commits else 'no writer figures logged'}")
        if args.json:
            print(json.dumps({**result.to_dict(), "stored": in_store}))
        return 0 if result.complete and in_store >= result.accepted else 1


if __name__ == "__main__":
    sys.exit(main())
