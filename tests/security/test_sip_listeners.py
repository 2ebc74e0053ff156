# Issue 15, SIP listeners: no lock-out by slow connections, by a REGISTER flood or by one app
# sending MESSAGEs without end. Real gateway processes, raw sockets as the attackers.
from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import socket
import threading
import time
import urllib.request

import pytest

from tests.interop.rawsip import RawUA
from tests.scenarios.carrier import Carrier
from tests.scenarios.conftest import JOHN_PW
from tests.scenarios.test_section1_carriers_to_apps import rows

BOB = ("2222", "111222444", "bob-Secret-2")
UDP_TCP = [{"transport": t, "host": "127.0.0.1", "port": 0} for t in ("udp", "tcp")]


def metric(gw, name: str, **labels: str) -> float:
    """One sample of the gateway's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.management_port}/metrics") as answer:
        text = answer.read().decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}(?:\{{{re.escape(wanted)}\}})? (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def rss_mib(gw) -> float:
    with open(f"/proc/{gw.process.pid}/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def closed(sock: socket.socket) -> bool:
    """Whether the gateway closed this connection (it is readable and reads nothing)."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def slow_connection(source: str, port: int) -> socket.socket:
    """A slowloris connection: connected from ``source``, a few octets of headers sent, and
    never more."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"REGISTER sip:env1.example.net SIP/2.0\r\nVia: SIP/2.0/TCP ")
    return sock


# -- (a) slow TCP connections ------------------------------------------------------------------

MAX_CONNECTIONS = 50
PER_ADDRESS = 20
REQUEST_TIMEOUT = 4


def test_slow_tcp_connections_do_not_lock_apps_out(make_env):
    """70 slowloris connections (sip.max_connections 50 + 20) from 127.0.0.2-6: one address
    holds at most max_connections_per_address (20), the table keeps room by closing the
    oldest connection that never authenticated, so an app over TCP registers and gets its
    MESSAGE; every slow connection is closed after sip.request_timeout, the app's is not."""
    sip = {
        "listen": UDP_TCP,
        "max_connections": MAX_CONNECTIONS,
        "max_connections_per_address": PER_ADDRESS,
        "request_timeout": f"{REQUEST_TIMEOUT}s",
    }
    gw = make_env(sip=sip).start()
    port = gw.sip_ports["tcp"]
    slow: list[socket.socket] = []
    try:
        # one address: 25 tried, 20 held, the 5 beyond the cap closed at once
        burst = [slow_connection("127.0.0.2", port) for _ in range(PER_ADDRESS + 5)]
        refused: list[socket.socket] = []
        deadline = time.monotonic() + 10
        while len(refused) < 5 and time.monotonic() < deadline:
            waiting = [s for s in burst if s not in refused]
            refused += [s for s in select.select(waiting, [], [], 0.2)[0] if closed(s)]
        assert len(refused) == 5
        slow += [s for s in burst if s not in refused]
        # four more addresses: 60 more slow connections, the table (50) overflows
        slow += [slow_connection(f"127.0.0.{n}", port) for n in (3, 4, 5, 6) for _ in range(15)]
        started = time.monotonic()

        async def app_served() -> tuple[int, str]:
            ua = await RawUA("tcp", ("127.0.0.1", port), domain=gw.domain).open()
            try:
                status = (await ua.register()).status
                with Carrier(gw.smpp_port) as tata:
                    assert (await asyncio.to_thread(tata.submit, "through the crowd")).status == 0
                    request = await ua.incoming(timeout=20)
                    ua.answer(request, 200)
                    # the slow ones are all closed after request_timeout; the app's is not
                    deadline = time.monotonic() + REQUEST_TIMEOUT + 10
                    while not all(closed(s) or s.fileno() < 0 for s in slow):
                        assert time.monotonic() < deadline, "slow connections still open"
                        await asyncio.sleep(0.1)  # polling sockets, not waiting for time
                    assert time.monotonic() - started >= REQUEST_TIMEOUT * 0.8
                    assert (await asyncio.to_thread(tata.submit, "still here")).status == 0
                    again = await ua.incoming(timeout=20)
                    ua.answer(again, 200)
                return status, request.body.decode() + "|" + again.body.decode()
            finally:
                ua.close()

        held_before = MAX_CONNECTIONS  # what the table held when the app came
        status, bodies = asyncio.run(app_served())
        assert status == 200
        assert bodies == "through the crowd|still here"
        evicted = metric(gw, "gateway_sip_connections_closed_total", reason="evicted")
        timed_out = metric(gw, "gateway_sip_connections_closed_total", reason="request_timeout")
        per_address = metric(gw, "gateway_sip_connections_closed_total", reason="per_address")
        # 20 + 60 slow ones admitted into 50 places, then the app: 31 evicted, oldest first
        assert evicted == len(slow) + 1 - held_before
        assert timed_out == held_before - 1  # the 49 still there when request_timeout came
        assert per_address == 5
        print(
            f"\nslowloris: {len(slow) + len(refused)} slow connections against max_connections"
            f" {MAX_CONNECTIONS}: {per_address:.0f} refused per address, {evicted:.0f} evicted,"
            f" {timed_out:.0f} closed at request_timeout; the app registered and got 2/2"
            f" MESSAGEs; fds of the gateway now {len(list_fds(gw))}"
        )
    finally:
        for sock in slow:
            sock.close()
        gw.stop()


def list_fds(gw) -> list[str]:
    return os.listdir(f"/proc/{gw.process.pid}/fd")


# -- (b) a REGISTER flood over UDP -------------------------------------------------------------

FLOOD = 20_000
FLOOD_RATE = 5_000  # datagrams per second, above what the node can answer (~3,000/s)
# the guard counts a datagram when the gateway reads it, so a limit bites only below what the
# node answers per second: on a 2-core machine shared with other tests that can be ~1,000/s,
# under the default's (2,000 per 2 s), hence a lower limit here
PIKE_LIMIT = 500


def flood_register(n: int) -> bytes:
    branch = f"z9hG4bK{n:08x}"
    return (
        f"REGISTER sip:env1.example.net SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.2:5099;branch={branch};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:1111@env1.example.net>;tag={n:x}\r\n"
        f"To: <sip:1111@env1.example.net>\r\n"
        f"Call-ID: flood-{n}\r\n"
        f"CSeq: 1 REGISTER\r\n"
        f"Contact: <sip:1111@127.0.0.2:5099>\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def test_udp_register_flood_from_one_address_is_dropped_and_apps_are_served(make_env):
    """20,000 REGISTERs at 5,000/s from 127.0.0.2 while an app at 127.0.0.1 registers again
    and again: the flooding address is blocked after sip.pike_limit (500 per 2 s) and the
    rest of its datagrams dropped unparsed (counted, logged once); every REGISTER of the app
    is answered; the gateway's memory stays put."""
    gw = make_env(sip={"listen": UDP_TCP, "pike_limit": PIKE_LIMIT}).start()
    port = gw.sip_ports["udp"]
    rss_before = rss_mib(gw)
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.2", 0))
    attacker.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    attacker.settimeout(0.5)
    answered = 0
    sent = 0
    done = threading.Event()

    def flood() -> None:
        nonlocal sent
        started = time.monotonic()
        for n in range(FLOOD):
            attacker.sendto(flood_register(n), ("127.0.0.1", port))
            sent += 1
            if n % 100 == 99:  # paced: FLOOD_RATE per second
                ahead = (n + 1) / FLOOD_RATE - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        done.set()

    def count_answers() -> None:
        nonlocal answered
        while True:
            try:
                attacker.recv(65536)
                answered += 1
            except TimeoutError:
                if done.is_set():
                    return

    threads = [threading.Thread(target=flood), threading.Thread(target=count_answers)]
    for thread in threads:
        thread.start()

    async def app_registers() -> list[float]:
        times = []
        # the app retransmits like any SIP UA over UDP: before the block the flood fills the
        # gateway's socket buffer and the kernel drops datagrams of every source alike
        ua = await RawUA("udp", ("127.0.0.1", port), domain=gw.domain, retransmit=True).open()
        try:
            while not done.is_set() or not times:
                began = time.monotonic()
                response = await ua.register()
                assert response.status == 200
                times.append(time.monotonic() - began)
                # paced like a busy app (~20 REGISTERs/s, 2 requests each with the challenge),
                # well under the pike limit: unpaced, a fast machine would have the app itself
                # exceed it and be blocked like the flooder
                await asyncio.sleep(0.05)
        finally:
            ua.close()
        return times

    try:
        times = asyncio.run(app_registers())
    finally:
        for thread in threads:
            thread.join(timeout=30)
        attacker.close()
    rss_after = rss_mib(gw)
    dropped = metric(gw, "gateway_sip_flood_dropped_total", transport="udp")
    gw.wait_for_log(r"127\.0\.0\.2 blocked for 60s")
    assert gw.log().count("127.0.0.2 blocked") == 1  # one line, not one per datagram
    # at most one pike interval's allowance of the flood got an answer (its 401s)
    assert answered <= PIKE_LIMIT + 50, answered
    assert dropped >= FLOOD / 2, dropped  # the rest: dropped unparsed (or by the kernel)
    assert len(times) >= 3  # the app kept registering through the flood
    assert rss_after - rss_before < 30, (rss_before, rss_after)
    print(
        f"\nUDP flood: {sent} REGISTERs at {FLOOD_RATE}/s from 127.0.0.2: {answered} answered,"
        f" {dropped:.0f} dropped unparsed; app at 127.0.0.1: {len(times)} REGISTERs all 200,"
        f" slowest {max(times) * 1000:.0f} ms; RSS {rss_before:.0f} -> {rss_after:.0f} MiB"
    )
    gw.stop()


def options(i: int) -> bytes:
    return (
        f"OPTIONS sip:env1.example.net SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.2:5999;branch=z9hG4bKflood{i}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@127.0.0.2>;tag=f{i}\r\n"
        "To: <sip:env1.example.net>\r\n"
        f"Call-ID: flood{i}@127.0.0.2\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_tcp_flood_from_one_address_closes_its_connections(make_env):
    """5,000 OPTIONS pipelined over one TCP connection from 127.0.0.2: past sip.pike_limit
    (500 per 2 s) the connection is closed and a new one from that address refused while it
    is blocked; an app over TCP from 127.0.0.1 is served meanwhile."""
    gw = make_env(sip={"listen": UDP_TCP, "pike_limit": PIKE_LIMIT}).start()
    port = gw.sip_ports["tcp"]
    flooder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    flooder.bind(("127.0.0.2", 0))
    flooder.connect(("127.0.0.1", port))
    flooder.settimeout(10)
    burst = b"".join(options(i) for i in range(5_000))
    answers = b""
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        flooder.sendall(burst)
    with contextlib.suppress(ConnectionResetError):
        while chunk := flooder.recv(65536):  # until the gateway closes it
            answers += chunk
    flooder.close()
    answered = answers.count(b"SIP/2.0 200 ")
    again = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    again.bind(("127.0.0.2", 0))
    again.connect(("127.0.0.1", port))
    again.settimeout(10)
    with contextlib.suppress(ConnectionResetError):
        again.sendall(options(0))
        assert again.recv(4096) == b""  # refused: the address is blocked
    again.close()

    async def app() -> int:
        ua = await RawUA("tcp", ("127.0.0.1", port), domain=gw.domain).open()
        try:
            return (await ua.register()).status
        finally:
            ua.close()

    assert asyncio.run(app()) == 200
    assert 0 < answered <= PIKE_LIMIT
    assert metric(gw, "gateway_sip_connections_closed_total", reason="flood") == 2
    assert metric(gw, "gateway_sip_flood_dropped_total", transport="tcp") >= 1
    print(f"\nTCP flood: 5000 OPTIONS on one connection: {answered} answered, then closed")
    gw.stop()


# -- (c) MESSAGE rate per account ----------------------------------------------------------------


@pytest.fixture
def rated(make_env):
    gw = make_env(
        accounts=[("1111", "111222333", JOHN_PW), BOB],
        sip={"message_rate": 1, "message_burst": 3},
    ).start()
    yield gw
    gw.stop()


def test_message_rate_per_account(rated):
    """sip.message_rate 1/s, burst 3: an app sending 12 MESSAGEs at once gets 503 with
    Retry-After beyond its burst (nothing stored for them); another app is served."""
    gw = rated
    port = gw.sip_ports["udp"]

    async def scenario() -> tuple[list, int, float]:
        john = await RawUA("udp", ("127.0.0.1", port), domain=gw.domain).open()
        bob = await RawUA(
            "udp", ("127.0.0.1", port), user=BOB[0], password=BOB[2], domain=gw.domain
        ).open()
        try:
            began = time.monotonic()
            answers = [await john.message("+964111222444", f"m{n}") for n in range(12)]
            elapsed = time.monotonic() - began
            other = (await bob.message("+964111222333", "bob's turn")).status
            return answers, other, elapsed
        finally:
            john.close()
            bob.close()

    answers, other, elapsed = asyncio.run(scenario())
    statuses = [a.status for a in answers]
    accepted = statuses.count(202)
    assert set(statuses) == {202, 503}, statuses
    assert 3 <= accepted <= 3 + int(elapsed) + 1, (statuses, elapsed)
    assert statuses[:3] == [202, 202, 202]
    for answer in answers:
        if answer.status == 503:
            assert int(answer.headers.get("retry-after")) >= 1
    assert other == 202
    stored = [r for r in rows(gw) if r["destination"] == "964111222444"]
    assert len(stored) == accepted  # the ones refused 503 were not stored
    assert metric(gw, "gateway_sip_messages_throttled_total") == statuses.count(503)
    print(f"\nMESSAGE rate: 12 sent in {elapsed:.2f} s: {statuses}; another app: {other}")


# -- responses are no flood ----------------------------------------------------------------------


def test_an_app_answering_many_messages_is_not_taken_for_a_flood(make_env):
    """sip.pike_limit 20 per 2 s: an app (UDP, 127.0.0.1) that answers 60 MESSAGEs 200 OK
    within a few seconds is not blocked, since its responses answer the gateway's own
    transactions; a flood guard counting them would drop its answers after the 20th."""
    gw = make_env(sip={"listen": UDP_TCP, "pike_limit": 20}).start()
    count = 60
    try:

        async def scenario() -> list[str]:
            ua = await RawUA("udp", ("127.0.0.1", gw.sip_ports["udp"]), domain=gw.domain).open()
            try:
                assert (await ua.register()).status == 200
                with Carrier(gw.smpp_port) as tata:
                    for n in range(count):
                        assert (await asyncio.to_thread(tata.submit, f"m{n}")).status == 0
                    got = []
                    for _ in range(count):
                        request = await ua.incoming(timeout=20)
                        ua.answer(request, 200)
                        got.append(request.body.decode())
                return got
            finally:
                ua.close()

        got = asyncio.run(scenario())
        # each came once, in order: the next one to a number waits for the previous outcome,
        # so none of the app's answers was dropped (a dropped 200 brings a retransmission)
        assert got == [f"m{n}" for n in range(count)]
        assert metric(gw, "gateway_sip_flood_dropped_total", transport="udp") == 0
    finally:
        gw.stop()
