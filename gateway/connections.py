# The outbound SMPP connections of a node: one SmppClient per enabled connection, kept current.
"""Connections to peer environments and vendors, as provisioned with ``gatewayctl connection``.

:meth:`ConnectionManager.reload` reads the ``connections`` table (blocking part in a thread),
starts a client for every enabled connection, restarts one whose row changed (host, password,
window, ...; seen by ``updated_at``) and unbinds one that was disabled or removed. The node
calls it at start and every couple of seconds, so provisioning needs no restart.

Each client's receipts go to :meth:`gateway.pipeline.Pipeline.peer_receipt` (recorded before
they are answered) and its MO deliver_sm to :meth:`ConnectionManager.mo`, which stores them
like a carrier's submit_sm and answers once they are committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from gateway.admission import Refused
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.secrets import SecretBox
from gateway.smpp.accept import Rules, read_submission
from gateway.smpp.client import ConnectionSettings, SmppClient
from gateway.smpp.codec import Pdu, SmppError
from gateway.smpp.constants import Status
from gateway.smpp.hops import read_path
from gateway.smpp.receipt import Receipt
from gateway.smpp.storeops import message_row
from gateway.store.schema import connections, messages
from gateway.store.textcrypt import seal_message
from gateway.store.writer import Batch, BatchWriter

log = logging.getLogger("gateway.connections")


def utcnow() -> datetime:
    return datetime.now(UTC)


class ConnectionManager:
    """The running clients by connection id."""

    def __init__(
        self, config: Config, engine: Engine, writer: BatchWriter, box: SecretBox, pipeline: Any
    ) -> None:
        self.config = config
        self.engine = engine
        self.writer = writer
        self.box = box
        self.pipeline = pipeline
        self.rules = Rules(plan=config.numbering, default_validity=config.delivery.validity)
        self._clients: dict[int, SmppClient] = {}
        self._versions: dict[int, Any] = {}
        self.states: dict[int, str] = {}

    def client(self, connection_id: int) -> SmppClient | None:
        return self._clients.get(connection_id)

    def clients(self) -> dict[int, SmppClient]:
        """The running clients by connection id (a copy)."""
        return dict(self._clients)

    def __len__(self) -> int:
        return len(self._clients)

    def _rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(connections)).mappings()]

    async def reload(self) -> None:
        rows = await asyncio.get_running_loop().run_in_executor(None, self._rows)
        wanted = {row["id"]: row for row in rows if row["enabled"]}
        for cid in [c for c in self._clients if c not in wanted]:
            log.info(
                "connection %s disabled or removed: unbinding", self._clients[cid].settings.name
            )
            await self._stop(cid)
        for cid, row in wanted.items():
            version = (row["updated_at"], row["enabled"])
            if self._versions.get(cid) == version:
                continue
            if cid in self._clients:
                log.info("connection %s changed: binding again", row["name"])
                await self._stop(cid)
            try:
                settings = ConnectionSettings.from_row(
                    row,
                    self.box,
                    enquire_link=self.config.smpp.enquire_link.total_seconds(),
                    response_timeout=self.config.smpp.response_timeout.total_seconds(),
                )
            except (GatewayError, ValueError) as exc:
                log.error("connection %s cannot be used: %s", row["name"], exc)
                self._versions[cid] = version
                continue
            client = SmppClient(
                settings,
                on_receipt=self._receipt_handler(cid),
                on_mo=self._mo_handler(cid, row["name"]),
                on_state=self._state_handler(cid),
                # the pipeline never has more than max_in_flight messages out: they wait for
                # the window here instead of failing with "queue full" and a retry
                max_queued=self.config.delivery.max_in_flight * 2,
            )
            self._clients[cid] = client
            self._versions[cid] = version
            await client.start()

    async def _stop(self, cid: int) -> None:
        client = self._clients.pop(cid)
        self._versions.pop(cid, None)
        await client.close()

    async def close(self) -> None:
        for cid in list(self._clients):
            await self._stop(cid)

    def _state_handler(self, cid: int) -> Callable[[str], None]:
        def on_state(state: str) -> None:
            self.states[cid] = state

        return on_state

    def _receipt_handler(self, cid: int) -> Callable[[str, Receipt, Pdu], Any]:
        def on_receipt(peer_id: str, receipt: Receipt, pdu: Pdu) -> Any:
            return self.pipeline.peer_receipt(cid, peer_id, receipt)

        return on_receipt

    def _mo_handler(self, cid: int, name: str) -> Callable[[Pdu], Any]:
        async def on_mo(pdu: Pdu) -> int:
            return await self.mo(cid, name, pdu)

        return on_mo

    async def mo(self, cid: int, name: str, pdu: Pdu) -> int:
        """An MO deliver_sm from a connection's peer: stored and routed like a submission;
        the answer is its status once committed."""
        now = utcnow()
        try:
            sub = read_submission(pdu, self.rules, now)
            if sub.concat is not None:
                raise SmppError(
                    Status.ESME_RX_P_APPN, "concatenated MO parts on a connection are not supported"
                )
            admission = self.pipeline.admit(
                origin="connection",
                sender=name,
                source=sub.source,
                destination=sub.destination,
                text=sub.text,
                priority=sub.priority,
                validity_until=sub.validity_until,
                path=read_path(pdu),
                now=now,
            )
        except SmppError as exc:
            log.info("connection %s: MO refused: %s", name, exc)
            return int(exc.status)
        except Refused as exc:
            log.info("connection %s: MO refused: %s", name, exc.reason)
            return int(exc.status)
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.writer.submit(_StoreMo(sub, cid, now, admission, done))
        try:
            row = await done
        except Exception as exc:  # noqa: BLE001 - the store's error: logged, the peer retries
            log.error("connection %s: MO not stored: %s", name, exc)
            return int(Status.ESME_RX_T_APPN)
        self.pipeline.accepted(row)
        return int(Status.ESME_ROK)


class _StoreMo:
    def __init__(
        self, sub: Any, cid: int, now: datetime, admission: Any, done: asyncio.Future[Any]
    ) -> None:
        self.sub, self.cid, self.now, self.admission, self.done = sub, cid, now, admission, done
        self.row: dict[str, Any] | None = None

    def stage(self, batch: Batch) -> None:
        [message_id] = batch.new_ids(1)
        self.row = message_row(
            message_id,
            None,
            self.sub,
            text=self.sub.text,
            body=self.sub.body,
            parts=self.sub.segments,
            registered_delivery=0,
            now=self.now,
            origin="connection",
            connection_id=self.cid,
            admission=self.admission,
        )
        batch.add(messages, seal_message(self.row))

    def finish(self, error: BaseException | None) -> None:
        if self.done.done():
            return
        if error is not None or self.row is None:
            self.done.set_exception(error or RuntimeError("not stored"))
        else:
            self.done.set_result(self.row)
