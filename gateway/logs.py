# Log output of a node: JSON lines for machines, readable lines on a terminal, levels per part.
"""``log.format`` json writes one JSON object per line::

    {"time": "2026-12-01T11:46:48.893Z", "level": "INFO", "logger": "gateway.pipeline",
     "env": "env1", "msg": "message 1042: connection 'to-env4': peer answered ...",
     "message_id": 1042}

``message_id`` is there on every line that concerns one message (the code passes it as
``extra={"message_id": id}``; :func:`about` builds that). ``text`` writes
``time LEVEL logger: msg``; ``auto`` picks text on a terminal and json otherwise.
``log.levels`` sets levels per component (a logger name and its children).

No secret reaches a log: passwords and keys are never passed to a log call (a test greps
every log of a full run for every password used), and the database URL is shown with its
password hidden (gateway.store.engine.display_url).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from gateway.config import LogConfig

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def about(message_id: int) -> dict[str, Any]:
    """``extra`` for a log call about one message."""
    return {"message_id": message_id}


class JsonFormatter(logging.Formatter):
    def __init__(self, env: str) -> None:
        super().__init__()
        self.env = env

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        data: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "env": self.env,
            "msg": record.getMessage(),
        }
        message_id = getattr(record, "message_id", None)
        if message_id is not None:
            data["message_id"] = message_id
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def configure(config: LogConfig, env: str, stream: IO[str] | None = None) -> None:
    """Send every log record to ``stream`` (stderr) in the configured format and levels."""
    stream = stream or sys.stderr
    use_json = config.format == "json" or (config.format == "auto" and not _tty(stream))
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(env) if use_json else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, config.level.upper()))
    for component, level in (config.levels or {}).items():
        logging.getLogger(component).setLevel(getattr(logging, level))


def _tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
