# gatewayctl demo: a whole gateway on free local ports, a carrier and an app, one SMS end to end.
"""What a newcomer runs first. In a temporary folder: a config on free 127.0.0.1 ports and a
fresh SQLite store; the README tour's provisioning (customer John Doe, account 1111 with
DID +964 111222333) and of carrier TATA with a tariff; a real ``gatewayctl serve``. Then it
plays both ends: the app (the built-in test UA, gateway/sip/testua.py) registers over SIP,
the carrier (smpplib, a real ESME) binds and submits an SMS, the app receives it as a SIP
MESSAGE and answers 200, the carrier gets its DELIVRD receipt. It shows the message's trace
and the carrier's settlement line, stops the gateway and removes the folder (``--keep``
leaves it, with the commands to look around).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import smpplib.client
import smpplib.consts
import yaml
from rich.markup import escape

from gateway.errors import GatewayError
from gateway.sip.testua import TestUA

DOMAIN = "demo.example.net"
ACCOUNT, DID = "1111", "111222333"  # the README tour: John Doe's account and number (+964)
E164 = "964" + DID
TEXT = "Hello John, your code is 4711"
READY_TIMEOUT = 60.0
STEP_TIMEOUT = 30.0

Ctl = Callable[[list[str]], str]  # runs one gatewayctl command on the demo's config
Say = Callable[[str], None]


class DemoFailed(GatewayError):
    """A step of the demo did not happen as it should."""


@dataclass
class Server:
    """``gatewayctl serve`` on the demo config, its JSON log lines read by a thread."""

    config: Path
    process: subprocess.Popen[str] | None = None
    lines: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    ports: dict[str, int] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "gatewayctl", "--config", str(self.config), "serve"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()
        while True:
            try:
                line = self.lines.get(timeout=READY_TIMEOUT)
            except queue.Empty:
                raise DemoFailed("the gateway did not start in time") from None
            if line.get("exited"):
                raise DemoFailed("the gateway exited:\n" + self.text())
            msg = line["msg"]
            match = re.search(r"(smpp|sip udp|management) listening on [\d.]+:(\d+)", msg)
            if match:
                self.ports[match[1]] = int(match[2])
            if msg.startswith("ready;"):
                return

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"level": "INFO", "logger": "?", "msg": raw.rstrip()}
            self.log.append(line)
            self.lines.put(line)
        self.lines.put({"exited": True, "msg": ""})

    def text(self) -> str:
        return "\n".join(f"{x.get('level')} {x.get('logger')}: {x.get('msg')}" for x in self.log)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def write_config(folder: Path) -> Path:
    config = folder / "gateway.yaml"
    data = {
        "env": "demo",
        "database": f"sqlite:///{folder / 'gateway.db'}",
        "secret_key_file": str(folder / "gateway.key"),
        "numbering": {"country_code": "964", "national_prefix": "0"},
        "smpp": {"system_id": "GW-DEMO", "listen": [{"host": "127.0.0.1", "port": 0}]},
        "sip": {
            "domain": DOMAIN,
            "listen": [{"transport": "udp", "host": "127.0.0.1", "port": 0}],
        },
        "management": {"host": "127.0.0.1", "port": 0},
        "log": {"level": "INFO", "format": "json"},
    }
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return config


def provision(ctl: Ctl, john_pw: str, tata_pw: str, month: str) -> None:
    ctl(["init"])
    ctl(["customer", "add", "John Doe"])
    ctl(["product", "add", "Call & Chat"])
    ctl(["account", "add", ACCOUNT, "--customer", "John Doe", "--product", "Call & Chat",
         "--did", DID, "--password", john_pw])  # fmt: skip
    ctl(["carrier", "add", "TATA", "--system-id", "TATA", "--password", tata_pw,
         "--allow-ip", "127.0.0.1"])  # fmt: skip
    ctl(["tariff", "add", "--carrier", "TATA", "--prefix", "964", "--price", "0.01",
         "--currency", "USD", "--from", f"{month}-01"])  # fmt: skip


class Carrier:
    """TATA as a real ESME (smpplib): bind, submit, and its deliver_sm in a queue."""

    def __init__(self, port: int, password: str) -> None:
        logging.getLogger("smpp").setLevel(logging.CRITICAL)  # its notes on the final close
        self.client = smpplib.client.Client("127.0.0.1", port, timeout=STEP_TIMEOUT)
        self.resps: queue.Queue[Any] = queue.Queue()
        self.receipts: queue.Queue[Any] = queue.Queue()
        self.answered: queue.Queue[Any] = queue.Queue()  # our deliver_sm_resp, once sent
        self.client.set_message_sent_handler(lambda pdu: self.resps.put(pdu))
        self.client.set_message_received_handler(lambda pdu: self.receipts.put(pdu))
        plain_send = self.client.send_pdu

        def send_pdu(pdu: Any) -> Any:
            sent = plain_send(pdu)
            if pdu.command == "deliver_sm_resp":
                self.answered.put(pdu)
            return sent

        self.client.send_pdu = send_pdu  # type: ignore[method-assign]
        self.client.connect()
        self.client.bind_transceiver(system_id="TATA", password=password)
        self._stop = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.client.read_once()
            except Exception:  # noqa: BLE001 - the link ends with the demo
                return

    def submit(self) -> Any:
        self.client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_ALNUM, source_addr="TATA",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL, dest_addr_npi=1,
            destination_addr=E164, short_message=TEXT.encode(), registered_delivery=1,
        )  # fmt: skip
        return self.resps.get(timeout=STEP_TIMEOUT)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self.client.unbind()
        with contextlib.suppress(Exception):
            self.client.disconnect()


async def play(ports: dict[str, int], john_pw: str, tata_pw: str, say: Say) -> str:
    """The app registers, the carrier submits, the app gets it, the receipt comes back;
    returns the message id the carrier was given."""
    ua = await TestUA(
        "udp", ("127.0.0.1", ports["sip udp"]), user=ACCOUNT, password=john_pw, domain=DOMAIN
    ).open()
    try:
        registered = await ua.register(expires=300)
        if registered.status != 200:
            raise DemoFailed(f"the app's REGISTER was answered {registered.status}")
        say(f"[bold]app[/]      registered as {ACCOUNT}@{DOMAIN} (SIP 200 OK, digest auth)")
        carrier = await asyncio.to_thread(Carrier, ports["smpp"], tata_pw)
        try:
            say("[bold]carrier[/]  TATA bound over SMPP (bind_transceiver)")
            resp = await asyncio.to_thread(carrier.submit)
            if resp.status != 0:
                raise DemoFailed(f"submit_sm was answered status 0x{resp.status:08x}")
            message_id = resp.message_id.decode()
            say(f"[bold]carrier[/]  submit_sm to +{E164}: {TEXT!r} -> ESME_ROK, id {message_id}")
            request = await ua.incoming(timeout=STEP_TIMEOUT)
            ua.answer(request, 200)
            sender = request.headers.get("from") or "?"
            body = request.body.decode()
            got = f"from {escape(sender)}: {escape(repr(body))}"
            say(f"[bold]app[/]      got SIP MESSAGE {got} -> 200 OK")
            receipt = await asyncio.to_thread(carrier.receipts.get, True, STEP_TIMEOUT)
            await asyncio.to_thread(carrier.answered.get, True, STEP_TIMEOUT)
            text = receipt.short_message.decode(errors="replace")
            say(f"[bold]carrier[/]  deliver_sm receipt: {escape(text)} -> deliver_sm_resp")
            return message_id
        finally:
            await asyncio.to_thread(carrier.close)
    finally:
        ua.close()


@contextlib.contextmanager
def folder(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def run(ctl_for: Callable[[Path], Ctl], say: Say, keep: bool = False) -> None:
    """The whole demo; DemoFailed (with the gateway's log) when a step does not happen."""
    month = datetime.now(UTC).strftime("%Y-%m")
    john_pw, tata_pw = secrets.token_urlsafe(12), secrets.token_hex(4)  # SMPP: 8 at most
    with folder(keep) as where:
        config = write_config(where)
        ctl = ctl_for(config)
        say(f"[bold]setup[/]    temporary gateway in {where} (SQLite store, free local ports)")
        provision(ctl, john_pw, tata_pw, month)
        say(
            f"[bold]setup[/]    provisioned John Doe (account {ACCOUNT}, DID +{E164}) and"
            " carrier TATA (tariff 964: 0.01 USD per message)"
        )
        server = Server(config)
        try:
            server.start()
            say(
                f"[bold]gateway[/]  serving: SMPP 127.0.0.1:{server.ports['smpp']}, SIP UDP"
                f" 127.0.0.1:{server.ports['sip udp']}, management"
                f" http://127.0.0.1:{server.ports['management']}"
            )
            message_id = asyncio.run(play(server.ports, john_pw, tata_pw, say))
        except BaseException:
            server.stop()
            if server.log:
                say("[bold red]gateway log[/]\n" + escape(server.text()))
            raise
        server.stop()
        say("[bold]gateway[/]  stopped (SIGTERM: what was in flight was answered first)")
        say("[bold]trace[/]    gatewayctl messages show " + message_id)
        say(escape(ctl(["messages", "show", message_id]).rstrip()))
        ctl(["settlement", "run", "--month", month])
        say(f"[bold]billing[/]  gatewayctl settlement show --month {month} --carrier TATA")
        say(escape(ctl(["settlement", "show", "--month", month, "--carrier", "TATA"]).rstrip()))
        if keep:
            say(
                f"[bold]kept[/]     {where}: gatewayctl --config {config} serve | status |"
                " messages list"
            )
        else:
            say("[bold]done[/]     the temporary gateway and its store are removed")
