# A carrier for scenario tests: smpplib bound as transceiver, reading in a thread of its own.
from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp

from tests.interop.peers import TATA_PW

TIMEOUT = 30.0


class Carrier:
    """One smpplib transceiver bind: ``submit`` waits for the submit_sm_resp, receipts and MO
    deliver_sm collect in ``delivered`` (each answered ESME_ROK by smpplib)."""

    def __init__(self, port: int, system_id: str = "TATA", password: str = TATA_PW) -> None:
        self.client = smpplib.client.Client(
            "127.0.0.1", port, timeout=1.0, allow_unknown_opt_params=True
        )
        self.resps: queue.Queue[Any] = queue.Queue()
        self.delivered: queue.Queue[Any] = queue.Queue()
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self.unbound = False  # the gateway unbound this bind (it is shutting down)
        plain_send = self.client.send_pdu

        def send_pdu(pdu: Any) -> Any:
            with self._send_lock:  # the reader thread answers deliver_sm on the same socket
                return plain_send(pdu)

        self.client.send_pdu = send_pdu  # type: ignore[method-assign]
        plain_read = self.client.read_pdu

        def read_pdu() -> Any:
            pdu = plain_read()
            if pdu.command == "unbind":  # the gateway ends the bind: answer (smpplib does not)
                resp = smpplib.smpp.make_pdu("unbind_resp", client=self.client)
                resp.sequence = pdu.sequence
                send_pdu(resp)
                self.unbound = True
            return pdu

        self.client.read_pdu = read_pdu  # type: ignore[method-assign]
        self.client.set_message_sent_handler(lambda pdu: self.resps.put(pdu))
        self.client.set_message_received_handler(lambda pdu: self.delivered.put(pdu))
        # an error resp goes on to message_sent_handler too: do not raise (smpplib's default)
        self.client.set_error_pdu_handler(lambda pdu: None)
        self.client.connect()
        self.client.bind_transceiver(system_id=system_id, password=password)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.client.read_once()
            except Exception:  # the link went away (closed at the end of the test)
                if not (self._stop.is_set() or self.unbound):
                    raise
                return

    def send(self, text: str | bytes, **fields: Any) -> Any:
        """Send without waiting (the resp lands in ``resps``); returns the PDU sent."""
        short = text.encode("ascii") if isinstance(text, str) else text
        params = {
            "source_addr_ton": 5,
            "source_addr_npi": 0,
            "source_addr": "AsiaCell",
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": "964111222333",
            "short_message": short,
            "registered_delivery": 1,
            **fields,
        }
        return self.client.send_message(**params)

    def submit(self, text: str | bytes, **fields: Any) -> Any:
        """One submit_sm; returns its resp (status and message_id)."""
        self.send(text, **fields)
        return self.resps.get(timeout=TIMEOUT)

    def submit_many(self, texts: list[str], window: int = 50, **fields: Any) -> list[Any]:
        """Submit every text keeping ``window`` unanswered (within the gateway's window)."""
        resps: list[Any] = []
        sent = 0
        while len(resps) < len(texts):
            while sent < len(texts) and sent - len(resps) < window:
                self.send(texts[sent], **fields)
                sent += 1
            resps.append(self.resps.get(timeout=TIMEOUT))
        return resps

    def submit_long(self, text: str, **fields: Any) -> list[Any]:
        """A text split by smpplib (UCS-2 when needed, UDH concatenation); each part's resp."""
        coding = (
            smpplib.consts.SMPP_ENCODING_DEFAULT
            if all(ord(c) < 128 for c in text)
            else smpplib.consts.SMPP_ENCODING_ISO10646
        )
        parts, data_coding, esm_class = smpplib.gsm.make_parts(text, encoding=coding)
        return [
            self.submit(part, data_coding=data_coding, esm_class=esm_class, **fields)
            for part in parts
        ]

    def next_delivered(self, timeout: float = TIMEOUT) -> Any:
        return self.delivered.get(timeout=timeout)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError, smpplib.exceptions.ConnectionError):  # already gone
            self.client.send_pdu(smpplib.smpp.make_pdu("unbind", client=self.client))
        self._reader.join(5)
        self.client.disconnect()

    def __enter__(self) -> Carrier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
