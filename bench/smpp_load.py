# SMPP 3.4 ESME load generator: windowed submit_sm over N binds, submit->resp latency (§2.4, §4.4).
"""Play a carrier against an SMSC (our gateway) and measure what it accepts, how fast.

``python -m bench.smpp_load --port 2775 --system-id load --password pw --count 100000 --json``

Opens ``binds`` connections (bind_transceiver or bind_transmitter), then keeps at most
``window`` submit_sm unanswered on each (windowed pipelining, §2.7). Every submit_sm_resp is
counted by command_status and timed from the write of its submit_sm (``time.perf_counter``).
enquire_link from the SMSC is answered; deliver_sm is answered with deliver_sm_resp and
counted (receipts when esm_class says so, §5.2.12). When every submit is answered (or
``duration`` has passed and the in-flight ones are answered) each bind is unbound and its
unbind_resp awaited, bounded by ``unbind_timeout``. The whole run is bounded by ``timeout``;
then it reports what it has, incomplete.

Speed: submit_sm bodies are encoded once by our codec and only the header and the
destination_addr change per message; submit_sm_resp is read from its header alone. Every
other PDU goes through ``gateway.smpp.codec`` in full.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import ssl
import struct
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from time import perf_counter
from typing import Any, Literal, cast

from gateway.smpp.codec import (
    FrameError,
    Framer,
    Pdu,
    PduError,
    decode,
    encode,
    generic_nack,
    response,
)
from gateway.smpp.constants import RESPONSE_BIT, CommandId, Status
from gateway.smpp.text import TextError, encode_text

C = CommandId
_HEADER = struct.Struct(">IIII")
_SUBMIT_SM = int(C.SUBMIT_SM)
_SUBMIT_SM_RESP = int(C.SUBMIT_SM_RESP)
_GENERIC_NACK = int(C.GENERIC_NACK)
_BIND_COMMANDS = {"trx": C.BIND_TRANSCEIVER, "tx": C.BIND_TRANSMITTER}
_BIND_RESPS = frozenset((C.BIND_TRANSCEIVER_RESP, C.BIND_TRANSMITTER_RESP))
MAX_SEQUENCE = 0x7FFFFFFF
DEST_DIGITS = 12
"""A generated destination is the prefix and the counter zero-padded to this many digits."""
MAX_ERROR_LINES = 20
"""Error lines kept in a Result; past that they are only counted."""
CLOSE_GRACE = 1.0
"""Seconds a closed connection gets to finish before it is aborted."""
DEFAULT_TEXT = "Hello from the SMPP load generator"


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """One load run; the CLI options map 1:1 onto these fields."""

    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = ""
    password: str = ""
    binds: int = 4
    """Connections, each bound once."""
    window: int = 50
    """Most submit_sm unanswered at a time on one bind."""
    count: int | None = 100_000
    """Total submit_sm over all binds (None: until ``duration``)."""
    duration: float | None = None
    """Seconds of sending from the first submit (None: until ``count``)."""
    rate: float | None = None
    """Cap on the offered submit_sm per second, all binds together (None: as fast as answered)."""
    bind_type: Literal["trx", "tx"] = "trx"
    source: str = "AsiaCell"
    """source_addr; all digits -> TON 1/NPI 1 (international), else TON 5/NPI 0 (alphanumeric)."""
    dest_prefix: str = "964111"
    dest: str | None = None
    """A fixed destination_addr instead of prefix + counter."""
    text: str = DEFAULT_TEXT
    ucs2: bool = False
    """data_coding 8 (UCS-2) instead of 0 (GSM 03.38)."""
    registered_delivery: int = 0
    tls: bool = False
    """TLS without certificate verification (self-signed test certificates)."""
    timeout: float = 120.0
    """Bound on the whole run, connect to close; past it the result is incomplete."""
    unbind_timeout: float = 5.0
    receipt_wait: float = 0.0
    """With registered_delivery, seconds to wait after the last resp for receipts to catch up."""

    def check(self) -> None:
        """Raise ValueError naming the first option that cannot work."""
        if self.binds < 1 or self.window < 1:
            raise ValueError("--binds and --window must be at least 1")
        if self.count is None and self.duration is None:
            raise ValueError("give --count or --duration")
        if self.count is not None and self.count < 1:
            raise ValueError("--count must be at least 1")
        for name in ("duration", "rate", "timeout", "unbind_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        if self.receipt_wait < 0:
            raise ValueError("--receipt-wait must not be negative")
        if self.bind_type not in _BIND_COMMANDS:
            raise ValueError(f"--bind-type {self.bind_type!r} is not trx or tx")
        if self.registered_delivery not in (0, 1):
            raise ValueError("--registered-delivery must be 0 or 1")
        if self.dest is None:
            if not (self.dest_prefix.isascii() and self.dest_prefix.isdigit()):
                raise ValueError(f"--dest-prefix {self.dest_prefix!r} is not digits")
            width = max(DEST_DIGITS - len(self.dest_prefix), len(str(self.count or 10**8)))
            if len(self.dest_prefix) + width > 20:
                raise ValueError(f"--dest-prefix {self.dest_prefix!r} leaves no room to count")
        try:
            encode(_bind_pdu(self, 1))
        except PduError as exc:
            raise ValueError(f"bind: {exc}") from None
        _submit_parts(self)


@dataclass(frozen=True, slots=True)
class Latency:
    """submit_sm -> submit_sm_resp, milliseconds, nearest-rank percentiles."""

    p50: float
    p90: float
    p99: float
    max: float


@dataclass(frozen=True, slots=True)
class Result:
    """What one run measured; ``complete`` says every submit_sm got its resp."""

    binds: int
    bound: int
    window: int
    target: int | None
    sent: int
    responded: int
    accepted: int
    rejected: dict[str, int]
    throttled: int
    elapsed: float
    """Seconds from the first submit_sm written to the last resp read."""
    accepted_per_second: float
    latency_ms: Latency | None
    receipts: int
    other_deliver_sm: int
    timed_out: bool
    errors: tuple[str, ...]
    error_count: int
    loop: str

    @property
    def unanswered(self) -> int:
        return self.sent - self.responded

    @property
    def complete(self) -> bool:
        return (
            not self.timed_out
            and self.bound > 0
            and self.responded == self.sent
            and (self.target is None or self.sent == self.target)
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unanswered": self.unanswered, "complete": self.complete}


def status_name(status: int) -> str:
    try:
        return Status(status).name
    except ValueError:
        return f"0x{status:08x}"


def percentiles(samples: list[float]) -> Latency | None:
    """Nearest-rank p50/p90/p99/max of latencies in seconds, as milliseconds."""
    if not samples:
        return None
    ordered = sorted(samples)
    n = len(ordered)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * n) - 1)] * 1000, 3)

    return Latency(rank(50), rank(90), rank(99), round(ordered[-1] * 1000, 3))


def _bind_pdu(o: LoadOptions, sequence: int) -> Pdu:
    params = {"system_id": o.system_id, "password": o.password, "interface_version": 0x34}
    return Pdu(_BIND_COMMANDS[o.bind_type], sequence, 0, params)


def _submit_parts(o: LoadOptions) -> tuple[bytes, bytes]:
    """The submit_sm body before and after destination_addr (whose NUL starts the second)."""
    data_coding = 8 if o.ucs2 else 0
    try:
        short_message = encode_text(o.text, data_coding)
    except TextError as exc:
        raise ValueError(f"--text: {exc}") from None
    if len(short_message) > 254:
        raise ValueError(f"--text is {len(short_message)} octets, one submit_sm holds 254")
    numeric = o.source.isascii() and o.source.isdigit()
    params = {
        "source_addr_ton": 1 if numeric else 5,
        "source_addr_npi": 1 if numeric else 0,
        "source_addr": o.source,
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "registered_delivery": o.registered_delivery,
        "data_coding": data_coding,
        "short_message": short_message,
    }
    try:
        wire = encode(Pdu(C.SUBMIT_SM, 1, 0, params))
        if o.dest is not None:
            encode(Pdu(C.SUBMIT_SM, 1, 0, {**params, "destination_addr": o.dest}))
    except PduError as exc:
        raise ValueError(f"submit_sm: {exc}") from None
    at = 16 + 1 + 2 + len(o.source.encode("latin-1")) + 1 + 2  # service_type, source, TON/NPI
    head, tail = wire[16:at], wire[at:]
    sample = decode(
        _HEADER.pack(16 + len(head) + 3 + len(tail), _SUBMIT_SM, 0, 1) + head + b"123" + tail
    )
    if (
        sample.params["destination_addr"] != "123"
        or sample.params["short_message"] != short_message
    ):
        raise RuntimeError("submit_sm template does not match the codec's field layout")
    return head, tail


class _Run:
    """What the binds of one run share: the work handed out, the pacing and the counters."""

    def __init__(self, options: LoadOptions, loop: asyncio.AbstractEventLoop) -> None:
        self.options = options
        self.loop = loop
        self.head, self.tail = _submit_parts(options)
        self.fixed_dest = options.dest.encode("latin-1") if options.dest is not None else None
        self.prefix = options.dest_prefix.encode("ascii")
        self.width = max(1, DEST_DIGITS - len(self.prefix))
        self.window = options.window
        self.count = options.count
        self.rate = options.rate
        self.burst = max(1.0, (options.rate or 0) / 50)  # 20 ms of traffic at most at once
        self.tokens = self.burst
        self.token_time = 0.0
        self.sending = False
        self.sent = 0
        self.responded = 0
        self.inflight = 0
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.receipts = 0
        self.other_deliver_sm = 0
        self.first_submit: float | None = None
        self.last_resp: float | None = None
        self.bound = 0
        self.timed_out = False
        self.errors: list[str] = []
        self.error_count = 0
        self.done = asyncio.Event()
        self.receipts_in = asyncio.Event()
        self.stop_timer: asyncio.TimerHandle | None = None

    def error(self, line: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERROR_LINES:
            self.errors.append(line)

    def start(self) -> None:
        self.sending = True
        self.token_time = perf_counter()
        if self.options.duration is not None:
            self.stop_timer = self.loop.call_later(self.options.duration, self.stop_sending)

    def stop_sending(self) -> None:
        self.sending = False
        self.check_done()

    def check_done(self) -> None:
        if not self.sending and self.inflight <= 0:
            self.done.set()
            self.check_receipts()

    def check_receipts(self) -> None:
        if self.done.is_set() and self.receipts >= self.statuses[0]:
            self.receipts_in.set()

    def claim(self, now: float, want: int) -> int:
        """How many submit_sm a bind may write now (at most ``want``); counts them as sent."""
        if not self.sending:
            return 0
        if self.count is not None:
            want = min(want, self.count - self.sent)
        if self.rate:
            self.tokens = min(self.burst, self.tokens + (now - self.token_time) * self.rate)
            self.token_time = now
            want = min(want, int(self.tokens))
            self.tokens -= want
        if want <= 0:
            return 0
        if self.first_submit is None:
            self.first_submit = now
        self.sent += want
        self.inflight += want
        if self.count is not None and self.sent >= self.count:
            self.sending = False
        return want

    def lost(self, unanswered: int) -> None:
        self.inflight -= unanswered
        self.check_done()

    def result(self) -> Result:
        elapsed = 0.0
        if self.first_submit is not None and self.last_resp is not None:
            elapsed = self.last_resp - self.first_submit
        accepted = self.statuses[0]
        rejected = {status_name(s): n for s, n in sorted(self.statuses.items()) if s != 0}
        return Result(
            binds=self.options.binds,
            bound=self.bound,
            window=self.window,
            target=self.count,
            sent=self.sent,
            responded=self.responded,
            accepted=accepted,
            rejected=rejected,
            throttled=self.statuses[Status.ESME_RTHROTTLED],
            elapsed=round(elapsed, 6),
            accepted_per_second=round(accepted / elapsed, 1) if elapsed > 0 else 0.0,
            latency_ms=percentiles(self.latencies),
            receipts=self.receipts,
            other_deliver_sm=self.other_deliver_sm,
            timed_out=self.timed_out,
            errors=tuple(self.errors),
            error_count=self.error_count,
            loop=type(self.loop).__module__.split(".")[0],
        )


def _refusal(command_id: int, sequence: int, status: int) -> Pdu:
    """The answer to a request we refuse: its own _resp, or generic_nack if it has none."""
    try:
        return response(Pdu(command_id, sequence), status)
    except ValueError:
        return generic_nack(sequence, status)


class _Bind(asyncio.Protocol):
    """One ESME connection: bind, windowed submit_sm, answers to the SMSC, unbind."""

    def __init__(self, run: _Run, index: int) -> None:
        self.run = run
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.framer = Framer()
        self.sequence = 0
        self.bind_sequence = 0
        self.inflight: dict[int, float] = {}
        self.live = False
        self.wake: asyncio.TimerHandle | None = None
        loop = run.loop
        self.bound: asyncio.Future[int | None] = loop.create_future()
        self.unbound: asyncio.Future[bool] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.live = False
        if self.wake is not None:
            self.wake.cancel()
            self.wake = None
        if not self.bound.done():
            self.bound.set_result(None)
        if not self.unbound.done():
            self.unbound.set_result(False)
        if not self.closed.done():
            self.closed.set_result(None)
        if self.inflight:
            self.run.error(
                f"bind {self.index}: connection lost with {len(self.inflight)} submit_sm"
                f" unanswered{f' ({exc})' if exc else ''}"
            )
            self.run.lost(len(self.inflight))
            self.inflight.clear()

    def data_received(self, data: bytes) -> None:
        bad: FrameError | None = None
        try:
            frames = self.framer.feed(data)
        except FrameError as exc:
            frames, bad = exc.frames, exc
        run = self.run
        inflight = self.inflight
        latencies = run.latencies
        statuses = run.statuses
        now = perf_counter()
        answered = 0
        for frame in frames:
            _, command_id, status, sequence = _HEADER.unpack_from(frame)
            if command_id == _SUBMIT_SM_RESP or (
                command_id == _GENERIC_NACK and sequence in inflight
            ):
                sent_at = inflight.pop(sequence, None)
                if sent_at is None:
                    run.error(f"bind {self.index}: submit_sm_resp for unknown sequence {sequence}")
                    continue
                latencies.append(now - sent_at)
                statuses[status] += 1
                answered += 1
            else:
                self._handle(frame)
        if answered:
            run.responded += answered
            run.inflight -= answered
            run.last_resp = now
            self.pump()
            if not run.sending:
                run.check_done()
        if bad is not None and self.transport is not None:
            run.error(f"bind {self.index}: {bad}")
            self._send(generic_nack(0, bad.status))
            self.transport.abort()

    # -- sending ---------------------------------------------------------------------------
    def _send(self, pdu: Pdu) -> None:
        if self.transport is not None:
            self.transport.write(encode(pdu))

    def _next_sequence(self) -> int:
        self.sequence = self.sequence % MAX_SEQUENCE + 1
        return self.sequence

    async def bind(self) -> int | None:
        """Send the bind; its command_status, or None when the connection went first."""
        self.bind_sequence = self._next_sequence()
        self._send(_bind_pdu(self.run.options, self.bind_sequence))
        return await self.bound

    def unbind(self) -> None:
        self.live = False
        self._send(Pdu(C.UNBIND, self._next_sequence()))

    def close(self, *, abort: bool = False) -> None:
        self.live = False
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def _wake_up(self) -> None:
        self.wake = None
        self.pump()

    def pump(self) -> None:
        """Fill the window with as many submit_sm as the run still grants."""
        if not self.live or self.wake is not None or self.transport is None:
            return
        run = self.run
        free = run.window - len(self.inflight)
        if free <= 0:
            return
        now = perf_counter()
        n = run.claim(now, free)
        if n:
            self._write_submits(run.sent - n, n, now)
        if n < free and run.sending and run.rate:
            delay = max(0.001, (1 - run.tokens) / run.rate)
            self.wake = run.loop.call_later(delay, self._wake_up)

    def _write_submits(self, done: int, n: int, now: float) -> None:
        run = self.run
        head, tail, pack = run.head, run.tail, _HEADER.pack
        fixed, prefix, width = run.fixed_dest, run.prefix, run.width
        fixed_length = 16 + len(head) + len(tail)
        inflight = self.inflight
        sequence = self.sequence
        out: list[bytes] = []
        append = out.append
        for counter in range(done + 1, done + n + 1):
            sequence = sequence % MAX_SEQUENCE + 1
            dest = fixed if fixed is not None else b"%s%0*d" % (prefix, width, counter)
            append(pack(fixed_length + len(dest), _SUBMIT_SM, 0, sequence))
            append(head)
            append(dest)
            append(tail)
            inflight[sequence] = now
        self.sequence = sequence
        assert self.transport is not None
        self.transport.write(b"".join(out))

    # -- everything but submit_sm_resp -------------------------------------------------------
    def _handle(self, frame: bytes) -> None:
        run = self.run
        try:
            pdu = decode(frame)
        except PduError as exc:
            run.error(f"bind {self.index}: {exc}")
            if exc.command_id in _BIND_RESPS and not self.bound.done():
                self.bound.set_result(exc.status)
            elif not exc.command_id & RESPONSE_BIT:
                self._send(_refusal(exc.command_id, exc.sequence, exc.status))
            return
        command_id = pdu.command_id
        if command_id == C.ENQUIRE_LINK:
            self._send(response(pdu))
        elif command_id == C.DELIVER_SM:
            self._send(response(pdu))
            if pdu.params.get("esm_class", 0) & 0x3C == 0x04:  # SMSC delivery receipt
                run.receipts += 1
                run.check_receipts()
            else:
                run.other_deliver_sm += 1
        elif command_id in _BIND_RESPS or (
            command_id == C.GENERIC_NACK and pdu.sequence == self.bind_sequence
        ):
            if not self.bound.done():
                self.bound.set_result(pdu.status)
        elif command_id == C.UNBIND_RESP:
            if not self.unbound.done():
                self.unbound.set_result(True)
        elif command_id == C.UNBIND:
            run.error(f"bind {self.index}: the SMSC unbound")
            self._send(response(pdu))
            self.close()
        elif command_id & RESPONSE_BIT:
            run.error(f"bind {self.index}: unexpected {pdu!r}")
        else:
            run.error(f"bind {self.index}: refused {pdu.name} from the SMSC")
            self._send(_refusal(command_id, pdu.sequence, Status.ESME_RINVBNDSTS))


def _client_ssl() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # self-signed test certificates: --tls says so
    return context


async def _open(run: _Run, bind: _Bind) -> bool:
    o = run.options
    context = _client_ssl() if o.tls else None
    try:
        await run.loop.create_connection(lambda: bind, o.host, o.port, ssl=context)
    except OSError as exc:
        reason = str(exc) or type(exc).__name__
        run.error(f"bind {bind.index}: connect to {o.host}:{o.port}: {reason}")
        return False
    status = await bind.bind()
    if status == 0:
        return True
    reason = "connection closed" if status is None else status_name(status)
    run.error(f"bind {bind.index}: bind_{o.bind_type} refused: {reason}")
    bind.close()
    return False


async def _drive(run: _Run, binds: list[_Bind]) -> None:
    o = run.options
    binds.extend(_Bind(run, i) for i in range(o.binds))
    opened = await asyncio.gather(*(_open(run, b) for b in binds))
    live = [b for b, ok in zip(binds, opened, strict=True) if ok]
    run.bound = len(live)
    if not live:
        return
    run.start()
    for b in live:
        b.live = True
        b.pump()
    await run.done.wait()
    if o.registered_delivery and o.receipt_wait > 0:
        try:
            async with asyncio.timeout(o.receipt_wait):
                await run.receipts_in.wait()
        except TimeoutError:
            run.error(
                f"{run.receipts} receipts for {run.statuses[0]} accepted after --receipt-wait"
            )
    still = [b for b in live if b.transport is not None]
    for b in still:
        b.unbind()
    if still:
        await asyncio.wait([b.unbound for b in still], timeout=o.unbind_timeout)
        late = [b.index for b in still if not b.unbound.done()]
        if late:
            run.error(f"no unbind_resp within {o.unbind_timeout} s on binds {late}")


async def run(options: LoadOptions) -> Result:
    """One load run against ``options.host:port``, ended by ``options.timeout`` at the latest
    (plus ``CLOSE_GRACE`` to close). Raises ValueError for options that cannot work."""
    options.check()
    loop = asyncio.get_running_loop()
    state = _Run(options, loop)
    binds: list[_Bind] = []
    try:
        async with asyncio.timeout(options.timeout) as deadline:
            await _drive(state, binds)
    except TimeoutError:
        if not deadline.expired():
            raise
        state.timed_out = True
        state.error(f"timed out after {options.timeout} s")
    finally:
        if state.stop_timer is not None:
            state.stop_timer.cancel()
        for b in binds:
            b.close(abort=state.timed_out)
    closing = [b.closed for b in binds if not b.closed.done()]
    if closing:
        await asyncio.wait(closing, timeout=CLOSE_GRACE)
        for b in binds:
            b.close(abort=True)
    return state.result()


def format_report(r: Result) -> str:
    """The human-readable report of a run."""
    rejected = ", ".join(f"{name} {n}" for name, n in r.rejected.items()) or "none"
    lat = r.latency_ms
    latency = f"p50 {lat.p50}  p90 {lat.p90}  p99 {lat.p99}  max {lat.max}" if lat else "none"
    if r.complete:
        verdict = "complete: every submit_sm answered"
    else:
        why = ["timed out"] if r.timed_out else []
        if r.unanswered:
            why.append(f"{r.unanswered} submit_sm unanswered")
        if r.target is not None and r.sent < r.target:
            why.append(f"{r.target - r.sent} of {r.target} never sent")
        if r.bound == 0:
            why.append("no bind")
        verdict = "INCOMPLETE: " + (", ".join(why) or "see errors")
    lines = [
        f"binds      {r.bound} of {r.binds} bound, window {r.window} (event loop: {r.loop})",
        f"sent       {r.sent} submit_sm, {r.responded} answered",
        f"accepted   {r.accepted}",
        f"rejected   {rejected}",
        f"throttled  {r.throttled}",
        f"elapsed    {r.elapsed:.3f} s (first submit_sm to last resp)",
        f"rate       {r.accepted_per_second:.1f} accepted/s",
        f"latency ms {latency}",
        f"receipts   {r.receipts} (other deliver_sm {r.other_deliver_sm})",
        f"result     {verdict}",
    ]
    if r.error_count:
        lines.append(f"errors     {r.error_count}:")
        lines += [f"  {line}" for line in r.errors]
        if r.error_count > len(r.errors):
            lines.append(f"  ... {r.error_count - len(r.errors)} more")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.smpp_load",
        description="SMPP 3.4 ESME load generator: windowed submit_sm over several binds.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--system-id", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--binds", type=int, default=4, help="connections (default 4)")
    p.add_argument("--window", type=int, default=50, help="unanswered submit_sm per bind")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("--count", type=int, help="total submit_sm (default 100000)")
    amount.add_argument("--duration", type=float, help="seconds of sending instead of --count")
    p.add_argument("--rate", type=float, help="cap on offered submit_sm/s over all binds")
    p.add_argument("--bind-type", choices=("trx", "tx"), default="trx")
    p.add_argument("--source", default="AsiaCell", help="source_addr (default AsiaCell)")
    to = p.add_mutually_exclusive_group()
    to.add_argument(
        "--dest-prefix",
        default="964111",
        help=f"destination = prefix + counter, {DEST_DIGITS} digits in all (default 964111)",
    )
    to.add_argument("--dest", help="one fixed destination_addr")
    p.add_argument("--text", default=DEFAULT_TEXT, help="short_message text (GSM 03.38)")
    p.add_argument("--ucs2", action="store_true", help="send the text as UCS-2 (data_coding 8)")
    p.add_argument("--registered-delivery", type=int, choices=(0, 1), default=0)
    p.add_argument("--receipt-wait", type=float, default=0.0, help="seconds to await receipts")
    p.add_argument("--tls", action="store_true", help="TLS, certificate not verified")
    p.add_argument(
        "--timeout", type=float, help="bound on the whole run (default 120 s, or duration + 30)"
    )
    p.add_argument("--unbind-timeout", type=float, default=5.0)
    p.add_argument("--json", action="store_true", help="also print the result as a JSON line")
    return p


_OPTION_NAMES = frozenset(f.name for f in fields(LoadOptions))


def parse_args(argv: Sequence[str] | None = None) -> tuple[LoadOptions, bool]:
    """Command-line arguments -> (options, JSON wanted); exits with a usage error if invalid."""
    parser = _parser()
    a = parser.parse_args(argv)
    given = {k: v for k, v in vars(a).items() if k in _OPTION_NAMES}
    if a.count is None and a.duration is None:
        given["count"] = 100_000
    if a.timeout is None:
        given["timeout"] = max(120.0, (a.duration or 0) + 30)
    options = LoadOptions(**given)
    try:
        options.check()
    except ValueError as exc:
        parser.error(str(exc))
    return options, a.json


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: run, print the report (and the JSON line); 0 when every submit was answered."""
    options, as_json = parse_args(argv)
    try:
        import uvloop  # optional: faster where installed

        loop_factory: Any = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(run(options))
    print(format_report(result))
    if as_json:
        print(json.dumps(result.to_dict(), sort_keys=True))
    return 0 if result.complete else 1


if __name__ == "__main__":
    sys.exit(main())
