# bench/smpp_load.py against a fake SMSC on port 0: counts, throttling, receipts, windows, timeouts.
from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.smpp_load import LoadOptions, Result, format_report, main, parse_args, percentiles, run
from gateway.smpp.codec import Framer, Pdu, SmppError, decode, encode, response
from gateway.smpp.constants import CommandId, Status
from gateway.smpp.text import decode_text

C = CommandId
BINDS = (C.BIND_TRANSCEIVER, C.BIND_TRANSMITTER)


@dataclass
class FakeSmsc:
    """What every connection of the fake shares. ``mode``: answer (normal), silent (never
    writes a byte), bind_only (binds answered, submit_sm never), refuse (binds refused),
    keep_bound (unbind never answered)."""

    mode: str = "answer"
    submits: int = 0
    binds: list[int] = field(default_factory=list)
    unbinds: int = 0
    deliver_resps: int = 0
    enquire_resps: int = 0
    submitted: list[Pdu] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    connections: list[SmscConnection] = field(default_factory=list)


class SmscConnection(asyncio.Protocol):
    def __init__(self, smsc: FakeSmsc) -> None:
        self.smsc = smsc
        self.framer = Framer()
        self.sequence = 0
        self.receipt_sent = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.smsc.connections.append(self)

    def send(self, pdu: Pdu) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(pdu))

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence

    def data_received(self, data: bytes) -> None:
        try:
            pdus = [decode(frame) for frame in self.framer.feed(data)]
        except SmppError as exc:  # the load generator sent something our codec refuses
            self.smsc.problems.append(repr(exc))
            return
        if self.smsc.mode != "silent":
            for pdu in pdus:
                self.handle(pdu)

    def handle(self, pdu: Pdu) -> None:
        smsc = self.smsc
        command_id = pdu.command_id
        if command_id in BINDS:
            smsc.binds.append(command_id)
            if smsc.mode == "refuse":
                self.send(response(pdu, Status.ESME_RBINDFAIL))
                return
            self.send(response(pdu, system_id="fake"))
            self.send(Pdu(C.ENQUIRE_LINK, self.next_sequence()))
        elif command_id == C.SUBMIT_SM:
            if smsc.mode == "bind_only":
                return
            smsc.submits += 1
            smsc.submitted.append(pdu)
            n = smsc.submits
            if n % 10 == 0:
                self.send(response(pdu, Status.ESME_RTHROTTLED))
            else:
                self.send(response(pdu, message_id=str(n)))
            if not self.receipt_sent:
                self.receipt_sent = True
                text = f"id:{n} sub:001 dlvrd:001 submit date:2611221200 done date:2611221200"
                receipt = {
                    "esm_class": 0x04,
                    "source_addr": pdu.params["destination_addr"],
                    "destination_addr": pdu.params["source_addr"],
                    "short_message": f"{text} stat:DELIVRD err:000 text:".encode(),
                }
                self.send(Pdu(C.DELIVER_SM, self.next_sequence(), 0, receipt))
        elif command_id == C.UNBIND:
            smsc.unbinds += 1
            if smsc.mode == "keep_bound":
                return
            self.send(response(pdu))
            assert self.transport is not None
            self.transport.close()
        elif command_id == C.DELIVER_SM_RESP:
            smsc.deliver_resps += 1
        elif command_id == C.ENQUIRE_LINK_RESP:
            smsc.enquire_resps += 1
        else:
            smsc.problems.append(f"unexpected {pdu!r}")


@asynccontextmanager
async def serving(smsc: FakeSmsc, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SmscConnection(smsc), "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for connection in smsc.connections:
            if connection.transport is not None:
                connection.transport.abort()
        await server.wait_closed()


def options(port: int, **overrides) -> LoadOptions:
    base = {"port": port, "system_id": "load", "password": "pw", "binds": 2, "window": 5}
    return LoadOptions(**(base | {"count": 200, "timeout": 30.0} | overrides))


async def load(smsc: FakeSmsc, server_tls: ssl.SSLContext | None = None, **overrides) -> Result:
    async with serving(smsc, server_tls) as port:
        # a hang fails the test instead of blocking it: run() must end by its own timeout
        return await asyncio.wait_for(run(options(port, **overrides)), 20)


def test_counts_accepted_throttled_receipts_and_latency():
    smsc = FakeSmsc()
    r = asyncio.run(load(smsc))

    assert (r.sent, r.responded, r.accepted, r.throttled) == (200, 200, 180, 20)
    assert r.rejected == {"ESME_RTHROTTLED": 20}
    assert r.receipts == 2 and r.other_deliver_sm == 0  # the fake sends one per bind
    assert r.bound == 2 and r.complete and not r.timed_out and r.error_count == 0
    lat = r.latency_ms
    assert lat is not None and 0 < lat.p50 <= lat.p90 <= lat.p99 <= lat.max
    assert r.elapsed > 0 and r.accepted_per_second > 0
    # the SMSC side saw well-formed traffic and every answer it asked for
    assert smsc.problems == []
    assert smsc.binds == [C.BIND_TRANSCEIVER] * 2 and smsc.unbinds == 2
    assert smsc.deliver_resps == 2 and smsc.enquire_resps == 2
    destinations = sorted(p.params["destination_addr"] for p in smsc.submitted)
    assert destinations == [f"964111{i:06d}" for i in range(1, 201)]
    first = smsc.submitted[0].params
    assert first["source_addr"] == "AsiaCell" and first["source_addr_ton"] == 5
    assert first["data_coding"] == 0 and first["registered_delivery"] == 0
    assert decode_text(first["short_message"], 0) == "Hello from the SMPP load generator"
    report = format_report(r)
    assert "accepted   180" in report and "ESME_RTHROTTLED 20" in report
    assert json.loads(json.dumps(r.to_dict()))["complete"] is True


def test_ucs2_fixed_destination_transmitter_bind():
    smsc = FakeSmsc()
    r = asyncio.run(
        load(
            smsc,
            binds=1,
            count=12,
            bind_type="tx",
            ucs2=True,
            text="مرحبا Hello",
            dest="9647701234567",
            source="9647800000001",
            registered_delivery=1,
            receipt_wait=0.2,
        )
    )
    assert r.complete and r.sent == 12 and r.accepted == 11 and r.throttled == 1
    assert r.receipts == 1 and r.errors == ("1 receipts for 11 accepted after --receipt-wait",)
    assert smsc.binds == [C.BIND_TRANSMITTER]
    for pdu in smsc.submitted:
        p = pdu.params
        assert p["destination_addr"] == "9647701234567" and p["data_coding"] == 8
        assert (p["source_addr_ton"], p["source_addr_npi"], p["registered_delivery"]) == (1, 1, 1)
        assert decode_text(p["short_message"], 8) == "مرحبا Hello"


def test_silent_server_ends_by_the_timeout_not_hanging():
    r = asyncio.run(load(FakeSmsc(mode="silent"), timeout=1.0))
    assert r.timed_out and not r.complete
    assert r.bound == 0 and r.sent == 0 and r.latency_ms is None
    assert "timed out after 1.0 s" in r.errors


def test_unanswered_submits_stop_at_the_window_and_time_out():
    r = asyncio.run(load(FakeSmsc(mode="bind_only"), timeout=1.0))
    assert r.timed_out and not r.complete
    assert r.bound == 2 and r.sent == 2 * 5 and r.responded == 0 and r.unanswered == 10
    assert "INCOMPLETE" in format_report(r)


def test_refused_bind_ends_at_once_incomplete():
    smsc = FakeSmsc(mode="refuse")
    r = asyncio.run(load(smsc, timeout=30.0))
    assert not r.timed_out and not r.complete and r.bound == 0 and r.sent == 0
    assert any("ESME_RBINDFAIL" in line for line in r.errors)


def test_missing_unbind_resp_is_reported_but_bounded():
    r = asyncio.run(load(FakeSmsc(mode="keep_bound"), count=20, unbind_timeout=0.2))
    assert r.complete and r.accepted == 18
    assert r.errors == ("no unbind_resp within 0.2 s on binds [0, 1]",)


def test_duration_with_rate_cap():
    r = asyncio.run(load(FakeSmsc(), count=None, duration=0.3, rate=100.0))
    assert r.complete and r.target is None and r.sent > 0
    # the token bucket never offers more than rate x time plus its 20 ms burst
    assert r.sent <= 100.0 * r.elapsed + 2 + 1


def _server_tls(tmp_path: Path) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_tls_with_a_self_signed_certificate(tmp_path):
    smsc = FakeSmsc()
    r = asyncio.run(load(smsc, _server_tls(tmp_path), tls=True, count=30))
    assert r.complete and r.accepted == 27 and r.receipts == 2 and smsc.unbinds == 2


def test_cli_prints_report_and_json_last_and_exits_zero(capsys):
    smsc = FakeSmsc()
    loop = asyncio.new_event_loop()
    port: Future[int] = Future()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        factory = loop.create_server(lambda: SmscConnection(smsc), "127.0.0.1", 0)
        server = loop.run_until_complete(factory)
        port.set_result(server.sockets[0].getsockname()[1])
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        argv = ["--port", str(port.result(10)), "--system-id", "load", "--password", "pw"]
        code = main([*argv, "--binds", "2", "--window", "5", "--count", "50", "--json"])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    result = json.loads(out[-1])
    assert result["complete"] is True and result["sent"] == 50 and result["throttled"] == 5
    assert set(result["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert any(line.startswith("accepted   45") for line in out)


def test_parse_args_defaults_and_refusals(capsys):
    opts, as_json = parse_args(["--port", "2775", "--system-id", "s", "--password", "p"])
    assert (opts.count, opts.duration, opts.timeout, opts.binds, opts.window) == (
        100_000,
        None,
        120.0,
        4,
        50,
    )
    assert not as_json
    opts, _ = parse_args(
        ["--port", "1", "--system-id", "s", "--password", "p", "--duration", "300"]
    )
    assert opts.count is None and opts.timeout == 330.0
    for bad in (
        ["--count", "0"],
        ["--count", "5", "--duration", "5"],
        ["--system-id", "a-system-id-too-long"],
        ["--text", "€" * 128],
        ["--dest-prefix", "96x"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(["--port", "1", "--system-id", "s", "--password", "p", *bad])
        assert exit_info.value.code == 2


def test_percentiles_nearest_rank():
    lat = percentiles([i / 1000 for i in range(100, 0, -1)])
    assert lat is not None and (lat.p50, lat.p90, lat.p99, lat.max) == (50.0, 90.0, 99.0, 100.0)
    assert percentiles([]) is None
