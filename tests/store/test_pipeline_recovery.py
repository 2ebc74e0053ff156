# The pipeline recovers a message whose task fails unexpectedly (it is retried, its destination
# is not blocked), and plugins fail closed by default (issue 15, "nothing dies in silence").
from __future__ import annotations

import pytest

from gateway.admission import Refused
from gateway.metrics import BACKGROUND_ERRORS, PLUGIN_ERRORS
from gateway.smpp.constants import Status
from plugins import PluginHost
from tests.store.test_pipeline import JOHN, FakeClient, Harness, account_id, ctl, run

__all__ = ["ctl"]  # the fixture, shared with tests/store/test_pipeline.py

PEER_NUMBER = "22245123456"


def background_errors(task: str) -> float:
    return BACKGROUND_ERRORS.labels(task)._value.get()


def plugin_errors(plugin: str, hook: str) -> float:
    return PLUGIN_ERRORS.labels(plugin, hook)._value.get()


class ExplodingClient(FakeClient):
    """A connection whose submit raises once (a bug in the forwarding code path)."""

    async def submit(self, message):
        if not self.submitted:
            self.submitted.append(message)
            raise TypeError("a bug while forwarding")
        return await super().submit(message)


def test_a_forward_that_raises_is_retried_and_does_not_block_its_destination(ctl):
    async def scenario(h: Harness) -> None:
        before = background_errors("smpp forward")
        client = ExplodingClient()
        h.connections.clients = {h.conn_ids["A"]: client, h.conn_ids["B"]: FakeClient()}
        first = await h.submit(PEER_NUMBER, "first")
        await h.settle()
        await h.quiet()
        assert h.pipeline.in_flight == {}  # not left in flight
        row = h.row(first)
        assert (row["state"], row["attempts"]) == ("retry-wait", 1)
        assert "internal error: TypeError: a bug while forwarding" in row["reason"]
        assert background_errors("smpp forward") == before + 1
        second = await h.submit(PEER_NUMBER, "second")  # waits behind the first, in order
        h.pipeline.sweep(row["next_attempt_at"])  # the retry time comes: both go out
        await h.settle(2)
        await h.quiet()
        assert [h.row(m)["state"] for m in (first, second)] == ["forwarded", "forwarded"]
        assert [m.text for m in client.submitted] == ["first", "first", "second"]

    run(ctl, scenario)


class Broken:
    def __init__(self) -> None:
        self.routed = 0

    def on_accept(self, message):
        if message.text == "explode":
            raise RuntimeError("a bug in the filter")

    def on_route(self, message, decision):
        self.routed += 1
        if message.text == "late" and self.routed == 2:  # at its first delivery attempt
            raise RuntimeError("a bug in routing")
        return None


@pytest.mark.parametrize("policy", [None, "reject", "accept"])
def test_a_plugin_raising_in_on_accept_refuses_the_message_unless_its_policy_is_accept(ctl, policy):
    async def scenario(h: Harness) -> None:
        h.sip.online.add(account_id(h, "1111"))
        before = plugin_errors("filter", "on_accept")
        h.pipeline.plugins = PluginHost(
            [("filter", Broken())], None if policy is None else [policy]
        )
        if policy == "accept":
            mid = await h.submit(JOHN, "explode")
            await h.settle()
            await h.quiet()
            assert h.row(mid)["state"] == "delivered"
        else:  # the default is closed
            with pytest.raises(Refused) as refused:
                await h.submit(JOHN, "explode")
            assert (refused.value.status, refused.value.sip) == (Status.ESME_RSYSERR, 500)
            assert refused.value.reason == "plugin filter failed in on_accept"
            assert h.sip.sent == []
        assert plugin_errors("filter", "on_accept") == before + 1
        mid = await h.submit(JOHN, "fine")  # the others go on
        await h.settle()
        await h.quiet()
        assert h.row(mid)["state"] == "delivered"

    run(ctl, scenario)


def test_a_plugin_raising_in_on_route_at_delivery_retries_the_message(ctl):
    async def scenario(h: Harness) -> None:
        h.sip.online.add(account_id(h, "1111"))
        h.pipeline.plugins = PluginHost([("router", Broken())])
        mid = await h.submit(JOHN, "late")  # admitted (first on_route), fails at its attempt
        await h.settle()
        await h.quiet()
        assert h.pipeline.in_flight == {}
        row = h.row(mid)
        assert (row["state"], row["attempts"]) == ("retry-wait", 1)
        assert row["reason"] == "plugin router failed in on_route"
        h.pipeline.sweep(row["next_attempt_at"])
        await h.settle()
        await h.quiet()
        assert (h.row(mid)["state"], h.row(mid)["attempts"]) == ("delivered", 2)

    run(ctl, scenario)
