# What the pipeline decides about a message before it is stored: refused, or how it is kept.
"""The answer of :meth:`gateway.pipeline.Pipeline.admit`, shared by the SMPP server, the SIP
side and the outbound connections, which store the message with it.

A refusal carries its wire answers (docs/architecture.md rule 4): the SMPP command_status for a
submit_sm/deliver_sm and the SIP status for an app's MESSAGE, with the reason in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.errors import GatewayError
from gateway.smpp.constants import Status


class Refused(GatewayError):
    """The message is not accepted: no route, a plugin said no, a loop between envs."""

    def __init__(
        self, reason: str, *, status: int = Status.ESME_RINVDSTADR, sip: int = 404
    ) -> None:
        self.reason = reason
        self.status = status
        self.sip = sip
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Admission:
    """How an accepted message is first stored."""

    state: str  # routed (to send now) | retry-wait (its app is offline: parked) | accepted
    lane: str  # priority | bulk
    route: str | None = None  # sip:<account id> or smpp:<connection name>
    reason: str | None = None  # why it is parked
    next_attempt_at: datetime | None = None  # parked: when it is looked at again at the latest
    path: str | None = None  # the envs it came through (comma-separated), for loop protection
    upstream: str | None = None  # its id in the environment that forwarded it
    rewrite: dict[str, str] | None = None  # source / destination / text a plugin changed
