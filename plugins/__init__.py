# The plugin hook API: on_accept, on_route, on_outcome, on_waiting; loading plugins by name.
"""Plugins let an operator add policy without touching the gateway.

A plugin is an object with any of these methods (every hook is optional):

- ``on_accept(message: MessageView) -> Verdict | None`` before a message is stored: return
  :class:`Reject` (the sender gets ESME_RX_R_APPN or SIP 403 with the reason) or
  :class:`Rewrite` (new source, destination or text), or None to let it pass unchanged.
- ``on_route(message: MessageView, decision: Decision) -> Decision | None``: another routing
  decision (see :mod:`routing.router`), or None to keep it.
- ``on_outcome(event: OutcomeEvent) -> None``: a message reached a final state.
- ``on_waiting(event: OutcomeEvent) -> None``: a message is kept for an app that is not
  registered (e.g. to wake the app with a push notification).
- ``async start()`` / ``async close()``: called when the node starts and stops.

Hooks run on the event loop and must not block. A hook that raises is logged and counted
(``gateway_plugin_errors_total{plugin,hook}``); what becomes of the message is the plugin's
``on_error`` policy (:class:`gateway.config.PluginConfig`) for ``on_accept`` and ``on_route``:
``reject`` (the default: closed, so a broken content filter lets nothing through unchecked)
raises :class:`PluginFailure`, which refuses the message at admission (ESME_RSYSERR / SIP
500) or fails a delivery attempt (retried by ``delivery.retry``, expired at the end of its
validity); ``accept`` goes on as if the plugin had returned None. ``on_outcome`` and
``on_waiting`` only notify: their errors never change a message.

A plugin is made by ``create(options)`` in a module of this package (``webhook``,
``content_filter``) or by an entry point in the group ``smpp_sip_gateway.plugins``; the
config names it (``plugins: [{name: webhook, options: {...}}]``) and the plugin checks its
options, raising :class:`PluginError` with the option's key and the reason.
"""

from __future__ import annotations

import importlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any

from gateway.config import PluginConfig
from gateway.errors import ConfigError, GatewayError
from gateway.metrics import PLUGIN_ERRORS
from gateway.smpp.constants import Status
from routing.router import Decision

log = logging.getLogger("gateway.plugins")

ENTRY_POINT_GROUP = "smpp_sip_gateway.plugins"


class PluginError(GatewayError):
    """A plugin's option is wrong: ``key`` names it inside the plugin's options."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


class PluginFailure(GatewayError):
    """A plugin whose policy is ``on_error: reject`` raised in ``on_accept`` or ``on_route``:
    the message is not let through unchecked. Answered ESME_RSYSERR to a carrier and 500 to
    an app (a fault of the gateway's, not of the message); the reason names the plugin and
    the hook, never the plugin's exception (logged)."""

    status = Status.ESME_RSYSERR
    sip = 500

    def __init__(self, plugin: str, hook: str) -> None:
        self.plugin = plugin
        self.hook = hook
        super().__init__(f"plugin {plugin} failed in {hook}")


@dataclass(frozen=True, slots=True)
class MessageView:
    """What a plugin sees of a message before it is stored."""

    origin: str  # carrier | account | connection
    sender: str  # the carrier's name, the account id or the connection's name
    source: str
    destination: str  # E.164 digits
    text: str | None
    priority: int


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str


@dataclass(frozen=True, slots=True)
class Rewrite:
    source: str | None = None
    destination: str | None = None
    text: str | None = None


Verdict = Reject | Rewrite


@dataclass(frozen=True, slots=True)
class OutcomeEvent:
    """A message's final state (``on_outcome``) or its wait for an app (``on_waiting``)."""

    event: str  # "outcome" | "waiting"
    message_id: int
    state: str
    source: str
    destination: str
    route: str | None
    reason: str | None
    error_code: int | None
    at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "message_id": str(self.message_id),
            "state": self.state,
            "source": self.source,
            "destination": self.destination,
            "route": self.route,
            "reason": self.reason,
            "error_code": self.error_code,
            "at": self.at.isoformat(),
        }


Factory = Callable[[Mapping[str, Any]], Any]


def _factory(name: str) -> Factory:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            return entry.load()  # type: ignore[no-any-return]
    try:
        module = importlib.import_module(f"plugins.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"plugins.{name}":
            raise
        raise LookupError(name) from None
    create = getattr(module, "create", None)
    if create is None:
        raise LookupError(name)
    return create  # type: ignore[no-any-return]


class PluginHost:
    """The loaded plugins, called in config order."""

    HOOKS = ("start", "close", "on_accept", "on_route", "on_outcome", "on_waiting")

    def __init__(
        self, plugins: Sequence[tuple[str, Any]] = (), on_error: Sequence[str] | None = None
    ) -> None:
        """``on_error``: each plugin's policy, in the same order (default: reject)."""
        self.plugins = list(plugins)
        self.errors: Counter[str] = Counter()
        policies = list(on_error or ())
        self._accepting = {
            name
            for i, (name, _) in enumerate(self.plugins)
            if i < len(policies) and policies[i] == "accept"
        }
        self._hooks = {
            hook: [
                (name, getattr(plugin, hook))
                for name, plugin in self.plugins
                if callable(getattr(plugin, hook, None))
            ]
            for hook in self.HOOKS
        }

    @classmethod
    def load(cls, configs: Sequence[PluginConfig], source: str = "") -> PluginHost:
        """Make every enabled plugin; ConfigError (file, ``plugins[i]...``, reason) if one
        cannot be found or refuses its options."""
        made: list[tuple[str, Any]] = []
        policies: list[str] = []
        for index, config in enumerate(configs):
            if not config.enabled:
                continue
            where = f"plugins[{index}]"
            try:
                factory = _factory(config.name)
            except LookupError:
                raise ConfigError(
                    source,
                    f"{where}.name",
                    f"no plugin {config.name!r} (not in plugins/ nor in the entry points"
                    f" group {ENTRY_POINT_GROUP})",
                ) from None
            try:
                made.append((config.name, factory(dict(config.options or {}))))
            except PluginError as exc:
                raise ConfigError(source, f"{where}.options.{exc.key}", exc.reason) from None
            policies.append(config.on_error)
        return cls(made, policies)

    def __len__(self) -> int:
        return len(self.plugins)

    def _each(self, hook: str) -> list[tuple[str, Callable[..., Any]]]:
        return self._hooks[hook]

    def has(self, hook: str) -> bool:
        return bool(self._hooks[hook])

    def _failed(self, name: str, hook: str) -> None:
        """Log (the first ten times, with the traceback) and count a hook that raised; for
        on_accept and on_route of a plugin whose policy is reject, raise PluginFailure."""
        self.errors[f"{name}.{hook}"] += 1
        PLUGIN_ERRORS.labels(name, hook).inc()
        closed = hook in ("on_accept", "on_route") and name not in self._accepting
        if self.errors[f"{name}.{hook}"] <= 10:
            then = "the message does not go on" if closed else "the message goes on without it"
            log.exception("plugin %s: %s failed (%s)", name, hook, then)
        if closed:
            raise PluginFailure(name, hook)

    async def start(self) -> None:
        for name, hook in self._each("start"):
            await hook()
            log.info("plugin %s started", name)

    async def close(self) -> None:
        for name, hook in self._each("close"):
            try:
                await hook()
            except Exception:  # noqa: BLE001 - a plugin's own error: logged and counted
                self._failed(name, "close")

    def accept(self, message: MessageView) -> tuple[MessageView, str | None]:
        """The message as the plugins leave it, and a rejection reason (None: accepted);
        PluginFailure when a plugin whose policy is reject raised."""
        for name, hook in self._each("on_accept"):
            try:
                verdict = hook(message)
            except Exception:  # noqa: BLE001 - a plugin's own error: logged and counted
                self._failed(name, "on_accept")
                continue
            if isinstance(verdict, Reject):
                return message, f"refused by plugin {name}: {verdict.reason}"
            if isinstance(verdict, Rewrite):
                message = MessageView(
                    message.origin,
                    message.sender,
                    verdict.source if verdict.source is not None else message.source,
                    verdict.destination if verdict.destination is not None else message.destination,
                    verdict.text if verdict.text is not None else message.text,
                    message.priority,
                )
        return message, None

    def route(self, message: MessageView, decision: Decision) -> Decision:
        """The decision as the plugins leave it; PluginFailure when a plugin whose policy is
        reject raised."""
        for name, hook in self._each("on_route"):
            try:
                changed = hook(message, decision)
            except Exception:  # noqa: BLE001 - a plugin's own error: logged and counted
                self._failed(name, "on_route")
                continue
            if isinstance(changed, Decision):
                decision = changed
        return decision

    def notify(self, event: OutcomeEvent) -> None:
        hook_name = "on_outcome" if event.event == "outcome" else "on_waiting"
        for name, hook in self._each(hook_name):
            try:
                hook(event)
            except Exception:  # noqa: BLE001 - a plugin's own error: logged and counted
                self._failed(name, hook_name)
