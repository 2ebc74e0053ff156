# Recipient patterns: a SQL-LIKE subset over E.164 digits, looked up through a digit trie.
"""Recipient patterns such as ``222%`` (Mauritania) or ``96477_______`` and their lookup.

A pattern is written over the stored E.164 digits (no '+'):

* a digit matches itself, ``_`` matches exactly one digit;
* an optional single trailing ``%`` matches any digits, including none;
* ``%`` alone is the catch-all.

When several patterns match a number, the most specific comes first (:func:`specificity`):
an exact pattern (no ``%``) before a wildcard one, more fixed positions before fewer, and a
fixed digit before ``_`` at the first position where they differ.  Among equally specific
patterns the LOWER priority number is preferred, then the one given first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from gateway.errors import InvalidInput

MAX_POSITIONS = 15
"""A pattern has at most as many digit positions as an E.164 number has digits."""

ACCEPTED_FORM = (
    "digits and _ (exactly one digit), optionally ending with one % (any digits), "
    "e.g. 222% or 96477_______; % alone matches every number"
)

V = TypeVar("V")
Specificity = tuple[int, int, tuple[int, ...]]


def normalise_pattern(text: str, field: str = "pattern") -> str:
    """The stored form of a recipient pattern (a leading '+' dropped); InvalidInput if bad."""
    if not isinstance(text, str):
        raise InvalidInput(field, f"{text!r} is not a pattern: accepted form is {ACCEPTED_FORM}")
    pattern = text[1:] if text.startswith("+") else text
    if not pattern:
        what = "is empty" if not text else "has no digit positions"
        raise InvalidInput(field, f"{text!r} {what}: accepted form is {ACCEPTED_FORM}")
    body = pattern[:-1] if pattern.endswith("%") else pattern
    if "%" in body:
        where = "'%%' is not allowed" if "%%" in pattern else "'%' may only come last"
        raise InvalidInput(field, f"{text!r}: {where}; accepted form is {ACCEPTED_FORM}")
    bad = sorted({c for c in body if not ("0" <= c <= "9" or c == "_")})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise InvalidInput(field, f"{text!r} contains {shown}; accepted form is {ACCEPTED_FORM}")
    if len(body) > MAX_POSITIONS:
        raise InvalidInput(
            field,
            f"{text!r} has {len(body)} digit positions: at most {MAX_POSITIONS} "
            "(the longest E.164 number)",
        )
    return pattern


def matches(pattern: str, e164: str) -> bool:
    """Whether the (normalised) ``pattern`` matches the E.164 digits ``e164``."""
    wildcard = pattern.endswith("%")
    positions = pattern[:-1] if wildcard else pattern
    if len(e164) < len(positions) or (not wildcard and len(e164) != len(positions)):
        return False
    return all(p in ("_", d) for p, d in zip(positions, e164, strict=False))


def specificity(pattern: str) -> Specificity:
    """Sort key of a (normalised) pattern: ascending order puts the most specific first."""
    wildcard = pattern.endswith("%")
    positions = pattern[:-1] if wildcard else pattern
    return (int(wildcard), -len(positions), tuple(int(c == "_") for c in positions))


_Key = tuple[Specificity, int, int]
"""(specificity, priority, insertion index): the order of lookup results."""


class _Node(Generic[V]):
    """One trie node: children by digit or '_', and the entries whose pattern ends here."""

    __slots__ = ("children", "exact", "prefix")

    def __init__(self) -> None:
        self.children: dict[str, _Node[V]] = {}
        self.exact: list[tuple[_Key, V]] = []  # patterns without '%'
        self.prefix: list[tuple[_Key, V]] = []  # patterns ending in '%'


class PatternTable(Generic[V]):
    """Every value whose pattern matches a number, most specific first.

    Built from ``(pattern, priority, value)`` triples; patterns are normalised (a bad one raises
    InvalidInput located as ``entries[i].pattern``).  Order of :meth:`lookup`: most specific
    pattern first (see :func:`specificity`), then LOWER priority number first, then the order
    the entries were given.  Lookup walks a trie over the digits, following the digit and the
    ``_`` branch at each step, so its cost depends on the number's length and on how many
    patterns match, not on the size of the table.
    """

    def __init__(self, entries: Iterable[tuple[str, int, V]]) -> None:
        self._root: _Node[V] = _Node()
        self._size = 0
        for index, (raw, priority, value) in enumerate(entries):
            try:
                pattern = normalise_pattern(raw)
            except InvalidInput as error:
                raise error.under(f"entries[{index}]") from None
            self._insert(pattern, (specificity(pattern), priority, index), value)
            self._size += 1

    def __len__(self) -> int:
        return self._size

    def _insert(self, pattern: str, key: _Key, value: V) -> None:
        wildcard = pattern.endswith("%")
        node = self._root
        for char in pattern[:-1] if wildcard else pattern:
            node = node.children.setdefault(char, _Node[V]())
        (node.prefix if wildcard else node.exact).append((key, value))

    def lookup(self, e164: str) -> list[V]:
        """Values of every pattern matching the E.164 digits ``e164``, best first."""
        found: list[tuple[_Key, V]] = []
        frontier = [self._root]
        for digit in e164:
            following: list[_Node[V]] = []
            for node in frontier:
                found.extend(node.prefix)
                child = node.children.get(digit) if digit != "_" else None
                if child is not None:
                    following.append(child)
                child = node.children.get("_")
                if child is not None:
                    following.append(child)
            frontier = following
            if not frontier:
                break
        else:
            for node in frontier:
                found.extend(node.prefix)
                found.extend(node.exact)
        found.sort(key=_entry_key)
        return [value for _, value in found]


def _entry_key(entry: tuple[_Key, object]) -> _Key:
    return entry[0]
