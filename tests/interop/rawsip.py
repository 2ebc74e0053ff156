# The scripted SIP peer of exact-wire tests: the gateway's built-in test UA, as account 1111.
from __future__ import annotations

from dataclasses import dataclass

from gateway.sip.testua import DOMAIN, TestUA

__all__ = ["DOMAIN", "RawUA"]


@dataclass
class RawUA(TestUA):
    user: str = "1111"
    password: str = "john-Secret-1"  # the test account's (tests/interop/peers.py)
