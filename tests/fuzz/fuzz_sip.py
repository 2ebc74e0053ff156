# atheris harness: the SIP parser, then the transaction table and registrar, on arbitrary bytes.
"""Run (see README.md): ``python3 tests/fuzz/fuzz_sip.py -max_total_time=600 corpus/sip``

Invariants: only SipError escapes; a stream parser fed the same bytes in two pieces never
raises anything else either. The input, cut at each ``\\0\\0`` into up to 8 messages, then
goes through a transaction table (REGISTER, MESSAGE and OPTIONS, the requests the server
keeps transactions for, open server transactions answered 200,
responses go to client transactions) and a registrar (REGISTERs, for two accounts): only
SipError escapes, the table stays within its bound, every REGISTER gets a status and never
changes the other account's bindings."""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime, timedelta

import atheris

with atheris.instrument_imports():
    from gateway.sip.message import (
        DEFAULT_LIMITS,
        Request,
        SipError,
        StreamParser,
        build_response,
        parse_message,
    )
    from gateway.sip.registrar import Bindings
    from gateway.sip.transaction import ServerTransaction, TransactionTable

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def parse(data: bytes) -> None:
    with contextlib.suppress(SipError):
        parse_message(data)
    parser = StreamParser(DEFAULT_LIMITS)
    cut = len(data) // 2
    try:
        parser.feed(data[:cut])
        parser.feed(data[cut:])
    except SipError:
        pass


def serve(data: bytes) -> None:
    table, bindings, now = TransactionTable(limit=4), Bindings(max_contacts=3), T0
    for i, chunk in enumerate(data.split(b"\0\0")[:8]):
        now += timedelta(seconds=chunk[0] if chunk else 0)
        try:
            message = parse_message(chunk)
        except SipError:
            continue
        account, other = 1 + i % 2, 2 - i % 2
        try:
            if isinstance(message, Request):
                if message.method == "REGISTER":
                    before = bindings.held(other)
                    result = bindings.register(
                        account, "1111", message, transport="udp",
                        source=("192.0.2.1", 5060), now=now,
                    )  # fmt: skip
                    assert result.status == 200 or 400 <= result.status < 600, result
                    assert bindings.held(other) == before
                served = message.method in ("REGISTER", "MESSAGE", "OPTIONS")  # others: 405
                if served and table.on_request(message, now) is None:
                    tx = ServerTransaction(message, reliable=bool(i % 2), now=now)
                    table.add(tx)
                    table.respond(tx, build_response(message, 200, to_tag="fz"), now)
            else:
                table.on_response(message, now)
            table.expire(now)
        except SipError:
            pass
        assert len(table) <= table.limit


def one(data: bytes) -> None:
    parse(data)
    serve(data)


def main() -> None:
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
