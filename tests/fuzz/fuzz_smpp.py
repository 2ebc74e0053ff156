# atheris harness: the SMPP framer, codec, text decoding and SMSC session on arbitrary bytes.
"""Run (see README.md): ``python3 tests/fuzz/fuzz_smpp.py -max_total_time=600 corpus/smpp``

Invariants: only our protocol errors escape (FrameError, PduError, TextError, SmppError); a
frame that decodes re-encodes to the same bytes; the session answers without raising."""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime, timedelta

import atheris

with atheris.instrument_imports():
    from gateway.smpp.codec import FrameError, Framer, PduError, SmppError, decode, encode
    from gateway.smpp.session import Session
    from gateway.smpp.text import TextError, decode_text, parse_udh

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    if mode == 0:  # framer + codec, fed in two pieces
        framer = Framer(max_length=4096)
        cut = len(payload) // 2
        try:
            for chunk in (payload[:cut], payload[cut:]):
                for frame in framer.feed(chunk):
                    try:
                        pdu = decode(frame)
                    except PduError:
                        continue
                    if encode(pdu) != frame:
                        raise AssertionError(f"re-encoding differs: {frame.hex()}")
        except FrameError:
            return
    elif mode == 1:  # text: every data_coding, with and without a UDH
        if not payload:
            return
        coding, body = payload[0], payload[1:]
        with contextlib.suppress(TextError):
            decode_text(body, coding)
        with contextlib.suppress(TextError):
            parse_udh(body)
    else:  # the SMSC session: unbound, then whatever comes
        session = Session(T0)
        try:
            session.receive_data(payload, T0 + timedelta(seconds=1))
            session.data_to_send()
        except SmppError:
            pass


def main() -> None:
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
