# Benchmark of SIP MESSAGE to registered apps: N users registered, windowed send_message load.
"""One command that measures what issue 4 targets on the SIP side: MESSAGE transactions to
registered apps completed per second with their latency, and the memory of the gateway
holding N registered TCP clients.

``python -m bench.sip_load --users 10000 --count 100000 --transport udp --window 500``
``python -m bench.sip_load --users 10000 --transport tcp --hold-only``

It writes a config in a temporary folder (SQLite store, one SIP listener on 127.0.0.1 port
0), runs ``gatewayctl init``, provisions N accounts with one ``gatewayctl apply``, then
starts the gateway's SIP side (BatchWriter + AccountDirectory + SipServer) in this process
and ``bench.sip_swarm`` as a separate process that registers the N users and answers every
MESSAGE with 200. The delivery pipeline that will call ``SipServer.send_message`` does not
exist yet, so this process calls it directly, round-robin over the users, keeping
``--window`` calls in flight, and times each call to its Outcome. Everything stays on
127.0.0.1 and is bounded by ``--count``, ``--duration`` and ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import logging
import os
import pstats
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from gateway.config import load_config
from gateway.sip.accounts import AccountDirectory, SipAccount
from gateway.sip.server import SipServer
from gateway.store.engine import make_engine
from gateway.store.writer import BatchWriter

DOMAIN = "bench.example.net"
PASSWORD = "bench-Secret-1"  # noqa: S105 - throwaway accounts of a temporary store
SENDER = "9647512345678"  # the SMS sender the MESSAGEs carry in From
TEXT = "bench message {n}: hello from the SMS side"


def raise_fd_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE raised to the hard limit; (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def memory(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process in MiB, from /proc."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                found[name] = int(value.split()[0]) / 1024
    return found


def set_udp_rcvbuf(server: SipServer, size: int) -> int:
    """An experiment, not what the gateway does: a larger receive buffer on the gateway's UDP
    socket (reached through a private attribute). The kernel caps it at 2 x rmem_max."""
    endpoint = server.transports._udp["*"]  # private: bench-only experiment
    assert endpoint.transport is not None
    sock = endpoint.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


def udp_receive_errors() -> int:
    """RcvbufErrors of the Udp line in /proc/net/snmp (datagrams dropped, whole machine)."""
    with open("/proc/net/snmp", encoding="ascii") as snmp:
        rows = [line.split() for line in snmp if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def tcp_kernel_mib() -> float:
    """Kernel memory of all TCP sockets of the machine (/proc/net/sockstat, pages)."""
    with open("/proc/net/sockstat", encoding="ascii") as sockstat:
        for line in sockstat:
            if line.startswith("TCP:"):
                words = line.split()
                return int(words[words.index("mem") + 1]) * resource.getpagesize() / 2**20
    return 0.0


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GcWatch:
    """Counts garbage collections by generation and the time they take (gc.callbacks)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = 0.0
        self._started = 0.0

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.count[generation] += 1
        self.seconds[generation] += took
        self.longest = max(self.longest, took)


def did_of(index: int) -> str:
    """A 9-digit national number of the 964 plan: 700000000, 700000001, ..."""
    return f"7{index:08d}"


def accounts_file(folder: Path, users: int, prefix: str) -> Path:
    """A ``gatewayctl apply`` file of ``users`` accounts ``<prefix>0``.. with one DID each."""
    sites = folder / "accounts.yaml"
    sites.write_text(
        yaml.safe_dump(
            {
                "customers": [{"name": "Bench"}],
                "products": [{"name": "Bench chat", "messaging": True}],
                "accounts": [
                    {
                        "id": f"{prefix}{i}",
                        "customer": "Bench",
                        "product": "Bench chat",
                        "password": PASSWORD,
                        "dids": [did_of(i)],
                    }
                    for i in range(users)
                ],
            }
        ),
        encoding="utf-8",
    )
    return sites


def provision(folder: Path, args: argparse.Namespace) -> tuple[Path, float]:
    """Config, ``gatewayctl init`` and one ``gatewayctl apply`` of N accounts."""
    config = folder / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "env": "bench",
                "database": f"sqlite:///{folder / 'gateway.db'}",
                "secret_key_file": str(folder / "gateway.key"),
                "numbering": {"country_code": "964", "national_prefix": "0"},
                "sip": {
                    "domain": DOMAIN,
                    "listen": [{"transport": args.transport, "host": "127.0.0.1", "port": 0}],
                    "max_connections": max(20_000, args.users + 100),
                    "max_transactions": 2_000_000,
                    # the swarm is one trusted source on loopback sending thousands of
                    # requests a second over up to N connections: exempt from the flood
                    # guard and the per-address connection cap, as an SBC would be
                    "trusted_networks": ["127.0.0.0/8"],
                },
                "log": {"level": "WARNING"},
            }
        ),
        encoding="utf-8",
    )
    sites = accounts_file(folder, args.users, args.prefix)
    ctl = ["gatewayctl", "--config", str(config)]
    subprocess.run([*ctl, "init"], check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run([*ctl, "apply", "-f", str(sites)], check=True, capture_output=True)
    return config, time.perf_counter() - started


@dataclass
class Report:
    transport: str
    users: int
    window: int
    udp_rcvbuf: int = 0
    udp_drops_register: int = 0
    udp_drops_send: int = 0
    provision_s: float = 0.0
    registered: int = 0
    register_s: float = 0.0
    register_line: str = ""
    bindings: int = 0
    connections: int = 0
    rss_started_mib: float = 0.0
    rss_registered_mib: float = 0.0
    swarm_rss_mib: float = 0.0
    tcp_kernel_mib: float = 0.0
    held_s: float = 0.0
    connections_after_hold: int = 0
    sent: int = 0
    completed: int = 0
    seconds: float = 0.0
    per_second: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    gateway_cpu_s: float = 0.0
    gc_collections: list[int] = field(default_factory=list)
    gc_seconds: list[float] = field(default_factory=list)
    gc_longest_ms: float = 0.0
    swarm_cpu_s: float = 0.0
    rss_end_mib: float = 0.0
    hwm_end_mib: float = 0.0
    transactions_left: int = 0
    server_stats: dict[str, int] = field(default_factory=dict)
    swarm_final: str = ""


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def read_line(stream: asyncio.StreamReader, want: str, timeout: float) -> str:
    """The first line of a child's output starting with ``want`` (event-driven, bounded);
    other lines are passed on to stderr."""
    async with asyncio.timeout(timeout):
        while True:
            raw = await stream.readline()
            if not raw:
                raise SystemExit(f"the child process exited before printing {want!r}")
            line = raw.decode().strip()
            if line.startswith(want):
                return line
            print(f"child: {line}", file=sys.stderr)


async def send_phase(
    server: SipServer, targets: list[SipAccount], args: argparse.Namespace, report: Report
) -> None:
    """``--count`` send_message calls round-robin over ``targets``, ``--window`` in flight."""
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    clock = time.perf_counter
    deadline = clock() + args.duration
    issued = 0
    count = args.count
    users = len(targets)

    async def worker() -> None:
        nonlocal issued
        while issued < count and clock() < deadline:
            n = issued
            issued += 1
            account = targets[n % users]
            started = clock()
            outcome = await server.send_message(
                account, from_user=SENDER, to_user=account.account_id, text=TEXT.format(n=n)
            )
            latencies.append(clock() - started)
            outcomes[f"{outcome.kind} {outcome.status}"] += 1

    began = clock()
    await asyncio.gather(*(worker() for _ in range(args.window)))
    report.seconds = clock() - began
    report.sent = issued
    report.completed = len(latencies)
    report.per_second = report.completed / report.seconds if report.seconds else 0.0
    latencies.sort()
    report.p50_ms = percentile(latencies, 0.50) * 1000
    report.p90_ms = percentile(latencies, 0.90) * 1000
    report.p99_ms = percentile(latencies, 0.99) * 1000
    report.max_ms = (latencies[-1] if latencies else 0.0) * 1000
    report.outcomes = dict(outcomes.most_common())


async def run(config_path: Path, args: argparse.Namespace, report: Report) -> None:
    loop = asyncio.get_running_loop()
    config = load_config(config_path)
    engine = make_engine(config.database)
    writer = BatchWriter(engine)
    writer.start(loop)
    directory = AccountDirectory(engine)
    directory.load()
    server = SipServer(config, engine, writer, directory)
    await server.start()
    bound = next(b for b in server.transports.bound if b.transport == args.transport)
    if args.udp_rcvbuf:
        report.udp_rcvbuf = set_udp_rcvbuf(server, args.udp_rcvbuf)
    report.rss_started_mib = memory()["VmRSS"]
    swarm = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sip_swarm",
        "--host",
        bound.host,
        "--port",
        str(bound.port),
        "--transport",
        args.transport,
        "--users",
        str(args.users),
        "--prefix",
        args.prefix,
        "--password",
        PASSWORD,
        "--domain",
        DOMAIN,
        "--algorithm",
        args.algorithm,
        "--concurrency",
        str(args.concurrency),
        "--sockets",
        str(args.sockets),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert swarm.stdout is not None and swarm.stdin is not None
    drops_before = udp_receive_errors()
    profiler: cProfile.Profile | None = None
    spy: asyncio.subprocess.Process | None = None
    try:
        started = time.perf_counter()
        report.register_line = await read_line(swarm.stdout, "registered", args.timeout)
        report.register_s = time.perf_counter() - started
        report.registered = int(report.register_line.split()[1])
        report.bindings = len(server.bindings)
        report.connections = server.transports.connections
        report.rss_registered_mib = memory()["VmRSS"]
        report.udp_drops_register = udp_receive_errors() - drops_before
        report.swarm_rss_mib = memory(swarm.pid)["VmRSS"]
        report.tcp_kernel_mib = tcp_kernel_mib()
        print(
            f"registered {report.registered} users in {report.register_s:.1f} s; "
            f"bindings {report.bindings}, connections {report.connections}, "
            f"gateway RSS {report.rss_registered_mib:.0f} MiB",
            file=sys.stderr,
            flush=True,
        )
        if args.hold_only and args.hold_seconds > 0:
            await asyncio.sleep(args.hold_seconds)  # the hold itself: nothing to wait for
            report.held_s = args.hold_seconds
            report.connections_after_hold = server.transports.connections
        if not args.hold_only:
            targets = [directory.by_name(f"{args.prefix}{i}") for i in range(args.users)]
            live = [a for a in targets if a is not None]
            if args.gc_freeze:
                gc.collect()
                gc.freeze()
            if args.gc_threshold:
                gc.set_threshold(*args.gc_threshold)
            if args.py_spy:
                spy = await asyncio.create_subprocess_exec(
                    "py-spy", "record", "--pid", str(os.getpid()), "--rate", "200",
                    "--format", args.py_spy_format, "--output", args.py_spy, "--nonblocking",
                    stdout=subprocess.PIPE,
                )  # fmt: skip
                assert spy.stdout is not None
                # py-spy says "Sampling process ..." once attached: the phase starts then
                await read_line(spy.stdout, "py-spy> Sampling", 30)
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
            drops_before = udp_receive_errors()
            cpu_before = cpu_seconds(), cpu_seconds(swarm.pid)
            with GcWatch() as watch:
                await asyncio.wait_for(send_phase(server, live, args, report), args.timeout)
            report.gc_collections = watch.count
            report.gc_seconds = [round(x, 3) for x in watch.seconds]
            report.gc_longest_ms = watch.longest * 1000
            report.gateway_cpu_s = cpu_seconds() - cpu_before[0]
            report.swarm_cpu_s = cpu_seconds(swarm.pid) - cpu_before[1]
            report.udp_drops_send = udp_receive_errors() - drops_before
            if profiler is not None:
                profiler.disable()
        report.rss_end_mib = memory()["VmRSS"]
        report.hwm_end_mib = memory()["VmHWM"]
        report.transactions_left = len(server.table)
        report.server_stats = dict(server.stats)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output and exits
            await asyncio.wait_for(spy.communicate(), 60)
        swarm.stdin.close()
        try:
            report.swarm_final = await read_line(swarm.stdout, "answered", 30)
        except (SystemExit, TimeoutError):
            swarm.kill()
        await swarm.wait()
        await server.close()
        await loop.run_in_executor(None, writer.close)
        engine.dispose()
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(args.profile_lines)
        stats.sort_stats("cumulative").print_stats(args.profile_lines)


def format_report(report: Report) -> str:
    lines = [
        f"transport  {report.transport}, {report.users} users, window {report.window}",
        f"provision  {report.provision_s:.1f} s (gatewayctl apply)",
        f"register   {report.registered} in {report.register_s:.1f} s; bindings "
        f"{report.bindings}, connections {report.connections}",
        f"memory     gateway RSS {report.rss_started_mib:.0f} MiB started, "
        f"{report.rss_registered_mib:.0f} MiB registered, {report.rss_end_mib:.0f} MiB end "
        f"(peak {report.hwm_end_mib:.0f}); swarm {report.swarm_rss_mib:.0f} MiB; kernel TCP "
        f"buffers {report.tcp_kernel_mib:.0f} MiB",
    ]
    if report.held_s:
        lines.append(
            f"hold       {report.connections_after_hold} connections still open after "
            f"{report.held_s:.0f} s"
        )
    if report.sent:
        lines += [
            f"messages   {report.completed}/{report.sent} in {report.seconds:.2f} s: "
            f"{report.per_second:,.0f} completed/s",
            f"latency ms p50 {report.p50_ms:.1f}  p90 {report.p90_ms:.1f}  "
            f"p99 {report.p99_ms:.1f}  max {report.max_ms:.1f}",
            "outcomes   " + ", ".join(f"{k}: {v}" for k, v in report.outcomes.items()),
            f"server     transactions left {report.transactions_left}, stats "
            f"{report.server_stats or '{}'}",
            f"cpu        gateway process {report.gateway_cpu_s:.1f} s, swarm "
            f"{report.swarm_cpu_s:.1f} s over {report.seconds:.1f} s of sending",
            f"gc         collections by generation {report.gc_collections}, seconds "
            f"{report.gc_seconds}, longest {report.gc_longest_ms:.0f} ms",
        ]
    if report.transport == "udp":
        lines.append(
            f"udp        datagrams dropped (machine-wide RcvbufErrors): "
            f"{report.udp_drops_register} registering, {report.udp_drops_send} sending; "
            f"gateway SO_RCVBUF {report.udp_rcvbuf or 'default'}"
        )
    lines.append(f"swarm      {report.swarm_final}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sip_load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=500, help="send_message calls in flight")
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--hold-only", action="store_true", help="register, measure, exit")
    parser.add_argument("--hold-seconds", type=float, default=0.0, help="with --hold-only")
    parser.add_argument("--duration", type=float, default=60.0, help="stop sending after this")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound of each phase")
    parser.add_argument("--prefix", default="u", help="account ids are PREFIX0..PREFIX<N-1>")
    parser.add_argument("--algorithm", choices=("SHA-256", "MD5"), default="SHA-256")
    parser.add_argument("--concurrency", type=int, default=200, help="registrations in flight")
    parser.add_argument("--sockets", type=int, default=4, help="UDP sockets the swarm shares")
    parser.add_argument(
        "--udp-rcvbuf", type=int, default=0, help="experiment: SO_RCVBUF of the gateway socket"
    )
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() before sending")
    parser.add_argument(
        "--gc-threshold",
        type=int,
        nargs=3,
        metavar=("G0", "G1", "G2"),
        help="experiment: gc.set_threshold before sending (default 700 10 10)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the send phase")
    parser.add_argument("--profile-lines", type=int, default=25)
    parser.add_argument("--py-spy", metavar="FILE", help="py-spy record the send phase")
    parser.add_argument("--py-spy-format", default="flamegraph", help="flamegraph|raw|speedscope")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--json", action="store_true", help="also print the report as JSON")
    args = parser.parse_args(argv)
    soft, _ = raise_fd_limit()
    if soft < args.users + 1000:
        raise SystemExit(f"RLIMIT_NOFILE is {soft}: too low for {args.users} users")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = Report(transport=args.transport, users=args.users, window=args.window)
    with tempfile.TemporaryDirectory(prefix="gw-sip-bench-") as tmp:
        config, report.provision_s = provision(Path(tmp), args)
        if args.no_uvloop:
            asyncio.run(run(config, args, report))
        else:
            import uvloop

            uvloop.run(run(config, args, report))
    print(format_report(report))
    if args.json:
        print(json.dumps(asdict(report)))
    complete = args.hold_only or report.completed == report.sent
    return 0 if report.registered == args.users and complete else 1


if __name__ == "__main__":
    sys.exit(main())
