# Loop protection between environments: the path of env names a forwarded message carries.
"""A message forwarded from one environment to another carries, in a vendor TLV (SMPP 3.4
§5.3.2 leaves 0x1400-0x3FFF to vendors), the names of the environments it has passed
through, in order: ``env1,env4``. An environment refuses a submission whose path already
names it (``GW_LOOP_DETECTED``) or that has passed through ``max_hops`` environments
(``GW_TOO_MANY_HOPS``), and a sender about to forward checks the same before sending. A
misconfigured pair of policies (env1 sends ``222%`` to env4, env4 sends it back) therefore
ends in a failure with a reason on the first return, never in ping-pong.

Pure functions; the path is ASCII env names (``[A-Za-z0-9_-]``, as the config allows)
joined by commas, at most 255 octets.
"""

from __future__ import annotations

import re

from gateway.smpp.codec import Pdu, SmppError
from gateway.smpp.constants import Status, VendorStatus

PATH_TAG = 0x1501
"""Vendor TLV holding the comma-separated env names a message passed through."""
UPSTREAM_TAG = 0x1502
"""Vendor TLV holding the message's id in the environment that forwarded it (ASCII digits),
so a trace can be followed back there (``gatewayctl messages show``)."""
MAX_PATH_OCTETS = 255
_UPSTREAM = re.compile(r"[0-9]{1,20}")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


def parse_path(text: str | None) -> tuple[str, ...]:
    """The env names of a stored or received path ('' or None: none)."""
    if not text:
        return ()
    names = tuple(text.split(","))
    if len(text) > MAX_PATH_OCTETS or not all(_NAME.fullmatch(n) for n in names):
        raise SmppError(Status.ESME_RINVOPTPARAMVAL, f"env path TLV {text[:64]!r} is malformed")
    return names


def read_path(pdu: Pdu) -> tuple[str, ...]:
    """The path a received submit_sm/deliver_sm carries; () when it has none."""
    raw = pdu.tlv(PATH_TAG)
    if raw is None:
        return ()
    try:
        text = raw.rstrip(b"\0").decode("ascii")
    except UnicodeDecodeError:
        raise SmppError(Status.ESME_RINVOPTPARAMVAL, "env path TLV is not ASCII") from None
    return parse_path(text)


def read_upstream(pdu: Pdu) -> str | None:
    """The forwarding environment's id of a received message; None when it carries none or
    one that is not 1-20 digits (a trace aid only: never a reason to refuse a message)."""
    raw = pdu.tlv(UPSTREAM_TAG)
    if raw is None:
        return None
    text = raw.rstrip(b"\0").decode("ascii", "replace")
    return text if _UPSTREAM.fullmatch(text) else None


def check_path(path: tuple[str, ...], env: str, max_hops: int) -> None:
    """Refuse a message arriving at (or about to be sent to) ``env`` along ``path``."""
    if env in path:
        raise SmppError(
            VendorStatus.GW_LOOP_DETECTED,
            f"routing loop: the message already passed through {env} ({' > '.join(path)})",
        )
    if len(path) >= max_hops:
        raise SmppError(
            VendorStatus.GW_TOO_MANY_HOPS,
            f"the message passed through {len(path)} environments ({' > '.join(path)}),"
            f" at most {max_hops} allowed",
        )


def extend(path: tuple[str, ...], env: str) -> str:
    """The path to send onwards from ``env``."""
    text = ",".join((*path, env))
    if len(text) > MAX_PATH_OCTETS:
        raise SmppError(VendorStatus.GW_TOO_MANY_HOPS, "env path longer than 255 octets")
    return text
