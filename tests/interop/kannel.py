# Kannel 1.4.5 (bearerbox + smsbox) as a real carrier ESME bound to a gateway, with an HTTP sink.
"""Kannel plays the carrier: it binds to the gateway's SMPP port as a transceiver, submits what
is posted to smsbox's sendsms interface (splitting long texts into concatenated parts itself),
reports delivery receipts to a ``dlr-url`` and hands mobile-originated messages (deliver_sm
from the gateway) to an ``sms-service`` ``get-url``. Both URLs point at a small HTTP sink run
here, so a test waits on what Kannel really reported. Everything listens on 127.0.0.1; every
wait is bounded and waits on an event (a log line, a request at the sink), never a sleep.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BEARERBOX = shutil.which("bearerbox") or "/usr/sbin/bearerbox"
SMSBOX = shutil.which("smsbox") or "/usr/sbin/smsbox"
READY_TIMEOUT = 30.0
PORT_ATTEMPTS = 3
ADMIN_PASSWORD = "kannel-admin"
SENDSMS_USER = ("tester", "tester-Secret-1")
SMSC_ID = "gateway"  # the smsc-id of the example's smsc group
EXAMPLE_CONF = Path(__file__).resolve().parents[2] / "conf" / "kannel.example.conf"
DLR_DELIVERED = 1  # Kannel's dlr types (the %d of a dlr-url): 1 delivered, 2 failed,
DLR_FAILED = 2  # 4 buffered, 8 accepted by the SMSC (submit_sm_resp ok), 16 rejected by it
DLR_SMSC_ACK = 8
BOUND = r"type_name: bind_transceiver_resp\n[^\n]*command_id[^\n]*\n[^\n]*command_status: 0 "
PDU_FIELD = re.compile(r"DEBUG:   (\w+): (.*)$")
ONLINE = re.compile(r"SMPP:[^\n]*\(online ")


class PortTaken(AssertionError):
    """A port chosen free was taken before Kannel bound it."""


def read_groups(path: Path) -> list[tuple[str, dict[str, str]]]:
    """A Kannel configuration file as (group, {key: value}) in order (comments dropped,
    quotes taken off values)."""
    groups: list[tuple[str, dict[str, str]]] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = (x.strip() for x in line.partition("="))
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key == "group":
            groups.append((value, {}))
        else:
            groups[-1][1][key] = value
    return groups


def free_port() -> int:
    """A port free on 127.0.0.1 now (Kannel cannot be told port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class SinkRequest:
    """One request Kannel made to the sink: ``kind`` is the path (dlr or mo), ``params`` its
    query decoded (the last value of each name)."""

    kind: str
    params: dict[str, str]
    raw: bytes  # the raw query string (binary bodies stay as sent)


class Sink:
    """An HTTP server in a thread recording every GET it gets; answers 200 with an empty body
    (so an sms-service sends no reply SMS)."""

    def __init__(self) -> None:
        self.requests: list[SinkRequest] = []
        self._seen = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                params = {
                    k: v[-1]
                    for k, v in urllib.parse.parse_qs(
                        query, keep_blank_values=True, encoding="latin-1"
                    ).items()
                }
                with sink._seen:
                    sink.requests.append(SinkRequest(path.strip("/"), params, query.encode()))
                    sink._seen.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def wait(self, match: Callable[[SinkRequest], bool], timeout: float, what: str) -> SinkRequest:
        with self._seen:
            if self._seen.wait_for(lambda: any(match(r) for r in self.requests), timeout):
                return next(r for r in self.requests if match(r))
            seen = list(self.requests)
        raise AssertionError(f"no {what} at the sink within {timeout:.0f}s; it got: {seen}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class _Box:
    """One Kannel box process, its output read line by line in a thread."""

    name: str
    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    seen: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self.seen:
                self.lines.append(raw.decode("utf-8", "replace"))
                self.seen.notify_all()
        with self.seen:
            self.seen.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> str:
        """Block until the output so far matches ``pattern`` (it may span lines)."""
        regex = re.compile(pattern)
        with self.seen:
            self.seen.wait_for(
                lambda: regex.search("".join(self.lines)) or self.process.poll() is not None,
                timeout,
            )
            found = regex.search("".join(self.lines))
            if found:
                return found.group(0)
            tail = "".join(self.lines[-40:])
        state = (
            f"exited {self.process.returncode}" if self.process.poll() is not None else "running"
        )
        raise AssertionError(f"{self.name} ({state}): no line matching {pattern!r}:\n{tail}")

    def wait_until(self, check: Callable[[], bool], timeout: float) -> None:
        """Re-check ``check`` each time the box writes a line (bearerbox logs its enquire_links
        and throughput), until it holds or ``timeout`` runs out."""
        deadline = time.monotonic() + timeout
        while not check():
            with self.seen:
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or not self.seen.wait_for(lambda n=seen: len(self.lines) > n, left):
                    raise AssertionError(f"{self.name}: condition not met in {timeout:.0f}s")

    def log(self) -> str:
        with self.seen:
            return "".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@dataclass
class Kannel:
    """bearerbox + smsbox bound to ``smpp_port`` as ``system_id``/``password``.

    ``start()`` returns once the SMPP bind is up (bearerbox's log, confirmed by the admin
    status page showing the smsc online) and smsbox is connected to bearerbox.
    """

    folder: Path
    smpp_port: int
    system_id: str
    password: str
    extra_smsc: dict[str, str] = field(default_factory=dict)
    admin_port: int = 0
    smsbox_port: int = 0
    sendsms_port: int = 0
    sink: Sink | None = None
    bearerbox: _Box | None = None
    smsbox: _Box | None = None

    @property
    def config(self) -> Path:
        return self.folder / "kannel.conf"

    def write_config(self) -> Path:
        """conf/kannel.example.conf with this test's ports, credentials, log files and sink
        URLs (and ``extra_smsc`` settings): the tests run the documented setup itself."""
        assert self.sink is not None
        self.admin_port, self.smsbox_port, self.sendsms_port = (free_port() for _ in range(3))
        sink_base = f"http://127.0.0.1:{self.sink.port}"
        overrides: dict[str, dict[str, str]] = {
            "core": {
                "admin-port": str(self.admin_port),
                "admin-password": ADMIN_PASSWORD,
                "status-password": ADMIN_PASSWORD,
                "smsbox-port": str(self.smsbox_port),
                "log-file": str(self.folder / "bearerbox.log"),
                "log-level": "0",  # debug: the PDU dumps are what pdus() reads
            },
            "smsc": {
                "host": "127.0.0.1",
                "port": str(self.smpp_port),
                "smsc-username": self.system_id,
                "smsc-password": self.password,
                "reconnect-delay": "1",
                **self.extra_smsc,
            },
            "smsbox": {
                "bearerbox-port": str(self.smsbox_port),
                "sendsms-port": str(self.sendsms_port),
                "log-file": str(self.folder / "smsbox.log"),
                "log-level": "0",
            },
            "sendsms-user": {"username": SENDSMS_USER[0], "password": SENDSMS_USER[1]},
        }
        lines = [f"# written by tests/interop/kannel.py from {EXAMPLE_CONF.name}"]
        for name, values in read_groups(EXAMPLE_CONF):
            values = {**values, **overrides.get(name, {})}
            if "get-url" in values:  # the MO service: same query, the sink's address
                values["get-url"] = re.sub(r"^https?://[^/]+", sink_base, values["get-url"])
            lines.append(f"group = {name}")
            lines += [f'{k} = "{v}"' for k, v in values.items()]
            lines.append("")
        self.config.write_text("\n".join(lines), encoding="utf-8")
        return self.config

    def start(self, timeout: float = READY_TIMEOUT) -> Kannel:
        self.sink = Sink()
        for attempt in range(PORT_ATTEMPTS):
            self.write_config()
            try:
                self._start_boxes(timeout)
                return self
            except PortTaken:  # a free port was taken meanwhile by someone else: new ports
                self._stop_boxes()
                if attempt == PORT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _start_boxes(self, timeout: float) -> None:
        self.bearerbox = self._spawn("bearerbox", BEARERBOX)
        self._ready(self.bearerbox, r"Start-up done, entering mainloop", timeout)
        self.smsbox = self._spawn("smsbox", SMSBOX)
        # the bind is up: the gateway answered bind_transceiver with ESME_ROK
        self.bearerbox.wait_for(BOUND, timeout)
        self._ready(self.smsbox, r"Connected to bearerbox", timeout)
        # the status page is the word of record; bearerbox marks the smsc online right after
        # it logs the resp, so a line or two later at most
        self.bearerbox.wait_until(lambda: ONLINE.search(self.status()) is not None, timeout)

    @staticmethod
    def _ready(box: _Box, pattern: str, timeout: float) -> None:
        """Wait for ``pattern``; PortTaken if one of the box's ports was in use (bearerbox
        goes on without its admin port, smsbox exits)."""
        try:
            box.wait_for(pattern, timeout)
        finally:
            if "Address already in use" in box.log():
                raise PortTaken(box.log())

    def _spawn(self, name: str, binary: str) -> _Box:
        process = subprocess.Popen(
            [binary, "-v", "0", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.folder,
        )
        return _Box(name, process)

    def status(self) -> str:
        """bearerbox's admin status page (text form)."""
        url = f"http://127.0.0.1:{self.admin_port}/status.txt?password={ADMIN_PASSWORD}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.read().decode("utf-8", "replace")

    def send(
        self,
        to: str,
        text: str,
        coding: int = 0,
        dlr_mask: int = 31,
        sender: str = "Kannel",
    ) -> str:
        """Post an SMS to smsbox's sendsms; returns the tag its dlr-url carries (for
        ``wait_dlr``). ``coding`` is Kannel's (0 GSM 7-bit, 2 UCS-2); texts go as UTF-8."""
        assert self.sink is not None
        tag = uuid.uuid4().hex[:12]
        dlr_url = (
            self.sink.url("dlr")
            + f"?tag={tag}&type=%d&reply=%A&to=%p&from=%P&smsc=%i&foreign_id=%F"
        )
        query = {
            "username": SENDSMS_USER[0],
            "password": SENDSMS_USER[1],
            "to": to,
            "from": sender,
            "text": text,
            "charset": "UTF-8",
            "coding": str(coding),
            "smsc": SMSC_ID,
            "dlr-mask": str(dlr_mask),
            "dlr-url": dlr_url,
        }
        url = f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms?" + urllib.parse.urlencode(
            query
        )
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode("utf-8", "replace")
            assert resp.status in (200, 202), body
        return tag

    def dlrs(self, tag: str) -> list[SinkRequest]:
        assert self.sink is not None
        with self.sink._seen:
            return [r for r in self.sink.requests if r.kind == "dlr" and r.params["tag"] == tag]

    def wait_dlr(self, tag: str, dlr_type: int = DLR_DELIVERED, timeout: float = 30) -> SinkRequest:
        """The first receipt of ``dlr_type`` Kannel reported for the message sent as ``tag``."""
        assert self.sink is not None
        return self.sink.wait(
            lambda r: (
                r.kind == "dlr"
                and r.params.get("tag") == tag
                and r.params.get("type") == str(dlr_type)
            ),
            timeout,
            f"dlr type {dlr_type} for {tag}",
        )

    def mos(self) -> list[SinkRequest]:
        assert self.sink is not None
        with self.sink._seen:
            return [r for r in self.sink.requests if r.kind == "mo"]

    def wait_mo(
        self, match: Callable[[SinkRequest], bool] = lambda r: True, timeout: float = 30
    ) -> SinkRequest:
        """The first mobile-originated message smsbox handed to the sms-service get-url."""
        assert self.sink is not None
        return self.sink.wait(lambda r: r.kind == "mo" and match(r), timeout, "MO")

    def logs(self) -> str:
        return "".join(
            f"--- {box.name} ---\n{box.log()}" for box in (self.bearerbox, self.smsbox) if box
        )

    def pdus(self, type_name: str) -> list[dict[str, str]]:
        """The PDUs of ``type_name`` bearerbox sent or got, in order, as the fields of its
        debug dump (e.g. ``{"esm_class": "67", "registered_delivery": "17", ...}``)."""
        assert self.bearerbox is not None
        found: list[dict[str, str]] = []
        current: dict[str, str] | None = None
        for line in self.bearerbox.log().splitlines():
            field_ = PDU_FIELD.search(line)
            if field_ is None:
                current = None if "PDU dump ends" in line else current
                continue
            name, value = field_.group(1), field_.group(2).split(" = ")[0].strip('"')
            if name == "type_name":
                current = {} if value == type_name else None
                if current is not None:
                    found.append(current)
            elif current is not None:
                current[name] = value
        return found

    def summary(self) -> str:
        """What Kannel did, for a failed test: its INFO and worse lines, the PDUs it sent and
        got (type, ids, addresses, esm_class, registered_delivery, data_coding) and the sink's
        requests; the full logs are in ``folder``."""
        keep = re.compile(
            r"INFO|WARNING|ERROR|PANIC|type_name|message_id|_addr|esm_class|registered_delivery"
            r"|data_coding|command_status"
        )
        out = [f"Kannel logs in {self.folder}"]
        for box in (self.bearerbox, self.smsbox):
            if box is not None:
                out.append(f"--- {box.name} ---")
                out += [x.rstrip() for x in box.lines[-400:] if keep.search(x)]
        if self.sink is not None:
            out.append("--- sink ---")
            out += [f"{r.kind}: {r.params}" for r in self.sink.requests]
        return "\n".join(out)

    def _stop_boxes(self) -> None:
        for box in (self.smsbox, self.bearerbox):
            if box is not None:
                box.stop()

    def stop(self) -> None:
        self._stop_boxes()
        if self.sink is not None:
            self.sink.close()


def mo_text(request: SinkRequest) -> str:
    """The text of an MO as smsbox passed it: ``%b`` (the raw bytes) decoded by ``%C``
    (its charset: UTF-8 for GSM texts, UTF-16BE for UCS-2 ones)."""
    raw = b""
    for pair in request.raw.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == b"binary":
            raw = urllib.parse.unquote_to_bytes(value.replace(b"+", b" "))
    charset = request.params.get("charset") or "UTF-8"
    return raw.decode(charset)
