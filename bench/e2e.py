# End-to-end benchmark: carrier -> gateway (real `gatewayctl serve`) -> app, durable SQLite.
"""What issue 5 targets: messages delivered per second from a carrier's submit_sm to the
app's 200 OK, and the latency of each (submit written -> 200 OK sent by the app).

``python -m bench.e2e --users 1000 --count 50000 [--rate 4000] [--binds 2 --window 100]``

It writes a config in a temporary folder (SQLite store in WAL with synchronous=FULL, SMPP
and SIP/UDP on free ports of 127.0.0.1), provisions N accounts (one DID each) with one
``gatewayctl apply`` and a carrier, starts ``gatewayctl serve``, starts ``bench.sip_swarm``
(the N apps register and answer every MESSAGE 200; ``--stamps`` times each one), then binds
``--binds`` transceivers with the gateway's own codec and submits ``--count`` messages
round-robin over the DIDs, ``--window`` unanswered per bind, at most ``--rate`` per second
when given. Each text is ``e2e N t=NS`` (CLOCK_MONOTONIC at the moment the submit_sm is
written, shared by the processes of one machine), so the swarm measures the end-to-end
latency. The gateway's message rows are counted at the end (all delivered). Everything is
on 127.0.0.1 and bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from sqlalchemy import func, select

from bench.sip_load import PASSWORD, accounts_file, cpu_seconds, did_of, memory, raise_fd_limit
from bench.smpp_accept import free_port
from gateway import progress
from gateway.smpp.codec import Framer, Pdu, decode, encode
from gateway.smpp.constants import CommandId, Status
from gateway.store.engine import make_engine
from gateway.store.schema import messages

DOMAIN = "bench.example.net"
CARRIER_PW = "bench123"


def provision(
    folder: Path,
    users: int,
    smpp_port: int,
    sip_port: int,
    *,
    env: str = "bench",
    carrier: tuple[str, str] = ("BENCH", "BENCH"),
    forward_to: int | None = None,
) -> Path:
    """Config and store of one gateway: N accounts (none when ``forward_to`` is given: then
    every 9647... number goes over a connection to that SMPP port) and one carrier
    (name, system_id)."""
    config = folder / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "env": env,
                "database": f"sqlite:///{folder / 'gateway.db'}",
                "secret_key_file": str(folder / "gateway.key"),
                "numbering": {"country_code": "964", "national_prefix": "0"},
                "smpp": {
                    "system_id": f"GW-{env.upper()}"[:15],
                    "listen": [{"host": "127.0.0.1", "port": smpp_port}],
                    "window": 1000,
                },
                "sip": {
                    "domain": DOMAIN,
                    "listen": [{"transport": "udp", "host": "127.0.0.1", "port": sip_port}],
                    "max_transactions": 2_000_000,
                    # the swarm is one trusted source on loopback sending thousands of
                    # requests a second over up to N connections: exempt from the flood
                    # guard and the per-address connection cap, as an SBC would be
                    "trusted_networks": ["127.0.0.0/8"],
                },
                "management": {"host": "127.0.0.1", "port": 0},
                "delivery": {"max_in_flight": 2000},
                "log": {"level": "INFO", "format": "text"},
            }
        ),
        encoding="utf-8",
    )
    ctl = ["gatewayctl", "--config", str(config)]
    subprocess.run([*ctl, "init"], check=True, capture_output=True)
    if forward_to is None:
        sites = accounts_file(folder, users, "u")
        subprocess.run([*ctl, "apply", "-f", str(sites)], check=True, capture_output=True)
    else:
        subprocess.run(
            [*ctl, "connection", "add", "to-env4", "--host", "127.0.0.1", "--port",
             str(forward_to), "--system-id", "GW-ENV1", "--password", CARRIER_PW,
             "--window", "200"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            [*ctl, "policy", "add", "--pattern", "9647%", "--connection", "to-env4"],
            check=True, capture_output=True,
        )  # fmt: skip
    subprocess.run(
        [*ctl, "carrier", "add", carrier[0], "--system-id", carrier[1], "--password",
         CARRIER_PW, "--allow-ip", "127.0.0.1", "--max-binds", "16"],
        check=True, capture_output=True,
    )  # fmt: skip
    return config


def serve(config: Path) -> tuple[subprocess.Popen[str], Lines]:
    gateway = subprocess.Popen(
        ["gatewayctl", "--config", str(config), "serve"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines = Lines(gateway.stderr)
    lines.wait("ready;", 60)
    return gateway, lines


class Lines:
    """A child process's output lines, readable as events."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    def wait(self, pattern: str, timeout: float) -> str:
        regex = re.compile(pattern)
        with self.cond:
            ok = self.cond.wait_for(lambda: any(regex.search(x) for x in self.lines), timeout)
            if not ok:
                raise TimeoutError(f"no line matching {pattern!r}:\n" + "".join(self.lines[-20:]))
            return next(x for x in self.lines if regex.search(x))


class Bind(asyncio.Protocol):
    """One transceiver: windowed submit_sm, answers deliver_sm, counts resps."""

    def __init__(self, run: Load) -> None:
        self.run = run
        self.framer = Framer()
        self.io: asyncio.Transport | None = None
        self.bound: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.unanswered = 0
        self.sequence = 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.io = transport  # type: ignore[assignment]
        self.io.write(  # type: ignore[union-attr]
            encode(
                Pdu(
                    CommandId.BIND_TRANSCEIVER, 1, 0, {"system_id": "BENCH", "password": CARRIER_PW}
                )
            )
        )

    def data_received(self, data: bytes) -> None:
        out: list[bytes] = []
        for frame in self.framer.feed(data):
            pdu = decode(frame)
            if pdu.command_id == CommandId.BIND_TRANSCEIVER_RESP:
                self.bound.set_result(None)
            elif pdu.command_id == CommandId.SUBMIT_SM_RESP:
                self.unanswered -= 1
                self.run.answered(pdu.status)
            elif pdu.command_id in (CommandId.DELIVER_SM, CommandId.ENQUIRE_LINK):
                out.append(
                    encode(
                        Pdu(
                            pdu.command_id | 0x80000000,
                            pdu.sequence,
                            0,
                            {"message_id": ""} if pdu.command_id == CommandId.DELIVER_SM else {},
                        )
                    )
                )
        if out and self.io is not None:
            self.io.write(b"".join(out))
        self.run.pump()

    def submit(self, n: int) -> None:
        self.sequence += 1
        self.unanswered += 1
        text = f"e2e {n} t={time.monotonic_ns()}".encode("ascii")
        pdu = Pdu(
            CommandId.SUBMIT_SM,
            self.sequence,
            0,
            {
                "source_addr_ton": 5,
                "source_addr": "BenchCo",
                "dest_addr_ton": 1,
                "dest_addr_npi": 1,
                "destination_addr": "964" + did_of(n % self.run.users),
                "short_message": text,
            },
        )
        assert self.io is not None
        self.io.write(encode(pdu))


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.users = args.users
        self.count = args.count
        self.window = args.window
        self.rate = args.rate
        self.sent = 0
        self.accepted = 0
        self.refused: dict[int, int] = {}
        self.binds: list[Bind] = []
        self.started = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def answered(self, status: int) -> None:
        if status == Status.ESME_ROK:
            self.accepted += 1
        else:
            self.refused[status] = self.refused.get(status, 0) + 1
        if self.accepted + sum(self.refused.values()) >= self.count and not self.done.done():
            self.done.set_result(None)

    def pump(self) -> None:
        allowed = self.count
        if self.rate:
            allowed = min(self.count, int((time.monotonic() - self.started) * self.rate) + 1)
        for bind in self.binds:
            while self.sent < allowed and bind.unanswered < self.window:
                bind.submit(self.sent)
                self.sent += 1

    async def run(self, port: int, binds: int) -> float:
        loop = asyncio.get_running_loop()
        for _ in range(binds):
            bind = Bind(self)
            await loop.create_connection(lambda b=bind: b, "127.0.0.1", port)
            await bind.bound
            self.binds.append(bind)
        self.started = time.monotonic()
        while not self.done.done():
            self.pump()
            await asyncio.wait([self.done], timeout=0.005 if self.rate else 0.05)
        return time.monotonic() - self.started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.e2e", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--binds", type=int, default=2)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--rate", type=float, default=None, help="offered submit_sm per second")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--py-spy", metavar="FILE", help="record the gateway with py-spy (raw)")
    parser.add_argument(
        "--via-env", action="store_true", help="carrier -> env1 -> env4 -> app (two gateways)"
    )
    args = parser.parse_args(argv)
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="gw-e2e-") as tmp:
        folder = Path(tmp)
        smpp_port, sip_port = free_port(), free_port()
        gateways: list[subprocess.Popen[str]] = []
        logs: list[Lines] = []
        app_store = folder / "app" / "gateway.db"
        (folder / "app").mkdir()
        swarm = None
        spy = None
        stack = contextlib.ExitStack()  # the progress display (a terminal only)
        shown = stack.enter_context(progress.task(f"e2e, {args.count:,} messages", total=3))
        try:
            shown.note("starting the gateway")
            if args.via_env:  # carrier -> env1 -> env4 -> app: the apps live in env4
                env4_smpp = free_port()
                config4 = provision(
                    folder / "app", args.users, env4_smpp, sip_port, env="env4",
                    carrier=("env1", "GW-ENV1"),
                )  # fmt: skip
                gateway, lines = serve(config4)
                gateways.append(gateway)
                logs.append(lines)
                (folder / "entry").mkdir()
                config1 = provision(
                    folder / "entry", 0, smpp_port, free_port(), env="env1", forward_to=env4_smpp
                )
                gateway, lines = serve(config1)
                gateways.append(gateway)
                logs.append(lines)
                lines.wait("connection to-env4 bound trx", 60)
            else:
                config = provision(folder / "app", args.users, smpp_port, sip_port)
                gateway, lines = serve(config)
                gateways.append(gateway)
                logs.append(lines)
            swarm = subprocess.Popen(
                [sys.executable, "-m", "bench.sip_swarm", "--port", str(sip_port), "--users",
                 str(args.users), "--prefix", "u", "--password", PASSWORD, "--domain", DOMAIN,
                 "--stamps", "--expect", str(args.count)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            out = Lines(swarm.stdout)
            shown.advance()
            shown.note(f"registering {args.users:,} apps")
            out.wait(r"^registered \d+", 120)
            shown.advance()
            shown.note("carrier -> gateway -> apps")
            if args.py_spy:
                spy = subprocess.Popen(
                    ["py-spy", "record", "-p", str(gateways[0].pid), "-r", "200", "-f", "raw",
                     "-o", args.py_spy],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            cpu_before = [cpu_seconds(g.pid) for g in gateways]
            load = asyncio.run(_load(args, smpp_port))
            line = out.wait(r"^e2e \{", args.timeout)
            summary = json.loads(line.split(" ", 1)[1])
            cpu = [
                round(cpu_seconds(g.pid) - c, 1) for g, c in zip(gateways, cpu_before, strict=True)
            ]
            rss = [round(memory(g.pid).get("VmRSS", 0), 1) for g in gateways]
            shown.advance()
        finally:
            stack.close()
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            if swarm is not None and swarm.stdin is not None:
                swarm.stdin.close()
                swarm.wait(30)
            for gateway in reversed(gateways):
                gateway.send_signal(signal.SIGTERM)
                gateway.wait(60)
        engine = make_engine(f"sqlite:///{app_store}")
        with engine.connect() as conn:
            states = dict(
                conn.execute(
                    select(messages.c.state, func.count()).group_by(messages.c.state)
                ).all()
            )
        engine.dispose()
        retried: dict[str, int] = {}
        entry = folder / ("entry" if args.via_env else "app") / "gateway.db"
        engine = make_engine(f"sqlite:///{entry}")
        with engine.connect() as conn:  # why messages needed more than one attempt
            for reason, n in conn.execute(
                select(messages.c.reason, func.count())
                .where(messages.c.attempts > 1)
                .group_by(messages.c.reason)
            ):
                retried[str(reason)] = n
        engine.dispose()
    seconds = (summary["last_ns"] - load["first_ns"]) / 1e9
    report = {
        "count": args.count,
        "users": args.users,
        "binds": args.binds,
        "window": args.window,
        "offered_rate": args.rate,
        "accepted": load["accepted"],
        "refused": load["refused"],
        "submit_seconds": round(load["seconds"], 2),
        "delivered": summary["delivered"],
        "duplicates": summary["duplicates"],
        "delivered_per_s": round(summary["delivered"] / seconds, 1),
        "latency_ms": {k: summary[k] for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")},
        "path": "carrier -> env1 -> env4 -> app" if args.via_env else "carrier -> gateway -> app",
        "gateway_cpu_s": cpu,
        "gateway_rss_mib": rss,
        "app_side_stored_states": states,
        "retried_by_reason": retried,
        "gateway_warnings": [
            sorted({x.split(": ", 1)[-1].strip()[:160] for x in log.lines if " WARNING " in x})[:8]
            for log in logs
        ],
    }
    print(json.dumps(report, indent=2))
    return 0 if summary["delivered"] == args.count and states.get("delivered") == args.count else 1


async def _load(args: argparse.Namespace, port: int) -> dict[str, object]:
    load = Load(args)
    first = time.monotonic_ns()
    seconds = await asyncio.wait_for(load.run(port, args.binds), args.timeout)
    for bind in load.binds:
        if bind.io is not None:
            bind.io.close()
    return {
        "first_ns": first,
        "seconds": seconds,
        "accepted": load.accepted,
        "refused": load.refused,
    }


if __name__ == "__main__":
    sys.exit(main())
