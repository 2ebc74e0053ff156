# The node's Prometheus metrics: counters and histograms fed by the components, gauges read live.
"""One registry per process (``REGISTRY``), served at ``/metrics`` by the management listener.

Counters and histograms are incremented where things happen (a resp sent to a carrier, a
SIP response, a commit, a delivery); prometheus_client's metrics are thread-safe, so the
writer thread observes its commits directly. Gauges of what is there now (binds, queue
depths, registrations, connection states, messages by state) are read from the node when
scraped, by the :class:`NodeCollector` the node registers at start, so they cannot drift.

Label values are bounded: carrier and connection names come from provisioning, statuses
from the SMPP and SIP status sets, states from the life cycle; nothing from a peer's input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

disable_created_metrics()  # no *_created series: Prometheus does not need them
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # RSS, open fds, CPU: what a soak watches

SMPP_RESPONSES = Counter(
    "gateway_smpp_responses",
    "Answers the gateway sent to carriers' submit_sm/data_sm/query_sm/cancel_sm, by status.",
    ["carrier", "command", "status"],
    registry=REGISTRY,
)
SMPP_THROTTLED = Counter(
    "gateway_smpp_throttled",
    "Submissions refused ESME_RTHROTTLED: a carrier over its throughput (direction=in) or a"
    " peer throttling the gateway (direction=out).",
    ["direction", "peer"],
    registry=REGISTRY,
)
SIP_RESPONSES = Counter(
    "gateway_sip_responses",
    "SIP final responses, sent to apps (direction=sent) or received from them"
    " (direction=received), by method and class (2xx, 4xx, ...).",
    ["direction", "method", "class"],
    registry=REGISTRY,
)
MESSAGES_ENDED = Counter(
    "gateway_messages_ended",
    "Messages that reached a final state since the process started.",
    ["state"],
    registry=REGISTRY,
)
FORWARDED = Counter(
    "gateway_messages_forwarded",
    "Messages a peer over an outbound connection accepted.",
    ["connection"],
    registry=REGISTRY,
)
DELIVERY_LATENCY = Histogram(
    "gateway_delivery_latency_seconds",
    "From acceptance to the app's 2xx (route=sip) or to the peer's acceptance (route=smpp).",
    ["route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
    registry=REGISTRY,
)
COMMIT_LATENCY = Histogram(
    "gateway_store_commit_seconds",
    "Time of one grouped commit of the batch writer (statements and COMMIT).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
    registry=REGISTRY,
)
COMMIT_OPERATIONS = Counter(
    "gateway_store_operations",
    "Operations (messages stored, steps, outcomes, ...) written by the batch writer.",
    registry=REGISTRY,
)
WRITER_ERRORS = Counter(
    "gateway_store_writer_errors",
    "Unexpected errors (not the database's) in the batch writer, by where: stage (one"
    " operation's staging), batch (a transaction), thread (the writer's own loop).",
    ["where"],
    registry=REGISTRY,
)
BACKGROUND_ERRORS = Counter(
    "gateway_background_errors",
    "Unexpected errors in background work (provisioning reload, retention, the pipeline's"
    " tasks, SIP tasks), by task; the task was restarted or its message recovered.",
    ["task"],
    registry=REGISTRY,
)
PLUGIN_ERRORS = Counter(
    "gateway_plugin_errors",
    "Plugin hooks that raised, by plugin and hook (the plugin's on_error policy decides what"
    " became of the message).",
    ["plugin", "hook"],
    registry=REGISTRY,
)

MANAGEMENT_BAD_REQUESTS = Counter(
    "gateway_management_bad_requests",
    "Requests the management listener could not parse or serve, by reason (the HTTP error"
    " class); only the first few a minute are logged, one line each.",
    ["reason"],
    registry=REGISTRY,
)
MANAGEMENT_UNAUTHORIZED = Counter(
    "gateway_management_unauthorized",
    "Requests for /status or /metrics refused 401: no token, or a wrong one"
    " (management.token_file).",
    registry=REGISTRY,
)

SIP_FLOOD_DROPPED = Counter(
    "gateway_sip_flood_dropped",
    "SIP datagrams (udp) and messages (tcp, tls) dropped unread from addresses over"
    " sip.pike_limit, by transport.",
    ["transport"],
    registry=REGISTRY,
)
SIP_CONNECTIONS_CLOSED = Counter(
    "gateway_sip_connections_closed",
    "TCP/TLS connections the gateway refused or closed to protect the listener, by reason:"
    " max_connections, per_address, flood, evicted (oldest unauthenticated one, to admit a"
    " new one), request_timeout (a message or first request not whole in time).",
    ["reason"],
    registry=REGISTRY,
)
SIP_ATTEMPTS_CUT = Counter(
    "gateway_sip_attempts_cut",
    "MESSAGEs to apps ended before an answer or timer F, by reason: reregistered (the"
    " account registered again from another flow: the message is sent again at once),"
    " flow_closed (the TCP/TLS connection it went on closed).",
    ["reason"],
    registry=REGISTRY,
)
SIP_MESSAGES_THROTTLED = Counter(
    "gateway_sip_messages_throttled",
    "MESSAGEs from apps answered 503 with Retry-After for going over sip.message_rate.",
    registry=REGISTRY,
)
SMPP_CONNECTIONS_REFUSED = Counter(
    "gateway_smpp_connections_refused",
    "SMPP connections closed at once, before reading a byte, by reason: unknown_address (no"
    " carrier allows it), per_address (smpp.max_unbound_per_address), total"
    " (smpp.max_unbound), fd_limit (the process is near its file descriptor limit).",
    ["reason"],
    registry=REGISTRY,
)
SMPP_BIND_FAILURES = Counter(
    "gateway_smpp_bind_failures",
    "Binds refused, by reason: unknown_system_id, wrong_password, address_not_allowed (all"
    " answered ESME_RBINDFAIL alike), disabled, max_binds, blocked (by the failed-bind guard,"
    " no password checked), busy (no room to check the password).",
    ["reason"],
    registry=REGISTRY,
)
SMPP_BIND_CHECKS = Counter(
    "gateway_smpp_bind_checks",
    "Bind passwords checked (scrypt), including the equal-cost checks run for unknown"
    " system_ids and disallowed addresses.",
    registry=REGISTRY,
)


SIP_METHODS = frozenset(
    {"REGISTER", "MESSAGE", "OPTIONS", "INVITE", "ACK", "BYE", "CANCEL", "SUBSCRIBE", "NOTIFY",
     "PUBLISH", "INFO", "PRACK", "UPDATE", "REFER"}
)  # fmt: skip


class Children:
    """``metric.labels(...)`` with the children kept: the hot path skips the registry's lock
    and lookup (label values are bounded, so the cache is too)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._cache: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._cache.get(labels)
        if child is None:
            child = self._cache[labels] = self.metric.labels(*labels)
        return child


smpp_responses = Children(SMPP_RESPONSES)
sip_responses = Children(SIP_RESPONSES)
messages_ended = Children(MESSAGES_ENDED)
delivery_latency = Children(DELIVERY_LATENCY)


def status_class(status: int) -> str:
    """200 -> "2xx"."""
    return f"{status // 100}xx"


def method_label(method: str) -> str:
    """A SIP method as a label value: the RFC methods by name, anything else "other" (a
    peer must not be able to grow the label set)."""
    return method if method in SIP_METHODS else "other"


Reading = Callable[[], Iterable[tuple[tuple[str, ...], float]]]


class NodeCollector:
    """Gauges read from the running node at each scrape: ``readings`` maps a metric name to
    (help text, label names, a function giving (label values, value) pairs)."""

    def __init__(self, readings: dict[str, tuple[str, tuple[str, ...], Reading]]) -> None:
        self.readings = readings

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily(name, text, labels=list(labels)) for name, (text, labels, _) in
                self.readings.items()]  # fmt: skip

    def collect(self) -> Iterable[Metric]:
        for name, (text, labels, read) in self.readings.items():
            family = GaugeMetricFamily(name, text, labels=list(labels))
            for values, value in read():
                family.add_metric(list(values), value)
            yield family


def register(collector: Any) -> Callable[[], None]:
    """Register ``collector``; returns the function that unregisters it."""
    REGISTRY.register(collector)
    return lambda: REGISTRY.unregister(collector)
