# The sent-by of our Vias names a real address even when SIP listens on every interface.
from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.config import SipListener
from gateway.sip.message import DEFAULT_LIMITS
from gateway.sip.transport import SipTransports


class Quiet:
    def on_message(self, message, flow) -> None: ...
    def on_bad(self, error, data, flow) -> None: ...


def with_udp_listener(host: str, check: Callable[[SipTransports], None]) -> None:
    async def scenario() -> None:
        transports = SipTransports(
            [SipListener(transport="udp", host=host, port=0)], Quiet(),
            limits=DEFAULT_LIMITS, idle_timeout=60, max_connections=10,
        )  # fmt: skip
        await transports.start()
        try:
            check(transports)
        finally:
            await transports.close()

    asyncio.run(scenario())


def test_a_listener_on_every_interface_puts_the_route_to_the_app_in_the_via():
    def check(transports: SipTransports) -> None:
        [bound] = transports.bound
        assert bound.host == "0.0.0.0"
        assert transports.via_address("udp", "127.0.0.1") == ("127.0.0.1", bound.port)
        assert transports.via_address("udp") == ("0.0.0.0", bound.port)  # no peer: as bound

    with_udp_listener("0.0.0.0", check)


def test_a_listener_on_one_address_is_named_as_it_is():
    def check(transports: SipTransports) -> None:
        port = transports.bound[0].port
        assert transports.via_address("udp", "127.0.0.1") == ("127.0.0.1", port)

    with_udp_listener("127.0.0.1", check)
