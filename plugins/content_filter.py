# Plugin content_filter: refuse messages by sender, recipient or text, with a stated reason.
"""Rules checked in order before a message is stored; the first that matches decides.

Options::

    rules:
      - {field: text, match: "(?i)casino", action: reject, reason: "gambling ads"}
      - {field: sender, match: "^Promo", action: reject}
      - {field: recipient, match: "^964111", action: allow}   # stop checking: accepted
    default: allow                                           # or reject (default allow)

``field`` is ``sender`` (the source address), ``recipient`` (the E.164 destination) or
``text``; ``match`` is a regular expression (Python syntax, searched, at most 200 characters);
``action`` ``reject`` refuses the message (the carrier gets ESME_RX_R_APPN, an app 403) with
``reason`` (default: the rule's number and pattern), ``allow`` accepts it without looking at
the following rules. A binary message has no text: ``text`` rules do not match it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plugins import MessageView, PluginError, Reject

FIELDS = ("sender", "recipient", "text")
MAX_PATTERN = 200
MAX_RULES = 1000


@dataclass(frozen=True, slots=True)
class Rule:
    field: str
    pattern: re.Pattern[str]
    reject: bool
    reason: str


class ContentFilter:
    def __init__(self, options: Mapping[str, Any]) -> None:
        unknown = set(options) - {"rules", "default"}
        if unknown:
            raise PluginError(sorted(unknown)[0], "unknown option")
        raw = options.get("rules", [])
        if not isinstance(raw, list) or len(raw) > MAX_RULES:
            raise PluginError("rules", f"must be a list of at most {MAX_RULES} rules")
        self.rules = [self._rule(i, r) for i, r in enumerate(raw)]
        default = options.get("default", "allow")
        if default not in ("allow", "reject"):
            raise PluginError("default", f"must be allow or reject, got {default!r}")
        self.default_reject = default == "reject"

    @staticmethod
    def _rule(index: int, raw: Any) -> Rule:
        where = f"rules[{index}]"
        if not isinstance(raw, Mapping):
            raise PluginError(where, "must be a mapping with field, match and action")
        unknown = set(raw) - {"field", "match", "action", "reason"}
        if unknown:
            raise PluginError(f"{where}.{sorted(unknown)[0]}", "unknown key")
        field = raw.get("field")
        if field not in FIELDS:
            raise PluginError(
                f"{where}.field", f"must be one of {', '.join(FIELDS)}, got {field!r}"
            )
        match = raw.get("match")
        if not isinstance(match, str) or not 0 < len(match) <= MAX_PATTERN:
            raise PluginError(
                f"{where}.match", f"must be a regular expression of 1-{MAX_PATTERN} characters"
            )
        try:
            pattern = re.compile(match)
        except re.error as exc:
            raise PluginError(f"{where}.match", f"not a regular expression: {exc}") from None
        action = raw.get("action")
        if action not in ("allow", "reject"):
            raise PluginError(f"{where}.action", f"must be allow or reject, got {action!r}")
        reason = raw.get("reason", f"content rule {index + 1} ({field} matches {match!r})")
        if not isinstance(reason, str):
            raise PluginError(f"{where}.reason", "must be text")
        return Rule(field, pattern, action == "reject", reason[:200])

    def on_accept(self, message: MessageView) -> Reject | None:
        values = {"sender": message.source, "recipient": message.destination, "text": message.text}
        for rule in self.rules:
            value = values[rule.field]
            if value is not None and rule.pattern.search(value):
                return Reject(rule.reason) if rule.reject else None
        return Reject("no content rule allows it") if self.default_reject else None


def create(options: Mapping[str, Any]) -> ContentFilter:
    return ContentFilter(options)
