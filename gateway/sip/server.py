# The SIP side of a node: registrar, MESSAGE in and out, OPTIONS, over the SIP transports.
"""asyncio glue between the SIP transports and the sans-IO cores (message, transaction,
auth, registrar).

Requests are handled statefully (RFC 3261 §17.2.2: retransmissions absorbed, the last
response resent). REGISTER is challenged with 401 and MESSAGE with 407 (digest, SHA-256
and MD5); a failed authentication counts against the source address (AuthGuard: slowed,
then refused). Registrations and app messages are committed by the batch writer before the
200/202 goes out. ``send_message`` delivers a text to every live contact of an account in
parallel and reports one Outcome.

Stale contacts do not hold a message back (issue 16): a REGISTER of an account from a flow
that none of a pending delivery's forks uses (an app that crashed and came back on another
port or connection) supersedes that delivery: it ends at once as temporary with
``retry_now`` and its client transactions are ended, so the pipeline sends again to the
new binding instead of waiting for timer F. A TCP/TLS connection that closes fails the
client transactions on it at once (RFC 3261 §18: a transport error is reported to the
transaction), instead of leaving them to time out.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import os
import re
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from sqlalchemy import Engine

from gateway.admission import Refused
from gateway.config import Config
from gateway.errors import InvalidInput
from gateway.metrics import (
    SIP_ATTEMPTS_CUT,
    SIP_MESSAGES_THROTTLED,
    method_label,
    sip_responses,
    status_class,
)
from gateway.sip.accounts import AccountDirectory, SipAccount
from gateway.sip.auth import AuthError, NonceManager, challenges, parse_credentials, verify
from gateway.sip.delivery import OFFLINE, Delivery, Outcome, message_request
from gateway.sip.inbound import StoreAppMessageOp
from gateway.sip.message import (
    Headers,
    Limits,
    Request,
    Response,
    SipError,
    build_response,
    parse_uri,
    parse_via,
    split_outside,
)
from gateway.sip.pike import Pike
from gateway.sip.registrar import (
    Binding,
    Bindings,
    foreign_contact,
    serves_domain,
    unsupported_options,
)
from gateway.sip.regstore import ExpireBindingsOp, SaveBindingsOp, load_bindings
from gateway.sip.rescue import error_response
from gateway.sip.transaction import (
    Action,
    ClientTransaction,
    Deliver,
    Send,
    ServerTransaction,
    TableFull,
    Terminated,
    Timeout,
    Timers,
    Transaction,
    TransactionTable,
    TransportFailed,
)
from gateway.sip.transport import WILDCARDS, Flow, SipTransports
from gateway.smpp.guard import AuthGuard, TokenBucket
from gateway.store.writer import BatchWriter, WriterError
from gateway.tasks import forever, guarded
from routing.numbers import normalise

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

log = logging.getLogger("gateway.sip")

ALLOWED = "REGISTER, MESSAGE, OPTIONS"
LOGGED_BAD = 100  # malformed messages logged before the log goes quiet (they are counted)
RETRY_LATER = [("Retry-After", "5")]  # with a 503 when the store cannot take a write
MAX_RATED_ACCOUNTS = 100_000  # accounts with a MESSAGE token bucket at once


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Fork:
    """One contact's leg of a delivery."""

    __slots__ = ("account", "delivery", "flow")

    def __init__(self, delivery: Delivery, flow: Flow, account: int) -> None:
        self.delivery = delivery
        self.flow = flow
        self.account = account


class SipServer:
    """Registrar, MESSAGE UAS/UAC and OPTIONS for one node."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        writer: BatchWriter,
        directory: AccountDirectory,
        *,
        nonce_secret: bytes | None = None,
    ) -> None:
        sip = config.sip
        self.config = config
        self.domain = sip.domain
        self.engine = engine
        self.writer = writer
        self.directory = directory
        self.timers = Timers(t1=sip.transaction_timeout / 64)
        self.table = TransactionTable(sip.max_transactions)
        # a random epoch per boot inside every nonce: one issued before a restart (or by
        # another node) gets a stale challenge, so a captured REGISTER cannot be replayed
        self.nonces = NonceManager(nonce_secret or os.urandom(32))
        self.contact_networks = tuple(
            ipaddress.ip_network(n, strict=False) for n in sip.contact_networks
        )
        self._local_ips: dict[str, bool] = {}  # IP literal -> one of this host's addresses
        self.guard = AuthGuard(
            max_failures=sip.failed_auth_limit, block=sip.failed_auth_block.total_seconds()
        )
        self.bindings = Bindings(
            min_expires=sip.min_expires,
            max_expires=sip.max_expires,
            default_expires=sip.default_expires,
            max_contacts=sip.max_contacts,
        )
        self.transports = SipTransports(
            sip.listen,
            self,
            limits=Limits(),
            idle_timeout=sip.idle_timeout.total_seconds(),
            max_connections=sip.max_connections,
            request_timeout=sip.request_timeout.total_seconds(),
            max_per_address=sip.max_connections_per_address,
            pike=Pike(
                sip.pike_limit,
                sip.pike_interval.total_seconds(),
                sip.pike_block.total_seconds(),
            )
            if sip.pike_limit
            else None,
            trusted=sip.trusted_networks,
        )
        self._message_rates: dict[int, TokenBucket] = {}  # account id -> MESSAGEs it may send
        self.stats: Counter[str] = Counter()
        self.on_registered: Callable[[SipAccount], None] | None = None
        self.on_app_message: Callable[[dict[str, Any]], None] | None = None
        self.pipeline: Pipeline | None = None  # attached by the node: admits app messages
        self.on_expired: Callable[[list[Binding]], None] | None = None
        self._server_flows: dict[tuple[object, ...], Flow] = {}
        self._forks: dict[tuple[object, ...], _Fork] = {}
        # pending forks by account (cut short by a REGISTER from a new flow) and by stream
        # flow (failed at once when the connection closes)
        self._account_forks: dict[int, set[tuple[object, ...]]] = {}
        self._flow_forks: dict[Flow, set[tuple[object, ...]]] = {}
        self.transports.on_closed = self._flow_closed
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: datetime | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        now = utcnow()

        def load() -> list:  # type: ignore[type-arg]
            with self.engine.connect() as conn:
                return load_bindings(conn, now)

        self.bindings.load(await self._loop.run_in_executor(None, load))
        await self.transports.start()
        for bound in self.transports.bound:
            log.info("sip %s listening on %s:%d", bound.transport, bound.host, bound.port)
        if len(self.bindings):
            log.info("sip: %d registrations restored from the store", len(self.bindings))
        self._spawn(forever("sip registration expiry", self._expire_forever))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        self.transports.on_closed = None  # what is pending ends below, as a shutdown
        await self.transports.close()
        for fork in self._forks.values():
            fork.delivery.ended(503, "Service Unavailable (gateway shutting down)")
        self._forks.clear()
        self._account_forks.clear()
        self._flow_forks.clear()

    def _spawn(self, coro: Awaitable[Any], name: str = "sip task") -> None:
        """Run ``coro`` in the background; an unexpected error is reported (tasks.py)."""
        assert self._loop is not None
        task = self._loop.create_task(guarded(name, coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            gone = self.bindings.expire(utcnow())
            if gone:
                self.writer.submit(ExpireBindingsOp(gone, done=self._expired(gone)))

    def _expired(self, gone: list[Binding]) -> Callable[[BaseException | None], None]:
        def done(error: BaseException | None) -> None:
            if error is None and self.on_expired is not None:
                self.on_expired(gone)

        return done

    # -- transports -> server -----------------------------------------------------------------
    def on_message(self, message: Request | Response, flow: Flow) -> None:
        now = utcnow()
        try:
            if isinstance(message, Response):
                self._on_response(message, now)
            else:
                self._on_request(message, flow, now)
        except SipError as exc:
            if isinstance(message, Request) and message.method != "ACK":
                self._stateless(message, flow, exc.status, exc.reason)
        self._arm()

    def on_bad(self, error: SipError, data: bytes, flow: Flow) -> None:
        self.stats["malformed"] += 1
        answer = error_response(data, error)
        if answer is not None:
            flow.send(answer)
        else:
            self.stats["dropped"] += 1
        if self.stats["malformed"] <= LOGGED_BAD:
            log.info("sip %s %s:%d: malformed message: %s", flow.transport, *flow.remote, error)

    def _on_response(self, response: Response, now: datetime) -> None:
        transaction = self.table.match_response(response)
        if transaction is None:
            self.stats["stray_responses"] += 1  # §18.1.2: discarded
            return
        actions = transaction.on_response(response, now)
        self._run(transaction, self.table.settle(transaction, actions))

    def _on_request(self, request: Request, flow: Flow, now: datetime) -> None:
        if request.method == "ACK":
            return  # we never answer INVITE with a response that an ACK would follow up
        _stamp_via(request, flow)
        if request.method not in ("REGISTER", "MESSAGE", "OPTIONS"):
            self._stateless(request, flow, 405, extra=[("Allow", ALLOWED)])
            return
        known = self.table.match_request(request)
        if known is not None:  # a retransmission: absorbed, the last answer sent again
            self._run(known, self.table.settle(known, known.on_request(request, now)))
            return
        transaction = ServerTransaction(request, flow.reliable, now, self.timers)
        try:
            self.table.add(transaction)
        except TableFull:
            self.stats["overload"] += 1
            self._stateless(request, flow, 503, extra=[("Retry-After", "5")])
            return
        self._server_flows[transaction.key] = flow
        try:
            self._dispatch(transaction, flow, now)
        except SipError as exc:  # a header the handler needed is unusable: answer in-transaction
            self.respond(transaction, exc.status, exc.reason)

    def _dispatch(self, transaction: ServerTransaction, flow: Flow, now: datetime) -> None:
        request = transaction.request
        # Max-Forwards 0 is no reason to refuse: the gateway is the endpoint of every request it
        # takes (registrar, MESSAGE store-and-forward, OPTIONS), not a proxy (RFC 4475 zeromf;
        # loops between environments are stopped by the env path instead)
        if request.method == "REGISTER" and not self._serves(request, flow):
            # RFC 3261 §10.3 step 1; 404 per §21.4.5 (a domain we do not handle; no proxying)
            host = request.uri.host[:64]
            self.respond(transaction, 404, f"Not Found (domain {host} not served here)")
            return
        unsupported = unsupported_options(request)  # §10.3 step 2, §8.2.2.3 (400 if garbled)
        if unsupported:
            self.respond(transaction, 420, extra=[("Unsupported", ", ".join(unsupported))])
            return
        if request.method == "OPTIONS":
            self.respond(transaction, 200, extra=[("Allow", ALLOWED), ("Accept", "text/plain")])
        elif request.method == "REGISTER":
            self._register(transaction, flow, now)
        else:
            self._message_in(transaction, flow, now)

    # -- answering --------------------------------------------------------------------------
    def respond(
        self,
        transaction: ServerTransaction,
        status: int,
        reason: str | None = None,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send a response through the request's transaction (retransmissions get it too)."""
        tag = None if status == 100 else _to_tag(transaction)
        response = build_response(
            transaction.request, status, reason, to_tag=tag, extra_headers=extra
        )
        now = utcnow()
        if status >= 200:
            sip_responses("sent", transaction.request.method, status_class(status)).inc()
        self._run(transaction, self.table.respond(transaction, response, now))
        self._arm()

    def _stateless(
        self,
        request: Request,
        flow: Flow,
        status: int,
        reason: str | None = None,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        try:
            response = build_response(request, status, reason, to_tag="gw", extra_headers=extra)
        except ValueError:
            return
        sip_responses("sent", method_label(request.method), status_class(status)).inc()
        flow.send(response.to_bytes())

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        assert self._loop is not None
        if delay > 0:
            self._loop.call_later(delay, callback)
        else:
            callback()

    # -- transactions -------------------------------------------------------------------------
    def _run(self, transaction: Transaction, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                flow = self._flow_of(transaction)
                if flow is None or not flow.send(action.data):
                    now = utcnow()
                    self._run(transaction, self.table.on_transport_error(transaction, now))
                    return
            elif isinstance(action, Deliver):
                fork = self._forks.get(transaction.key)
                status = action.response.status
                if status >= 200:
                    method = transaction.request.method
                    sip_responses("received", method, status_class(status)).inc()
                if fork is not None and status >= 200:
                    fork.delivery.ended(status, action.response.reason)
            elif isinstance(action, Timeout):
                self._fork_ended(transaction, 408, "Request Timeout (no answer from the app)")
            elif isinstance(action, TransportFailed):
                self._fork_ended(transaction, 503, "Service Unavailable (transport error)")
            elif isinstance(action, Terminated):
                self._server_flows.pop(transaction.key, None)
                self._forget_fork(transaction.key)

    def _flow_of(self, transaction: Transaction) -> Flow | None:
        if isinstance(transaction, ServerTransaction):
            return self._server_flows.get(transaction.key)
        fork = self._forks.get(transaction.key)
        return None if fork is None else fork.flow

    def _fork_ended(self, transaction: Transaction, status: int, reason: str) -> None:
        fork = self._forks.get(transaction.key)
        if fork is not None:
            fork.delivery.ended(status, reason)

    def _arm(self) -> None:
        deadline = self.table.next_deadline()
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        delay = max(0.0, (deadline - utcnow()).total_seconds())
        self._timer_at = deadline
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        for transaction, actions in self.table.expire(utcnow()):
            self._run(transaction, actions)
        self._arm()

    # -- digest authentication ------------------------------------------------------------------
    def _authenticate(
        self, transaction: ServerTransaction, flow: Flow, now: datetime, *, proxy: bool
    ) -> SipAccount | None:
        """The authenticated, serviceable account, or None once the answer is on its way."""
        request = transaction.request
        source = flow.remote[0]
        assert self._loop is not None
        clock = self._loop.time()
        verdict = self.guard.check(source, clock)
        if not verdict.allowed:
            self.stats["auth_blocked"] += 1
            self._later(
                verdict.delay,
                lambda: self.respond(transaction, 403, "Forbidden (too many failed attempts)"),
            )
            return None
        header = request.headers.get("proxy-authorization" if proxy else "authorization")
        if header is None:  # lenient: some apps answer a 407 with Authorization, or vice versa
            header = request.headers.get("authorization" if proxy else "proxy-authorization")
        if header is None or not _digest(header):
            # none, or another scheme (Basic, ...): challenged for Digest (RFC 4475 regaut01)
            self._challenge(transaction, proxy=proxy, stale=False, now=now)
            return None
        try:
            credentials = parse_credentials(header)
        except AuthError as exc:
            self.respond(transaction, exc.status, f"Bad Request ({exc.reason[:100]})")
            return None
        if not _same_uri(credentials.uri, request):
            self.respond(transaction, 400, "Bad Request (digest uri differs from Request-URI)")
            return None
        if credentials.algorithm not in self.config.sip.digest_algorithms:
            why = f"Forbidden (digest {credentials.algorithm} not offered)"
            self.respond(transaction, 403, why)
            return None
        account = self.directory.by_name(credentials.username)
        result = None
        if account is not None:
            result = verify(
                credentials,
                method=request.method,
                ha1=account.ha1(credentials.algorithm),
                nonces=self.nonces,
                realm=self.domain,
                now=now,
            )
            if result.outcome == "stale":
                self._challenge(transaction, proxy=proxy, stale=True, now=now)
                return None
        if account is None or result is None or not result.ok:
            self.guard.failed(source, clock)
            self.stats["auth_failed"] += 1
            why = "unknown user" if account is None else result.reason if result else ""
            log.info(
                "sip %s from %s: authentication of %r failed: %s",
                request.method,
                source,
                credentials.username[:64],
                why,
            )
            self._later(verdict.delay, lambda: self.respond(transaction, 403, "Forbidden"))
            return None
        self.guard.succeeded(source, clock)
        if not account.serviceable:
            why = "account disabled" if not account.enabled else "no messaging product"
            self.respond(transaction, 403, f"Forbidden ({why})")
            return None
        return account

    def _challenge(
        self, transaction: ServerTransaction, *, proxy: bool, stale: bool, now: datetime
    ) -> None:
        nonce = self.nonces.issue(now, self.domain)
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        values = challenges(
            self.domain, nonce, stale=stale, algorithms=self.config.sip.digest_algorithms
        )
        self.respond(transaction, 407 if proxy else 401, extra=[(name, v) for v in values])

    # -- REGISTER ---------------------------------------------------------------------------
    def _serves(self, request: Request, flow: Flow) -> bool:
        """§10.3 step 1: the Request-URI names sip.domain or an address of this node (a
        listener's, the one the request came to, or with a listener on every interface any
        local address)."""
        bound = {b.host for b in self.transports.bound} | {flow.local[0]}
        if serves_domain(request.uri, self.domain, bound - WILDCARDS):
            return True
        return bool(bound & WILDCARDS) and self._is_local_ip(request.uri.host)

    def _is_local_ip(self, host: str) -> bool:
        """Whether ``host`` is an IP address of this machine (it can be bound), cached."""
        known = self._local_ips.get(host)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False  # a name other than sip.domain
        if ip.is_unspecified or ip.is_multicast:
            return False
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.bind((str(ip), 0))
            local = True
        except OSError:
            local = False
        if len(self._local_ips) >= 1024:
            self._local_ips.clear()
        self._local_ips[host] = local
        return local

    def _register(self, transaction: ServerTransaction, flow: Flow, now: datetime) -> None:
        account = self._authenticate(transaction, flow, now, proxy=False)
        if account is None:
            return
        flow.mark_authenticated()  # a connection of a registered app is never evicted
        request = transaction.request
        to_uri = request.to_header().uri
        if to_uri.host.lower() != self.domain.lower():
            self.respond(transaction, 404, f"Not Found (domain {to_uri.host[:64]} not served)")
            return
        if not self.directory.names(unquote(to_uri.user or ""), account):
            self.respond(transaction, 403, "Forbidden (an account may register only its own AOR)")
            return
        foreign = foreign_contact(request, flow.remote, self.contact_networks)
        if foreign is not None:
            # messages go back over the registration's own flow only; a Contact naming another
            # host could only be a mistake or an attempt to make the gateway reach it
            log.info(
                "REGISTER of %s from %s refused: Contact host %r is not its address",
                account.account_id, flow.remote[0], foreign[:64],
            )  # fmt: skip
            why = f"Forbidden (Contact host {foreign[:64]} is not the address you register from)"
            self.respond(transaction, 403, why)
            return
        result = self.bindings.register(
            account.id,
            account.account_id,
            request,
            transport=flow.transport,
            source=flow.remote,
            now=now,
        )
        if result.status != 200 or not result.changed:
            self.respond(transaction, result.status, result.reason, result.headers)
            return

        def done(error: BaseException | None) -> None:
            if error is not None:
                log.error("registration of %s not stored: %s", account.account_id, error)
                self.bindings.restore(account.id, result.previous, if_current=result.current)
                # the store is unavailable: temporary (RFC 3261 21.5.4), the app retries
                self.respond(
                    transaction, 503, "Service Unavailable (registration not stored)", RETRY_LATER
                )
                return
            self.respond(transaction, 200, result.reason, result.headers)
            if any(_from_flow(b, flow) for b in result.current):  # bound (again) from here
                self._supersede(account, flow)
            if result.current and self.on_registered is not None:
                self.on_registered(account)

        self.writer.submit(SaveBindingsOp(account.id, result.current, done))

    # -- MESSAGE from an app --------------------------------------------------------------------
    def _message_in(self, transaction: ServerTransaction, flow: Flow, now: datetime) -> None:
        account = self._authenticate(transaction, flow, now, proxy=True)
        if account is None:
            return
        flow.mark_authenticated()
        wait = self._message_wait(account.id)
        if wait:
            # 503 + Retry-After (RFC 3261 §21.5.4): SIP's "try again in N seconds"; 429 is
            # HTTP's (RFC 6585) and no SIP status. The message is not stored.
            self.stats["message_throttled"] += 1
            SIP_MESSAGES_THROTTLED.inc()
            why = f"Service Unavailable (over {self.config.sip.message_rate} MESSAGE/s)"
            self.respond(transaction, 503, why, [("Retry-After", str(wait))])
            return
        request = transaction.request
        sender = unquote(request.from_header().uri.user or "")
        if not self.directory.names(sender, account):
            self.respond(transaction, 403, "Forbidden (From is not the authenticated account)")
            return
        if account.did is None:
            self.respond(transaction, 403, "Forbidden (the account has no number to send from)")
            return
        ctype = request.content_type()
        if ctype is not None and ctype[0] != "text/plain":
            self.respond(transaction, 415, extra=[("Accept", "text/plain")])
            return
        if len(request.body) > self.config.sip.max_message_body:
            limit = self.config.sip.max_message_body
            self.respond(transaction, 413, f"Request Entity Too Large (over {limit} octets)")
            return
        text = request.text_body()  # 415 when the charset is unknown or the octets do not fit
        if not text:
            self.respond(transaction, 400, "Bad Request (empty message)")
            return
        target = unquote(request.uri.user or "")
        try:
            destination = normalise(target, self.config.numbering, field="Request-URI")
        except InvalidInput as exc:
            self.respond(transaction, 404, f"Not Found ({exc.reason[:100]})")
            return
        validity_until = now + self.config.delivery.validity
        admission = None
        if self.pipeline is not None:
            try:
                admission = self.pipeline.admit(
                    origin="account",
                    sender=account.account_id,
                    source=account.did,
                    destination=destination,
                    text=text,
                    priority=0,
                    validity_until=validity_until,
                    now=now,
                )
            except Refused as exc:
                log.info("MESSAGE from %s refused: %s", account.account_id, exc.reason)
                phrase = {
                    403: "Forbidden",
                    482: "Loop Detected",
                    483: "Too Many Hops",
                    486: "Busy Here",
                    500: "Server Internal Error",
                    503: "Service Unavailable",
                }
                self.respond(
                    transaction,
                    exc.sip,
                    f"{phrase.get(exc.sip, 'Not Found')} ({exc.reason[:120]})",
                    RETRY_LATER if exc.sip == 503 else (),
                )
                return

        def done(row: dict[str, Any], error: BaseException | None) -> None:
            if error is not None:
                log.warning("MESSAGE from %s not stored: %s", account.account_id, error)
                if isinstance(error, WriterError):  # a bug of ours, not an unavailable store
                    self.respond(transaction, error.sip, "Server Internal Error (not stored)")
                    return
                self.respond(
                    transaction, 503, "Service Unavailable (message not stored)", RETRY_LATER
                )
                return
            self.respond(transaction, 202)
            if self.pipeline is not None:
                self.pipeline.accepted(row)
            if self.on_app_message is not None:
                self.on_app_message(row)

        self.writer.submit(
            StoreAppMessageOp(
                account=account.id,
                source=account.did,
                destination=destination,
                text=text,
                now=now,
                validity_until=validity_until,
                done=done,
                admission=admission,
            )
        )

    def _message_wait(self, account: int) -> int:
        """0 when ``account`` may send one more MESSAGE now (it is counted), else the
        seconds (at least 1) to put in Retry-After."""
        assert self._loop is not None
        clock = self._loop.time()
        bucket = self._message_rates.get(account)
        if bucket is None:
            sip = self.config.sip
            if len(self._message_rates) >= MAX_RATED_ACCOUNTS:  # idle ones refill anyway
                self._message_rates.clear()
            bucket = self._message_rates[account] = TokenBucket(sip.message_rate, sip.message_burst)
        if bucket.take(1, clock):
            return 0
        return max(1, math.ceil(bucket.wait_time(1, clock)))

    # -- MESSAGE to an app ----------------------------------------------------------------------
    def live_contacts(self, account: int, now: datetime) -> int:
        """How many registered contacts of the account can be reached right now (over their
        own flow); an app whose TCP/TLS connection is gone counts as offline until it
        registers again."""
        return len(self._reachable(account, now))

    def _reachable(self, account: int, now: datetime) -> list[tuple[Binding, Flow]]:
        """Live bindings of ``account`` with the flow each registered on (RFC 5626's idea):
        the same TCP/TLS connection, or for UDP the address and port the REGISTER came from.
        The Contact is never connected to, so no REGISTER can make the gateway reach
        another host or port (issue 15)."""
        found = []
        for binding in self.bindings.contacts(account, now):
            host, port = binding.source
            flow = self.transports.flow_to(binding.transport, host, port)
            if flow is not None:
                found.append((binding, flow))
        return found

    async def send_message(
        self, account: SipAccount, *, from_user: str, to_user: str, text: str
    ) -> Outcome:
        """Deliver ``text`` to every reachable contact of ``account`` in parallel."""
        reachable = self._reachable(account.id, utcnow())
        if not reachable:
            return OFFLINE
        delivery = Delivery(len(reachable))
        for binding, flow in reachable:
            request, branch = message_request(
                binding.contact,
                transport=binding.transport,
                via=self.transports.via_address(binding.transport, binding.source[0]),
                domain=self.domain,
                from_user=from_user,
                to_user=to_user,
                text=text,
            )
            self._start_fork(delivery, flow, request, branch, account.id)
        return await delivery.result

    def _start_fork(
        self, delivery: Delivery, flow: Flow, request: Request, branch: str, account: int
    ) -> None:
        now = utcnow()
        transaction = ClientTransaction(request, flow.reliable, now, self.timers, branch=branch)
        try:
            self.table.add(transaction)
        except TableFull:
            delivery.ended(503, "Service Unavailable (transaction table full)")
            return
        key = transaction.key
        self._forks[key] = _Fork(delivery, flow, account)
        self._account_forks.setdefault(account, set()).add(key)
        if flow.reliable:
            self._flow_forks.setdefault(flow, set()).add(key)
        self._run(transaction, self.table.settle(transaction, transaction.start()))
        self._arm()

    def _forget_fork(self, key: tuple[object, ...]) -> None:
        fork = self._forks.pop(key, None)
        if fork is None:
            return
        keys = self._account_forks.get(fork.account)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._account_forks[fork.account]
        keys = self._flow_forks.get(fork.flow)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._flow_forks[fork.flow]

    def _end_forks(self, keys: Iterable[tuple[object, ...]]) -> None:
        """End these client transactions as if their transport failed (no more
        retransmissions; each fork reports 503 unless its delivery already ended)."""
        now = utcnow()
        for key in list(keys):
            transaction = self.table.get(key)
            if transaction is not None:
                self._run(transaction, self.table.on_transport_error(transaction, now))
            else:
                self._forget_fork(key)
        self._arm()

    def _supersede(self, account: SipAccount, flow: Flow) -> None:
        """``account`` registered from ``flow``: its deliveries in progress that have no fork
        on that flow were sent to contacts it has left (a crashed app back on a new port or
        connection); they end now as temporary, retried at once by the pipeline."""
        keys = self._account_forks.get(account.id)
        if not keys:
            return
        by_delivery: dict[Delivery, list[tuple[object, ...]]] = {}
        for key in keys:
            fork = self._forks.get(key)
            if fork is not None:
                by_delivery.setdefault(fork.delivery, []).append(key)
        stale: list[tuple[object, ...]] = []
        for delivery, fork_keys in by_delivery.items():
            if any(self._forks[k].flow.key == flow.key for k in fork_keys):
                continue  # this very contact is being tried: its answer decides
            contacts = ", ".join("{}:{}:{}".format(*self._forks[k].flow.key) for k in fork_keys)
            why = "Service Unavailable (the app registered again from {}:{}:{})".format(*flow.key)
            if delivery.superseded(why):
                self.stats["superseded"] += 1
                SIP_ATTEMPTS_CUT.labels("reregistered").inc()
                log.info(
                    "sip: %s registered again from %s %s:%d: attempt to %s cut short, "
                    "sending again to the new binding",
                    account.account_id, flow.transport, *flow.remote, contacts,
                )  # fmt: skip
            stale.extend(fork_keys)
        if stale:
            self._end_forks(stale)

    def _flow_closed(self, flow: Flow) -> None:
        """A TCP/TLS connection closed: its pending client transactions fail now with a
        transport error (RFC 3261 §18.4), not at timer F."""
        keys = self._flow_forks.pop(flow, None)
        if keys:
            self.stats["flow_closed_forks"] += len(keys)
            SIP_ATTEMPTS_CUT.labels("flow_closed").inc(len(keys))
            log.info(
                "sip: %s connection from %s:%d closed with %d MESSAGE(s) unanswered: failed now",
                flow.transport, *flow.remote, len(keys),
            )  # fmt: skip
            self._end_forks(keys)


def _stamp_via(request: Request, flow: Flow) -> None:
    """RFC 3261 §18.2.1 ``received`` and RFC 3581 ``rport`` on the top Via."""
    items = list(request.headers)
    for i, (name, value) in enumerate(items):
        if name.lower() not in ("via", "v"):
            continue
        parts = split_outside(value, ",")
        top = parse_via(parts[0].strip())
        ip, port = flow.remote
        if top.rport_requested:
            top.params["rport"] = str(port)
            top.params["received"] = ip
        elif top.host != ip:
            top.params["received"] = ip
        else:
            return
        parts[0] = str(top)
        items[i] = (name, ", ".join(p.strip() for p in parts))
        request.headers = Headers(items)
        return


def _from_flow(binding: Binding, flow: Flow) -> bool:
    """Whether ``binding`` was registered over ``flow`` (its transport, address and port)."""
    return binding.transport == flow.transport and tuple(binding.source) == tuple(flow.remote)


def _to_tag(transaction: ServerTransaction) -> str:
    """A To tag stable across the transaction (its key hashed), so retransmitted final
    responses are identical."""
    return format(hash(transaction.key) & 0xFFFFFFFF, "08x")


def _same_uri(digest_uri: str, request: Request) -> bool:
    """RFC 2617 §3.2.2.5: the digest-uri must name the Request-URI (compared parsed, so
    case of the scheme/host and parameter order do not matter)."""
    try:
        given = parse_uri(digest_uri)
    except SipError:
        return False
    want = request.uri
    return (
        given.scheme == want.scheme
        and (given.user or "") == (want.user or "")
        and given.host.lower() == want.host.lower()
        and given.port == want.port
    )


def _digest(header: str) -> bool:
    """Whether credentials are in the Digest scheme (any case, RFC 7616 §3.4)."""
    return _DIGEST.match(header) is not None


_DIGEST = re.compile(r"[ \t]*digest(?:[ \t]|$)", re.IGNORECASE)
