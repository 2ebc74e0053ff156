# The gateway process: checks what the config points at, opens the store, runs until a signal.
"""Wiring of one gateway node.

The node checks its config and store, starts the batch writer, the plugins, the SIP side
(registrar, MESSAGE), the delivery pipeline, the SMPP listeners and the outbound connections,
and serves until SIGINT or SIGTERM. Shutdown is ordered: stop accepting (answer and unbind
every carrier), let the pipeline settle what is in flight, unbind the connections, close the
SIP side and the plugins, write what is queued, close the store.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import resource
import signal
import socket
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway import fds, logs, metrics, retention
from gateway.config import Config, format_duration
from gateway.connections import ConnectionManager
from gateway.errors import GatewayError
from gateway.management import ManagementServer, read_token
from gateway.pipeline import Pipeline
from gateway.routes import RoutingCache
from gateway.secrets import SecretBox, require_private_file
from gateway.sip.accounts import AccountDirectory
from gateway.sip.server import SipServer
from gateway.smpp.carriers import CarrierDirectory
from gateway.smpp.server import SmppServer
from gateway.status import Node
from gateway.store import textcrypt
from gateway.store.engine import (
    display_url,
    make_engine,
    require_current,
    require_private_store,
)
from gateway.store.textcrypt import TextCipher
from gateway.store.writer import BatchWriter
from gateway.tasks import forever
from plugins import PluginHost

log = logging.getLogger("gateway")

RELOAD_SECONDS = 2.0  # how soon provisioning changes reach a running node


def _tls_problem(where: str, cert: str, key: str) -> str | None:
    for role, path in (("cert", cert), ("key", key)):
        if not Path(path).is_file():
            return f"{where}.{role}: file not found: {path}"
    try:
        require_private_file(key, f"{where}.key", "TLS private key")
    except GatewayError as exc:
        return str(exc)
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        return f"{where}: cannot load certificate {cert} with key {key}: {exc}"
    return None


def _files_problems(config: Config) -> list[str]:
    """TLS files (present, loadable, private keys owner-only), the SQLite store's mode and
    the management token file, as ``key: reason`` lines."""
    problems: list[str] = []
    for i, listener in enumerate(config.smpp.listen):
        if listener.tls is not None:
            where = f"{config.source}: smpp.listen[{i}].tls"
            problem = _tls_problem(where, listener.tls.cert, listener.tls.key)
            if problem:
                problems.append(problem)
    for i, sip_listener in enumerate(config.sip.listen):
        if sip_listener.transport == "tls" and sip_listener.cert and sip_listener.key:
            where = f"{config.source}: sip.listen[{i}]"
            problem = _tls_problem(where, sip_listener.cert, sip_listener.key)
            if problem:
                problems.append(problem)
    try:
        require_private_store(config.database)
    except GatewayError as exc:
        problems.append(f"{config.source}: {exc}")
    if config.management.token_file:
        try:
            read_token(config.management.token_file)
        except GatewayError as exc:
            problems.append(f"{config.source}: {exc}")
    return problems


def _listeners(config: Config) -> list[tuple[str, str, int, int]]:
    """(config key, host, port, socket type) of every listener with a fixed port."""
    found = [
        (f"smpp.listen[{i}]", listener.host, listener.port, socket.SOCK_STREAM)
        for i, listener in enumerate(config.smpp.listen)
    ]
    for i, sip_listener in enumerate(config.sip.listen):
        kind = socket.SOCK_DGRAM if sip_listener.transport == "udp" else socket.SOCK_STREAM
        found.append((f"sip.listen[{i}]", sip_listener.host, sip_listener.port, kind))
    management = config.management
    found.append(("management", management.host, management.port, socket.SOCK_STREAM))
    return [entry for entry in found if entry[2] != 0]


def listen_problems(config: Config) -> list[str]:
    """Listeners whose address cannot be bound now (in use, not local, not permitted), as
    ``key: cannot listen on host:port: reason``: found before anything starts, so a busy
    port is one line instead of a traceback halfway through the start."""
    problems: list[str] = []
    for key, host, port, kind in _listeners(config):
        try:
            addresses = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE)
        except (socket.gaierror, UnicodeError) as exc:
            problems.append(f"{key}: cannot listen on {host}:{port}: cannot resolve {host}: {exc}")
            continue
        for family, sock_type, proto, _, address in addresses:
            try:
                with socket.socket(family, sock_type, proto) as probe:
                    if sock_type == socket.SOCK_STREAM:  # as asyncio's create_server does
                        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(address)
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
                problems.append(f"{key}: cannot listen on {host}:{port}: {reason}")
                break
    return problems


def preflight(config: Config) -> list[str]:
    """Everything that would stop the node from serving, as ``key: reason`` lines."""
    problems = _files_problems(config)
    try:
        SecretBox.from_key_file(config.secret_key_file)
    except GatewayError as exc:
        problems.append(str(exc))
    try:
        engine = make_engine(config.database, create=False)
        try:
            require_current(engine)
        finally:
            engine.dispose()
    except GatewayError as exc:
        problems.append(str(exc))
    return problems


def describe(config: Config) -> list[str]:
    """The config as log lines (no secret: the database password is hidden)."""
    lines = [
        f"env {config.env}, database {display_url(config.database)}",
        f"numbering: country code {config.numbering.country_code}, "
        f"national prefix {config.numbering.national_prefix!r}",
    ]
    for listener in config.smpp.listen:
        kind = "smpp+tls" if listener.tls else "smpp"
        where = f"{listener.host}:{listener.port}"
        lines.append(f"{kind} listener {where} (system_id {config.smpp.system_id})")
    for sip_listener in config.sip.listen:
        where = f"{sip_listener.host}:{sip_listener.port}"
        lines.append(f"sip {sip_listener.transport} listener {where}")
    lines.append(f"sip domain {config.sip.domain}")
    lines.append(f"management {config.management.host}:{config.management.port}")
    retry = ", ".join(format_duration(d) for d in config.delivery.retry)
    lines.append(f"delivery: validity {format_duration(config.delivery.validity)}, retry {retry}")
    return lines


class NodeFailed(GatewayError):
    """The node cannot go on (its store writer failed): it stops with an error, and a non-zero
    exit, so that its supervisor (systemd: Restart=on-failure) starts it again."""


async def _until_signal_or_failure(writer: BatchWriter) -> str:
    """The signal that stops the node; NodeFailed if the writer fails first."""
    signalled = asyncio.ensure_future(_wait_for_signal())
    failed = asyncio.ensure_future(writer.failed())
    await asyncio.wait({signalled, failed}, return_when=asyncio.FIRST_COMPLETED)
    if failed.done():
        signalled.cancel()
        raise NodeFailed(f"the store writer failed, stopping to be restarted: {failed.result()}")
    failed.cancel()
    return signalled.result()


async def _wait_for_signal() -> str:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[str] = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda s=sig: stop.done() or stop.set_result(s.name))
    log.info("ready; stop with Ctrl-C or SIGTERM")  # only once the handlers are in place
    return await stop


# Provisioning reloads run on a thread of their own: never behind bind password checks or
# anything else in the default executor (issue 15).
RELOADS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reload")


async def _reload_forever(
    smpp: SmppServer,
    accounts: AccountDirectory,
    routes: RoutingCache,
    connections: ConnectionManager,
    every: float,
) -> None:
    """Provisioning changes made with gatewayctl reach the running node within ``every``."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        try:
            await loop.run_in_executor(RELOADS, smpp.directory.load)
            smpp.apply_unblocks(await loop.run_in_executor(RELOADS, smpp.read_unblocks))
            before = len(accounts)
            await loop.run_in_executor(RELOADS, accounts.load)
            if len(accounts) != before:
                log.info("sip: %d accounts (was %d)", len(accounts), before)
            if await loop.run_in_executor(RELOADS, routes.load):
                table = routes.table
                log.info(
                    "routing: %d DIDs, %d policies (version %d)",
                    table.did_count,
                    table.policy_count,
                    routes.version,
                )
            await connections.reload()
        except SQLAlchemyError as exc:
            log.warning("reloading provisioning failed: %s", exc)
            continue
        smpp.enforce_directory()


async def _purge_forever(config: Config, engine: Engine) -> None:
    """Retention (gateway/retention.py) every ``retention.interval``, off the event loop."""
    loop = asyncio.get_running_loop()
    every = config.retention.interval.total_seconds()
    while True:
        try:
            done = await loop.run_in_executor(
                None, lambda: retention.purge(engine, config.retention, datetime.now(UTC))
            )
            if done.texts or done.messages or done.cdrs:
                log.info("retention: %s", done)
        except SQLAlchemyError as exc:
            log.warning(
                "retention purge failed (tried again in %s): %s",
                format_duration(config.retention.interval),
                exc,
            )
        await asyncio.sleep(every)


async def run(config: Config, engine: Engine) -> None:
    """Start the listeners and the pipeline, serve until a signal, then shut down in order."""
    loop = asyncio.get_running_loop()
    plugins = PluginHost.load(config.plugins, config.source)
    box = SecretBox.from_key_file(config.secret_key_file)
    # message texts, parts and outbox PDUs sealed at rest; read back whether sealed or not
    textcrypt.configure(TextCipher.from_box(box, encrypt=config.retention.encrypt_text))
    writer = BatchWriter(engine)
    writer.start(loop)
    directory = CarrierDirectory(engine)
    await loop.run_in_executor(None, directory.load)
    accounts = AccountDirectory(engine)
    await loop.run_in_executor(None, accounts.load)
    routes = RoutingCache(engine)
    await loop.run_in_executor(None, routes.load)
    # file descriptors running short: accept() failing, or connections near the limit
    fd_watch = fds.FdWatch()
    loop.set_exception_handler(fd_watch.exception_handler(loop.get_exception_handler()))
    smpp = SmppServer(config, engine, writer, directory, fds=fd_watch)
    # nonces signed with a key from the key file: one from before a restart (or from another
    # node sharing it) is recognised as ours and answered with a stale challenge (the app
    # retries at once), not refused; a per-boot epoch keeps it from being accepted again
    sip = SipServer(config, engine, writer, accounts, nonce_secret=box.derive("sip nonces"))
    pipeline = Pipeline(config, writer, routes, accounts, directory, plugins)
    connections = ConnectionManager(config, engine, writer, box, pipeline)
    pipeline.sip, pipeline.outbox, pipeline.connections = sip, smpp.outbox, connections
    # policies --carrier: a carrier's bind releases what waits for it; its throughput caps
    # the message parts we send it (gateway/smpp/outbox.py)
    smpp.outbox.on_bound = pipeline.carrier_bound
    smpp.outbox.rate_of = lambda cid: getattr(directory.by_id(cid), "throughput", None)
    smpp.pipeline = sip.pipeline = pipeline
    sip.on_registered = pipeline.registered
    node = Node(
        config, engine, datetime.now(UTC), writer, smpp, sip, pipeline, connections, fd_watch
    )
    unregister = metrics.register(node.collector())
    management = ManagementServer.from_config(config.management, node.status, node.readiness)
    # an unexpected error in either is logged, counted and the loop started again (tasks.py)
    reload = loop.create_task(
        forever(
            "provisioning reload",
            lambda: _reload_forever(smpp, accounts, routes, connections, RELOAD_SECONDS),
        )
    )
    purging = loop.create_task(forever("retention purge", lambda: _purge_forever(config, engine)))
    try:
        await plugins.start()
        await sip.start()
        await pipeline.start()
        await smpp.start()
        await connections.reload()
        table = routes.table
        log.info(
            "routing: %d DIDs, %d policies, %d outbound connections",
            table.did_count,
            table.policy_count,
            len(connections),
        )
        await management.start()
        received = await _until_signal_or_failure(writer)
        log.info("%s received, shutting down", received)
    finally:
        reload.cancel()
        purging.cancel()
        pipeline.stop_sending()  # while the carriers unbind, nothing new goes out to apps
        await management.close()
        unregister()
        await smpp.close()
        await pipeline.close()
        await connections.close()
        await sip.close()
        await plugins.close()
        await loop.run_in_executor(None, writer.close)
        if writer.commits:
            log.info(
                "writer: %d operations in %d commits (%.1f per commit)",
                writer.written,
                writer.commits,
                writer.written / writer.commits,
            )


GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Fewer collections: a node holds many short-lived transactions and messages at once, and
    the default first-generation threshold (700 allocations) made collections of the older
    generations take a large share of the CPU and long pauses (bench/README.md). Objects made
    at start (code, config, caches) are frozen out of collections."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): a faster event loop, same semantics."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _raise_fd_limit() -> None:
    """One descriptor per connection: the soft RLIMIT_NOFILE (often 1024) up to the hard one."""
    before, now, hard = fds.raise_limit()

    def shown(limit: int) -> str:
        return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)

    if now != before:
        log.info("file descriptors: limit raised from %s to %s", shown(before), shown(now))
    elif now == hard:
        log.info("file descriptors: limit %s (the hard limit)", shown(now))
    else:
        log.warning(
            "file descriptors: limit %s, could not be raised to the hard limit %s",
            shown(now), shown(hard),
        )  # fmt: skip


def serve(config: Config) -> None:
    """Run the node in the foreground until SIGINT or SIGTERM.

    Refused in one line, before anything starts, when a TLS key, the SQLite store or the
    token file can be read by group or others, or a listener's address cannot be bound."""
    os.umask(0o077)  # whatever the node creates (SQLite side files included) is owner-only
    problems = _files_problems(config) + listen_problems(config)
    if problems:
        raise GatewayError("; ".join(problems))
    logs.configure(config.log, config.env)
    log.info("starting gateway from %s", config.source)
    _raise_fd_limit()
    engine = make_engine(config.database, create=False)
    try:
        require_current(engine)
        for line in describe(config):
            log.info("%s", line)
        log.info("event loop: %s", "uvloop" if _loop_factory() else "asyncio")
        tune_gc()
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            try:
                runner.run(run(config, engine))
            except OSError as exc:  # a port taken between listen_problems() and the bind
                if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                    raise
                raise GatewayError(f"cannot listen: {exc.strerror or exc}: {exc}") from None
    finally:
        engine.dispose()
    log.info("stopped")
