# Editing a list field of a stored object (a carrier's networks, an account's DIDs) for `set`.
"""``set`` takes a list field either whole (``--did A --did B``: the new list) or as edits
(``--add-did X --remove-did Y``) against the stored list; the result goes through the
kind's own validation like any other change, so ``set`` refuses what ``add`` refuses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidInput


@dataclass(frozen=True)
class ListEdit:
    """What the command line asked of one list field."""

    field: str  # the field, as errors and the audit log name it: "dids", "allow_ip"
    option: str  # the option giving the whole list: "--did", "--allow-ip"
    whole: Sequence[str] = ()
    add: Sequence[str] = ()
    remove: Sequence[str] = ()

    @property
    def given(self) -> bool:
        return bool(self.whole or self.add or self.remove)

    def apply(self, stored: Sequence[Any], canonical: Callable[[str, str], Any]) -> list[Any]:
        """The new list: ``whole`` as given, else ``stored`` (canonical) with ``add``
        appended and ``remove`` taken out. ``canonical(value, field)`` validates one entry
        (an E.164 number, a CIDR network) so a removal matches however it was written."""
        if self.whole and (self.add or self.remove):
            adds = self.option.replace("--", "--add-", 1)
            removes = self.option.replace("--", "--remove-", 1)
            raise InvalidInput(
                self.field,
                f"give the whole list ({self.option}) or changes to it ({adds}, {removes}),"
                " not both",
            )
        if self.whole:  # validated by the kind, as ``add`` validates it
            return list(self.whole)
        out = list(stored)
        for value in self.remove:
            entry = canonical(value, self.field)
            if entry not in out:
                raise InvalidInput(self.field, f"{value!r} is not in the list ({_shown(out)})")
            out.remove(entry)
        for value in self.add:
            entry = canonical(value, self.field)
            if entry in out:
                raise InvalidInput(self.field, f"{value!r} is already in the list")
            out.append(entry)
        return out


def _shown(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values) or "empty"
