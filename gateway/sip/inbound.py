# A MESSAGE from an app stored as a message (the SIP -> SMS direction), answered after commit.
"""The writer operation behind ``202 Accepted``: the app's text becomes a row in ``messages``
(origin ``account``, source the account's DID, destination E.164), in the same table and life
cycle as SMPP submissions, and the app hears 202 only once that row is committed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.admission import Admission
from gateway.smpp.storeops import message_row
from gateway.smpp.text import choose_coding, count_parts
from gateway.store.schema import messages
from gateway.store.textcrypt import seal_message
from gateway.store.writer import Batch

log = logging.getLogger("gateway.sip")

TON_INTERNATIONAL = 1


def app_message_row(
    message_id: int,
    *,
    account: int,
    source: str,
    destination: str,
    text: str,
    now: datetime,
    validity_until: datetime,
    admission: Admission | None = None,
) -> dict[str, Any]:
    """The messages row of a text an app sent (UCS-2 when GSM 03.38 cannot carry it)."""
    coding = choose_coding(text)
    fields = {
        "source": source,
        "source_ton": TON_INTERNATIONAL,
        "destination": destination,
        "data_coding": coding,
        "esm_class": 0,
        "priority": 0,
        "validity_until": validity_until,
        "schedule_at": None,
    }
    return message_row(
        message_id,
        None,
        fields,
        text=text,
        body=None,
        parts=count_parts(text, coding),
        registered_delivery=0,
        now=now,
        origin="account",
        account_id=account,
        admission=admission,
    )


@dataclass
class StoreAppMessageOp:
    """Store one app's MESSAGE; ``done(message_id, error)`` runs on the loop after commit."""

    account: int
    source: str
    destination: str
    text: str
    now: datetime
    validity_until: datetime
    done: Callable[[dict[str, Any], BaseException | None], None]
    admission: Admission | None = None
    row: dict[str, Any] = field(default_factory=dict)

    def stage(self, batch: Batch) -> None:
        [message_id] = batch.new_ids(1)
        self.row = app_message_row(
            message_id,
            account=self.account,
            source=self.source,
            destination=self.destination,
            text=self.text,
            now=self.now,
            validity_until=self.validity_until,
            admission=self.admission,
        )
        batch.add(messages, seal_message(self.row))

    def finish(self, error: BaseException | None) -> None:
        if error is not None:
            log.error("message from account %d not stored: %s", self.account, error)
        self.done(self.row, error)
