# Counts in words for people: "1 message", "2 messages", "1 CDR", "3 CDRs" (CLI and exports).
"""One rule for every count a person reads (gatewayctl output, PDF statements, notices): the
singular for exactly one, the plural otherwise, the number with thousands separators."""

from __future__ import annotations

IRREGULAR = {"entry": "entries", "is": "are", "was": "were", "has": "have"}
"""Plurals that are not the singular plus 's'."""


def plural(n: int, noun: str) -> str:
    """``noun`` as it goes with ``n``: ``message`` for 1, ``messages`` for 0 or 2."""
    if n == 1:
        return noun
    return IRREGULAR.get(noun, f"{noun}s")


def count(n: int, noun: str) -> str:
    """``1 message``, ``1,500 messages``, ``0 CDRs``."""
    return f"{n:,} {plural(n, noun)}"
