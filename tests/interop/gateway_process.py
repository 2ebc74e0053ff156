# A real gateway process for interop tests: temp config and store, free ports, log-driven waits.
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml

READY_TIMEOUT = 60.0


def as_text(line: str) -> str:
    """A JSON log line (log.format json, the default off a terminal) as a text line, so
    tests match messages the same way whatever the format; other lines as they are."""
    if not line.startswith("{"):
        return line
    try:
        data = json.loads(line)
    except ValueError:
        return line
    text = f"{data['time']} {data['level']} {data['logger']}: {data['msg']}\n"
    if "exc" in data:
        text += data["exc"] + "\n"
    return text


@dataclass
class GatewayProcess:
    """``gatewayctl serve`` on a config in ``folder``; SMPP listeners on port 0."""

    folder: Path
    database: str
    smpp_tls: tuple[str, str] | None = None
    extra: dict = field(default_factory=dict)
    env: str = "env1"
    system_id: str = "GW-ENV1"
    domain: str = "env1.example.net"
    process: subprocess.Popen | None = None
    lines: list[str] = field(default_factory=list)  # log lines as text (JSON ones rendered)
    raw_lines: list[str] = field(default_factory=list)  # as the process wrote them
    smpp_port: int = 0
    smpp_tls_port: int = 0
    sip_ports: dict[str, int] = field(default_factory=dict)  # transport -> port
    management_port: int = 0
    _ready: threading.Event = field(default_factory=threading.Event)
    _seen: threading.Condition = field(default_factory=threading.Condition)

    @property
    def config(self) -> Path:
        return self.folder / "gateway.yaml"

    def write_config(self) -> Path:
        listen = [{"host": "127.0.0.1", "port": 0}]
        if self.smpp_tls:
            listen.append(
                {
                    "host": "127.0.0.1",
                    "port": 0,
                    "tls": {"cert": self.smpp_tls[0], "key": self.smpp_tls[1]},
                }
            )
        data = {
            "env": self.env,
            "database": self.database,
            "secret_key_file": str(self.folder / "gateway.key"),
            "numbering": {"country_code": "964", "national_prefix": "0"},
            "smpp": {"system_id": self.system_id, "listen": listen, **self.extra.get("smpp", {})},
            "sip": {
                "domain": self.domain,
                "listen": [{"transport": "udp", "host": "127.0.0.1", "port": 0}],
                **self.extra.get("sip", {}),
            },
            "management": {"host": "127.0.0.1", "port": 0},
            "log": {"level": "INFO"},
            **{k: v for k, v in self.extra.items() if k not in ("smpp", "sip")},
        }
        self.config.write_text(yaml.safe_dump(data), encoding="utf-8")
        return self.config

    def start(self) -> GatewayProcess:
        # a fresh event and log per process: the reader of a killed one may still be finishing
        self._ready = threading.Event()
        with self._seen:
            self.lines = []
            self.raw_lines = []
        self.smpp_port = self.smpp_tls_port = self.management_port = 0
        self.sip_ports = {}
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            ["gatewayctl", "--config", str(self.config), "serve"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        threading.Thread(target=self._read, args=(self.process, self._ready), daemon=True).start()
        if not self._ready.wait(READY_TIMEOUT):
            self.kill()
            raise AssertionError("gateway did not become ready:\n" + "".join(self.lines))
        if self.process.poll() is not None:
            raise AssertionError("gateway exited:\n" + "".join(self.lines))
        return self

    def _read(self, process: subprocess.Popen, ready: threading.Event) -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            if process is not self.process:
                continue  # the last words of a previous process
            line = as_text(raw)
            match = re.search(r"smpp(\+tls)? listening on [\d.]+:(\d+)", line)
            if match:
                if match.group(1):
                    self.smpp_tls_port = int(match.group(2))
                else:
                    self.smpp_port = int(match.group(2))
            match = re.search(r"sip (udp|tcp|tls) listening on [\d.]+:(\d+)", line)
            if match:
                self.sip_ports[match.group(1)] = int(match.group(2))
            match = re.search(r"management listening on [\d.]+:(\d+)", line)
            if match:
                self.management_port = int(match.group(1))
            with self._seen:
                self.lines.append(line)
                self.raw_lines.append(raw)
                self._seen.notify_all()
            if "ready;" in line:
                ready.set()
        ready.set()  # exited: let start() see it
        with self._seen:
            self._seen.notify_all()

    def wait_for_log(self, pattern: str, timeout: float = 30.0, count: int = 1) -> str:
        """Block until ``count`` log lines match ``pattern`` (an event, not a sleep); the
        last of them is returned."""
        regex = re.compile(pattern)
        with self._seen:
            found = self._seen.wait_for(
                lambda: (
                    sum(1 for line in self.lines if regex.search(line)) >= count
                    or self.process.poll() is not None
                ),
                timeout,
            )
            matching = [line for line in self.lines if regex.search(line)]
            if len(matching) >= count:
                return matching[count - 1]
        raise AssertionError(
            f"no log line matching {pattern!r} (found={found}):\n" + "".join(self.lines)
        )

    def log(self) -> str:
        """The log so far as text lines (a JSON line as ``time LEVEL logger: msg``)."""
        with self._seen:
            return "".join(self.lines)

    def raw_log(self) -> str:
        """The log so far exactly as written (JSON lines when stderr is not a terminal)."""
        with self._seen:
            return "".join(self.raw_lines)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
