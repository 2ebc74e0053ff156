# Tests of gateway/logs.py: JSON lines with the message id, text on a terminal, levels per part.
from __future__ import annotations

import io
import json
import logging

import pytest

from gateway.config import LogConfig
from gateway.logs import about, configure


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("gateway.smpp", "gateway.sip"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_json_lines_carry_the_message_id_and_the_env():
    out = io.StringIO()
    configure(LogConfig(), "env7", out)  # auto, not a terminal: JSON
    logging.getLogger("gateway.pipeline").info("message %d: sent", 42, extra=about(42))
    logging.getLogger("gateway.smpp").warning('carrier "TATA" said ünïcode')
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["msg"] == "message 42: sent" and first["message_id"] == 42
    assert (first["level"], first["logger"], first["env"]) == ("INFO", "gateway.pipeline", "env7")
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert "message_id" not in second and second["msg"] == 'carrier "TATA" said ünïcode'


def test_exceptions_stay_inside_their_json_line():
    out = io.StringIO()
    configure(LogConfig(format="json"), "env1", out)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("gateway").exception("it failed")
    [line] = out.getvalue().splitlines()
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_text_on_a_terminal_and_when_asked():
    for config, stream in ((LogConfig(), Terminal()), (LogConfig(format="text"), io.StringIO())):
        configure(config, "env1", stream)
        logging.getLogger("gateway.sip").info("hello")
        assert stream.getvalue().rstrip().endswith("INFO gateway.sip: hello")
    out = Terminal()
    configure(LogConfig(format="json"), "env1", out)  # json wins even on a terminal
    logging.getLogger("gateway").info("x")
    assert json.loads(out.getvalue())["msg"] == "x"


def test_levels_per_component_override_the_level():
    out = io.StringIO()
    levels = {"gateway.smpp": "DEBUG", "gateway.sip": "ERROR"}
    configure(LogConfig(level="INFO", format="text", levels=levels), "env1", out)
    logging.getLogger("gateway.smpp.client").debug("smpp detail")  # a sub-component
    logging.getLogger("gateway.sip").warning("sip warning")
    logging.getLogger("gateway.pipeline").debug("pipeline detail")
    logging.getLogger("gateway.pipeline").info("pipeline info")
    text = out.getvalue()
    assert "smpp detail" in text and "pipeline info" in text
    assert "sip warning" not in text and "pipeline detail" not in text
