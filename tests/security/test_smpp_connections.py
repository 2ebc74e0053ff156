"""SMPP lock-out by connections (issue 15): half-open sockets before any bind, addresses no
carrier allows, file descriptors running out, and the limit raised at start.

A real gateway process; the floods are raw sockets, the legitimate carrier smpplib, from
127.0.0.x source addresses where two addresses are needed (all of 127/8 is loopback on
Linux). Figures are printed (``pytest -s``) for tests/reliability/README.md."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import resource
import select
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
import trustme
from click.testing import CliRunner

from gateway.smpp.codec import Pdu, encode
from gateway.smpp.constants import CommandId
from gateway.smpp.server import SmppServer
from tests.conftest import Ctl
from tests.interop.gateway_process import GatewayProcess
from tests.interop.inprocess import provisioned, run_smpp

LEGIT_PW = "legit-pw"
WAIT = 20.0  # seconds any awaited answer may take on a busy machine


# -- helpers ------------------------------------------------------------------------------------
def gateway(
    make_env: Callable[..., GatewayProcess], allow: str, *, also: str = "", **smpp: object
) -> GatewayProcess:
    """A provisioned gateway (not started) whose carrier LEGIT binds from ``allow`` (and
    carrier OTHER from ``also``, when given)."""
    gw = make_env(carrier=False, smpp=smpp)
    for name, network in (("LEGIT", allow), ("OTHER", also)):
        if network:
            gw.ctl.ok(  # type: ignore[attr-defined]
                "carrier", "add", name, "--system-id", name, "--password", LEGIT_PW,
                "--allow-ip", network,
            )  # fmt: skip
    return gw


def start_limited(
    gw: GatewayProcess, monkeypatch: pytest.MonkeyPatch, nofile: tuple[int, int]
) -> GatewayProcess:
    """Start ``gw`` with RLIMIT_NOFILE set to ``nofile`` (soft, hard) in the child only."""
    real_popen = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen:
        limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile)  # noqa: E731
        return real_popen(*args, preexec_fn=limit, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(subprocess, "Popen", popen)
        return gw.start()


def connect_from(port: int, source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def legit_client(port: int, source: str) -> smpplib.client.Client:
    """smpplib connected from ``source`` (its own socket, bound before the connect)."""
    client = smpplib.client.Client("127.0.0.1", port, timeout=WAIT, allow_unknown_opt_params=True)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(WAIT)
    raw.bind((source, 0))
    client._socket = raw  # smpplib connects the socket it was given
    client.connect()
    return client


def submit(client: smpplib.client.Client, text: bytes) -> Any:
    client.send_message(
        source_addr_ton=5, source_addr="Legit", dest_addr_ton=1, dest_addr_npi=1,
        destination_addr="964111222333", short_message=text,
    )  # fmt: skip
    return client.read_pdu()


def closed_unread(sock: socket.socket) -> bool:
    """The gateway closed ``sock`` (reset or EOF) without sending a byte."""
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def get(gw: GatewayProcess, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{gw.management_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def refused(gw: GatewayProcess) -> dict[str, float]:
    """gateway_smpp_connections_refused_total by reason."""
    _, body = get(gw, "/metrics")
    found = re.findall(r'^gateway_smpp_connections_refused_total\{reason="(\w+)"\} (\S+)$', body,
                       re.MULTILINE)  # fmt: skip
    return {reason: float(value) for reason, value in found}


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Ask ``check`` (a request to the gateway) until it holds; each answer is the event."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(0.2)


def settle(socks: list[socket.socket], closed: int, timeout: float = WAIT) -> list[socket.socket]:
    """Wait until ``closed`` of ``socks`` were closed by the gateway; return those still open."""
    deadline = time.monotonic() + timeout
    left, gone = list(socks), 0
    while gone < closed and time.monotonic() < deadline:
        readable, _, _ = select.select(left, [], [], max(0.0, deadline - time.monotonic()))
        for sock in readable:
            assert closed_unread(sock), "the gateway sent something to an unbound flood socket"
            left.remove(sock)
            sock.close()
            gone += 1
    assert gone == closed, f"{gone} of {len(socks)} flood sockets closed, expected {closed}"
    readable, _, _ = select.select(left, [], [], 0)
    assert not readable, "more flood sockets were closed than the caps require"
    return left


@contextlib.contextmanager
def held(socks: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


# -- (a) a flood of unbound connections ---------------------------------------------------------
def test_a_flood_of_unbound_connections_does_not_lock_out_a_carrier(make_env) -> None:
    flood, per_address, unknown = 300, 10, 50
    # 127.0.0.1 is allowed (OTHER's): only the per-address cap holds its flood back
    gw = gateway(make_env, "127.0.0.2/32", also="127.0.0.1/32").start()
    with held([connect_from(gw.smpp_port, "127.0.0.1") for _ in range(flood)]) as socks:
        # 290 reset at once, before a byte is read; 10 held, unbound, as the cap allows
        still_open = settle(socks, flood - per_address)
        assert len(still_open) == per_address
        # an address no carrier allows is closed at once too
        with held([connect_from(gw.smpp_port, "127.0.0.3") for _ in range(unknown)]) as strays:
            settle(strays, unknown)
        # meanwhile the carrier binds and submits from its address
        began = time.monotonic()
        legit = legit_client(gw.smpp_port, "127.0.0.2")
        legit.bind_transceiver(system_id="LEGIT", password=LEGIT_PW)
        bound_in = time.monotonic() - began
        assert [submit(legit, f"m{i}".encode()).status for i in range(5)] == [0] * 5
        legit.unbind()
        legit.disconnect()
        counts = refused(gw)
        assert counts == {"per_address": flood - per_address, "unknown_address": unknown}
        log = gw.log()
        # one line per address a minute, not one per connection
        assert len(re.findall(r"refused a connection from 127\.0\.0\.1:", log)) == 1
        assert len(re.findall(r"refused a connection from 127\.0\.0\.3:", log)) == 1
        assert "too many unbound connections from this address" in log
        assert "no carrier allows this address" in log
        print(
            f"\nflood: {flood} unbound connections from 127.0.0.1 ({per_address} held, "
            f"{flood - per_address} reset) and {unknown} from an unknown address; a carrier "
            f"bound in {bound_in * 1000:.0f} ms meanwhile and submitted 5/5; "
            f"{log.count('refused a connection')} log lines"
        )


def test_caps_in_all_the_bind_timeout_and_bound_carriers(make_env) -> None:
    """Per address and in all; places freed by the bind timeout; a bound carrier is no
    longer counted as unbound."""
    gw = gateway(make_env, "127.0.0.0/29", bind_timeout="1s", max_unbound_per_address=1,
                 max_unbound=2).start()  # fmt: skip
    first = connect_from(gw.smpp_port, "127.0.0.1")
    second = connect_from(gw.smpp_port, "127.0.0.1")
    third = connect_from(gw.smpp_port, "127.0.0.4")
    fourth = connect_from(gw.smpp_port, "127.0.0.5")
    assert closed_unread(second) and closed_unread(fourth)  # per address; in all
    # the first and third are closed by the bind timeout, having sent nothing
    assert closed_unread(first) and closed_unread(third)
    gw.wait_for_log("no bind within the bind timeout", count=2)
    assert refused(gw) == {"per_address": 1, "total": 1}
    # their places are free again: a carrier binds from 127.0.0.1 ...
    legit = legit_client(gw.smpp_port, "127.0.0.1")
    legit.bind_transceiver(system_id="LEGIT", password=LEGIT_PW)
    # ... and bound, it leaves the one unbound place of its address free
    another = connect_from(gw.smpp_port, "127.0.0.1")
    assert bind_answer(another)[4:8] == struct.pack(">I", CommandId.BIND_TRANSCEIVER_RESP)
    legit.unbind()
    legit.disconnect()
    for sock in (first, second, third, fourth, another):
        sock.close()


# -- (b) addresses no carrier allows --------------------------------------------------------------
BIND = encode(Pdu(CommandId.BIND_TRANSCEIVER, 1, 0, {
    "system_id": "LEGIT", "password": LEGIT_PW, "system_type": "", "interface_version": 0x34,
    "addr_ton": 0, "addr_npi": 0, "address_range": "",
}))  # fmt: skip


def bind_answer(sock: socket.socket) -> bytes:
    """What the gateway sends back to a bind (b"" when it closed without a word)."""
    try:
        sock.sendall(BIND)
        return sock.recv(4096)
    except (ConnectionResetError, BrokenPipeError):
        return b""


def test_an_address_no_carrier_allows_is_closed_before_any_pdu_is_read(make_env) -> None:
    gw = gateway(make_env, "127.0.0.2/32").start()
    for source in ("127.0.0.3", "127.0.0.1"):
        sock = connect_from(gw.smpp_port, source)
        assert bind_answer(sock) == b""  # no bind_resp, no generic_nack: nothing read
        sock.close()
        gw.wait_for_log(rf"refused a connection from {re.escape(source)}: no carrier allows")
    assert refused(gw) == {"unknown_address": 2.0}
    assert "bind refused" not in gw.log()  # the bind never reached the bind check
    sock = connect_from(gw.smpp_port, "127.0.0.2")  # the carrier's own address binds
    answer = bind_answer(sock)
    assert struct.unpack(">II", answer[4:12]) == (CommandId.BIND_TRANSCEIVER_RESP, 0)
    sock.close()


def test_unknown_addresses_reach_the_bind_check_when_refusal_is_off(make_env) -> None:
    gw = gateway(make_env, "127.0.0.2/32", refuse_unknown_addresses=False).start()
    sock = connect_from(gw.smpp_port, "127.0.0.3")
    answer = bind_answer(sock)  # answered: refused by the bind check, not at connect
    assert struct.unpack(">I", answer[4:8]) == (CommandId.BIND_TRANSCEIVER_RESP,)
    assert struct.unpack(">I", answer[8:12])[0] != 0
    sock.close()
    gw.wait_for_log("bind refused")
    assert "refused a connection" not in gw.log()


# -- (c) file descriptors -----------------------------------------------------------------------
def test_readyz_reports_file_descriptors_running_out(make_env, monkeypatch) -> None:
    limit, flood = 128, 200
    gw = gateway(make_env, "127.0.0.1/32", max_unbound_per_address=10_000, max_unbound=10_000)
    start_limited(gw, monkeypatch, (limit, limit))
    gw.wait_for_log(rf"file descriptors: limit {limit} \(the hard limit\)")
    assert get(gw, "/readyz")[0] == 200
    with held([connect_from(gw.smpp_port, "127.0.0.1") for _ in range(flood)]) as socks:
        gw.wait_for_log(r"refused a connection from 127\.0\.0\.1: near the file descriptor limit")
        status, body = get(gw, "/readyz")
        assert status == 503, body
        assert re.search(rf"fds: \d+ open of a limit of {limit}", body), body
        assert "near the limit" in body
        fds_open = int(re.search(r"fds: (\d+) open", body).group(1))  # type: ignore[union-attr]
        counts = refused(gw)
        assert counts.get("fd_limit", 0) > 0 and set(counts) == {"fd_limit"}
        assert len(socks) == flood
    # the flood gone, the node is ready again once the shortage is behind it
    wait_until(lambda: get(gw, "/readyz")[0] == 200, "/readyz back to 200", timeout=WAIT)
    print(
        f"\nfds: limit {limit}, flood {flood} connections: {fds_open} open at /readyz (503), "
        f"{int(counts['fd_limit'])} refused near the limit, ready again after the flood"
    )


# -- (d) the limit raised at start --------------------------------------------------------------
def test_serve_raises_the_file_descriptor_limit_and_logs_it(make_env, monkeypatch) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard <= 256:
        hard = 4096
    gw = gateway(make_env, "127.0.0.1/32")
    start_limited(gw, monkeypatch, (256, hard))
    gw.wait_for_log(rf"file descriptors: limit raised from 256 to {hard}")
    assert gw.process is not None
    limits = Path(f"/proc/{gw.process.pid}/limits").read_text(encoding="ascii")
    assert re.search(rf"Max open files\s+{hard}\s+{hard}", limits), limits


# -- the log of refusals, in the test's own event loop -------------------------------------------
def test_refusals_beyond_one_line_an_address_are_summed_up(tmp_path: Path) -> None:
    ctl = provisioned(tmp_path, f"sqlite:///{tmp_path / 'gateway.db'}")  # TATA: 127.0.0.1
    messages: list[str] = []

    async def scenario(server: SmppServer, port: int) -> None:
        server.refusals.every = 0.5  # a summary every half second instead of every minute
        summary = asyncio.Event()

        class Catch(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                messages.append(record.getMessage())
                if record.getMessage().startswith("smpp: in the last"):
                    summary.set()

        catch = Catch(logging.WARNING)
        logging.getLogger("gateway.smpp").addHandler(catch)
        try:
            for _ in range(30):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=("127.0.0.3", 0)
                )
                with contextlib.suppress(ConnectionResetError):
                    assert await reader.read(1) == b""  # closed unread
                writer.close()
            await asyncio.wait_for(summary.wait(), WAIT)
        finally:
            logging.getLogger("gateway.smpp").removeHandler(catch)

    run_smpp(ctl, scenario)
    assert len([m for m in messages if "refused a connection from 127.0.0.3" in m]) == 1
    summaries = [m for m in messages if m.startswith("smpp: in the last")]
    assert summaries == [
        "smpp: in the last 0.5s refused 30 connections (unknown_address 30) from 1 addresses;"
        " 29 of them not logged one by one"
    ]


def test_a_tls_handshake_never_made_is_closed_by_the_bind_timeout(tmp_path: Path) -> None:
    """On a TLS listener a connection is admitted once its handshake is done: a socket that
    never starts one is closed after smpp.bind_timeout (asyncio's default: 60 s)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    gw = GatewayProcess(tmp_path, f"sqlite:///{tmp_path / 'gateway.db'}",
                        smpp_tls=(str(cert_file), str(key_file)),
                        extra={"smpp": {"bind_timeout": "1s"}})  # fmt: skip
    gw.write_config()
    Ctl(gw.config, CliRunner()).ok("init")
    gw.start()
    try:
        silent = connect_from(gw.smpp_tls_port, "127.0.0.1")
        began = time.monotonic()
        assert closed_unread(silent)  # within WAIT, far below asyncio's 60 s
        print(f"\nTLS socket without a handshake closed after {time.monotonic() - began:.1f} s")
        silent.close()
    finally:
        gw.kill()
