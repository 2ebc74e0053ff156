# atheris harness: the SIP message parser (whole datagrams and TCP streams) on arbitrary bytes.
"""Run (see README.md): ``python3 tests/fuzz/fuzz_sip.py -max_total_time=600 corpus/sip``

Invariant: only SipError escapes; a stream parser fed the same bytes in two pieces never
raises anything else either."""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from gateway.sip.message import DEFAULT_LIMITS, SipError, StreamParser, parse_message


def one(data: bytes) -> None:
    with contextlib.suppress(SipError):
        parse_message(data)
    parser = StreamParser(DEFAULT_LIMITS)
    cut = len(data) // 2
    try:
        parser.feed(data[:cut])
        parser.feed(data[cut:])
    except SipError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
