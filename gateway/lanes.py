# Which lane a message takes: verification codes and priority_flag > 0 before bulk campaigns.
"""Pure classification of an accepted message into the ``priority`` or the ``bulk`` lane.

A message goes to the priority lane when any of these holds:

- the sender gave it SMPP ``priority_flag`` > 0;
- its sender is one of the configured verification services (``delivery.verification_senders``:
  source addresses compared without case, ``*`` matching any run of characters, so
  ``Viber`` or ``Google*``);
- it looks like a verification code: at most ``delivery.verification_max_length`` characters,
  a run of 4-8 digits standing alone, and one of ``delivery.verification_keywords`` (``code``,
  ``OTP``, ``رمز``, ... compared without case).

Everything else is bulk. The rule is deliberately conservative: a campaign text with a price
or a year and no keyword stays bulk.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.queue import Lane

CODE = re.compile(r"(?<![0-9])[0-9]{4,8}(?![0-9])")


@dataclass(frozen=True, slots=True)
class LaneRules:
    senders: tuple[re.Pattern[str], ...]
    keywords: tuple[str, ...]
    max_length: int

    @classmethod
    def build(cls, senders: Iterable[str], keywords: Iterable[str], max_length: int) -> LaneRules:
        patterns = tuple(
            re.compile(fnmatch.translate(s.casefold()), re.DOTALL) for s in senders if s
        )
        return cls(patterns, tuple(k.casefold() for k in keywords if k), max_length)

    def lane(self, *, source: str, text: str | None, priority: int) -> Lane:
        if priority > 0:
            return "priority"
        sender = source.casefold()
        if any(p.match(sender) for p in self.senders):
            return "priority"
        if text is not None and len(text) <= self.max_length and CODE.search(text):
            folded = text.casefold()
            if any(k in folded for k in self.keywords):
                return "priority"
        return "bulk"
