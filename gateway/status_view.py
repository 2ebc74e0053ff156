# gatewayctl status: a running node's /status as tables, live on a terminal, with rates.
"""Reads ``/status`` from the node's management listener (``management.host:port`` of the
config, or ``--url``), with the config's ``management.token_file`` token if it has one. On
a terminal the view refreshes every ``--interval`` seconds until Ctrl-C; otherwise (or with
``--once``) it prints one snapshot, taken twice ``--interval`` apart so the rates (submits,
deliveries per second) are real. ``--json`` prints the raw answer for scripts.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import click
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gateway.errors import GatewayError
from gateway.management import read_token
from gateway.render import console as table_console

RATED = ("smpp_accepted", "smpp_refused", "delivered", "forwarded", "failed", "retries")


class Unreachable(GatewayError):
    """The management listener did not answer."""


def fetch(url: str, timeout: float = 5.0, token: bytes | None = None) -> dict[str, Any]:
    """``/status`` of the node at ``url``, sending ``token`` (management.token_file) if any."""
    if not url.startswith(("http://", "https://")):
        raise Unreachable(f"--url {url!r}: must start with http:// or https://")
    try:
        request = urllib.request.Request(f"{url}/status")  # noqa: S310 - http(s) only, checked above
        if token is not None:
            request.add_header("Authorization", f"Bearer {token.decode('ascii')}")
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only, checked above
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        hint = (
            ": set management.token_file in the config to the node's token file"
            if exc.code == 401
            else ""
        )
        raise Unreachable(
            f"management listener at {url} answered {exc.code} {exc.reason}{hint}"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(
            f"management listener at {url}: {reason} (is the gateway running? see"
            " management.host/port in the config, or pass --url)"
        ) from None


def rates(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, float | None]:
    """Per-second rates of the running totals between two snapshots (None without one)."""
    if before is None:
        return {name: None for name in RATED}
    seconds = after["uptime_seconds"] - before["uptime_seconds"]
    if seconds <= 0:
        return {name: None for name in RATED}
    return {
        name: max(0, after["totals"].get(name, 0) - before["totals"].get(name, 0)) / seconds
        for name in RATED
    }


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text("-" if v is None else str(v)) for v in row))
    if not rows:
        table.add_row(*(Text("(none)") if i == 0 else Text("") for i in range(len(columns))))
    return table


def view(status: dict[str, Any], per_second: dict[str, float | None]) -> Group:
    store = status["store"]
    head = Text(
        f"env {status['env']} · version {status['version']} · up {status['uptime_seconds']:.0f}s"
        f" · store {'available' if store['available'] else 'UNAVAILABLE: ' + str(store['problem'])}"
        f" · {store['pending_writes']} writes pending"
    )
    binds = _table(
        "Carrier binds",
        ["carrier", "system_id", "type", "address", "tls", "since", "unanswered"],
        [
            [b["carrier"], b["system_id"], b["bind_type"], b["address"],
             "yes" if b["tls"] else "no", b["since"], b["unanswered"]]
            for b in status["binds"]
        ],
    )  # fmt: skip
    connections = _table(
        "Outbound connections",
        ["name", "peer", "type", "state", "retry in", "waiting for window"],
        [
            [c["name"], c["peer"], c["bind_type"], c["state"],
             None if c["retry_in"] is None else f"{c['retry_in']:.0f}s", c["waiting_for_window"]]
            for c in status["connections"]
        ],
    )  # fmt: skip
    queue = status["queue"]
    regs = status["registrations"]
    waiting = ", ".join(f"{k} {v}" for k, v in queue["waiting_for_peers"].items()) or "-"
    lanes = ", ".join(f"{k} {v}" for k, v in queue["lanes"].items())
    backlog = _table(
        "Queue and registrations",
        ["what", "now"],
        [
            ["queued in memory", lanes],
            ["in flight", queue["in_flight"]],
            ["more due in the store", "yes" if queue["more_in_store"] else "no"],
            ["waiting for peers", waiting],
            ["registered accounts", regs["accounts"]],
            ["live contacts", regs["contacts"]],
        ],
    )
    traffic = _table(
        "Traffic",
        ["what", "since start", "per second"],
        [
            [name.replace("_", " "), status["totals"].get(name, 0),
             None if per_second[name] is None else f"{per_second[name]:.1f}"]
            for name in RATED
        ],
    )  # fmt: skip
    return Group(head, binds, connections, backlog, traffic)


@click.command("status")
@click.option("--url", help="Management listener, e.g. http://127.0.0.1:8080 (default: config).")
@click.option("--once", is_flag=True, help="Print one snapshot and exit (default off a terminal).")
@click.option(
    "--interval",
    type=click.FloatRange(0.2, 60),
    default=1.0,
    show_default=True,
    help="Seconds between two refreshes (and between the two samples of --once).",
)
@click.option("--json", "as_json", is_flag=True, help="Print /status as JSON and exit.")
@click.pass_obj
def status_cmd(obj: Any, url: str | None, once: bool, interval: float, as_json: bool) -> None:
    """Live view of a running gateway: binds, connections, registrations, queue, rates."""
    try:
        management = obj.config.management
    except GatewayError:
        if url is None:
            raise
        management = None  # --url to a node without a readable config here: no token
    if url is None:
        assert management is not None
        url = f"http://{management.host}:{management.port}"
    token = read_token(management.token_file) if management and management.token_file else None
    url = url.rstrip("/")

    def get(url: str) -> dict[str, Any]:
        return fetch(url, token=token)

    if as_json:
        click.echo(json.dumps(get(url), indent=2, sort_keys=True))
        return
    console = table_console()  # off a terminal: whole values, not cut to 80 columns
    first = get(url)
    if once or not console.is_terminal:
        time.sleep(interval)
        second = get(url)
        console.print(view(second, rates(first, second)))
        return
    previous = first
    with Live(view(first, rates(None, first)), console=console, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                current = get(url)
                live.update(view(current, rates(previous, current)), refresh=True)
                previous = current
        except KeyboardInterrupt:
            pass
