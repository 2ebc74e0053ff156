# Best-effort error answers to SIP requests that did not parse (RFC 3261 §8.2, §21.4.1).
"""A request the parser refused still deserves its ``400 <reason>`` when the sender can
match it: the status line plus the Via, From, To, Call-ID and CSeq lines copied as they came
(RFC 3261 §8.2.6.2 needs nothing more). Anything that is not recognisably a request (a
response, or garbage) gets no answer: it is dropped and counted by the caller."""

from __future__ import annotations

import re

from gateway.sip.message import SipError

_REQUEST_LINE = re.compile(rb"[A-Za-z!%*_+`'~.\-]+ \S+ SIP/\d+\.\d+\r?$")
_COPIED = {
    b"via": b"Via", b"v": b"Via", b"from": b"From", b"f": b"From", b"to": b"To", b"t": b"To",
    b"call-id": b"Call-ID", b"i": b"Call-ID", b"cseq": b"CSeq",
}  # fmt: skip
MAX_SCANNED = 8192  # octets of the head looked at
MAX_LINE = 1024  # longer header lines are not copied back


def error_response(data: bytes, error: SipError) -> bytes | None:
    """The answer to a refused request, or None when none can be matched to it."""
    head = data[:MAX_SCANNED].split(b"\r\n\r\n", 1)[0]
    lines = head.lstrip(b"\r\n").split(b"\n")
    if not lines or not _REQUEST_LINE.match(lines[0]):
        return None
    if lines[0].split(b" ", 1)[0].upper() == b"ACK":
        return None  # never answered (§17.1.1.3)
    copied: list[bytes] = []
    has_via = False
    for raw in lines[1:]:
        line = raw.rstrip(b"\r")
        name, colon, value = line.partition(b":")
        label = _COPIED.get(name.strip().lower())
        if not colon or label is None or len(line) > MAX_LINE or b"\x00" in line:
            continue
        has_via = has_via or label == b"Via"
        copied.append(label + b": " + value.strip())
    if not has_via:
        return None  # nowhere to send it on a datagram, nothing to match it with
    reason = error.reason.encode("utf-8", "replace").replace(b"\r", b" ").replace(b"\n", b" ")
    start = b"SIP/2.0 %d %s" % (error.status, reason[:200])
    return b"\r\n".join([start, *copied, b"Content-Length: 0", b"", b""])
