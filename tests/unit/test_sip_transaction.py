# Tests of gateway/sip/transaction.py: timers E/F/K/J on a fake clock, matching, table bound.
"""Non-INVITE transactions (RFC 3261 §17.1.2, §17.2.2, §17.1.3, §17.2.3) driven by a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.message import Request, Response, SipError, build_response, parse_message
from gateway.sip.transaction import (
    CLIENT_TABLE,
    SERVER_TABLE,
    ClientEvent,
    ClientTransaction,
    Deliver,
    NoTransition,
    Send,
    ServerEvent,
    ServerTransaction,
    State,
    TableFull,
    Terminated,
    Timeout,
    Timers,
    TransactionTable,
    TransportFailed,
    client_key,
    server_key,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def request(
    method: str = "MESSAGE",
    branch: str = "z9hG4bK776asdhds",
    sent_by: str = "app.example.com:5060",
    cseq: int = 1,
    to_tag: str | None = None,
) -> Request:
    to = "<sip:+15551234567@gw.example.com>" + (f";tag={to_tag}" if to_tag else "")
    via_branch = f";branch={branch}" if branch else ""
    text = (
        f"{method} sip:+15551234567@gw.example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by}{via_branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"To: {to}\r\n"
        "From: <sip:alice@example.com>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@app.example.com\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    parsed = parse_message(text.encode())
    assert isinstance(parsed, Request)
    return parsed


def response(req: Request, status: int) -> Response:
    return build_response(req, status, to_tag="srv1")


def sends(actions: list) -> list[bytes]:
    return [a.data for a in actions if isinstance(a, Send)]


class Clock:
    """Ticks a transaction exactly at each deadline, recording when it sent."""

    def __init__(self, tx: ClientTransaction | ServerTransaction) -> None:
        self.tx = tx
        self.sent_at: list[float] = []
        self.log: list[tuple[float, object]] = []

    def run_until(self, seconds: float) -> None:
        while (deadline := self.tx.next_deadline()) is not None and deadline <= at(seconds):
            when = (deadline - T0).total_seconds()
            for action in self.tx.on_timer(deadline):
                self.log.append((when, action))
                if isinstance(action, Send):
                    self.sent_at.append(when)


# -- client ---------------------------------------------------------------------------------


def test_client_udp_retransmits_doubling_to_t2_then_times_out_at_64_t1():
    req = request()
    tx = ClientTransaction(req, reliable=False, now=T0)
    assert tx.start() == [Send(req.to_bytes())]
    assert tx.next_deadline() == at(0.5)
    clock = Clock(tx)
    clock.run_until(31.9)
    assert clock.sent_at == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert tx.state is State.TRYING
    clock.run_until(32)
    assert clock.log[-2:] == [(32.0, Timeout()), (32.0, Terminated())]
    assert tx.state is State.TERMINATED
    assert tx.next_deadline() is None


def test_client_provisional_stops_doubling_then_t2_in_proceeding():
    req = request()
    tx = ClientTransaction(req, reliable=False, now=T0)
    tx.start()
    clock = Clock(tx)
    clock.run_until(1.0)
    trying = response(req, 100)
    assert tx.on_response(trying, at(1.0)) == [Deliver(trying)]
    assert tx.state is State.PROCEEDING
    clock.run_until(20)
    # the E already armed (1.5) still fires, then every T2 (§17.1.2.2)
    assert clock.sent_at == [0.5, 1.5, 5.5, 9.5, 13.5, 17.5]
    assert tx.on_response(response(req, 180), at(20)) == [Deliver(response(req, 180))]
    clock.run_until(32)
    assert clock.log[-2:] == [(32.0, Timeout()), (32.0, Terminated())]


def test_client_final_completes_absorbs_duplicates_then_terminates_after_t4_on_udp():
    req = request()
    tx = ClientTransaction(req, reliable=False, now=T0)
    tx.start()
    ok = response(req, 202)
    assert tx.on_response(ok, at(0.2)) == [Deliver(ok)]
    assert tx.state is State.COMPLETED
    assert tx.next_deadline() == at(5.2)  # timer K = T4, E and F cancelled
    assert tx.on_response(ok, at(1)) == []
    assert tx.on_response(response(req, 100), at(1)) == []
    assert tx.on_timer(at(5.1)) == []
    assert tx.on_timer(at(5.2)) == [Terminated()]
    assert tx.state is State.TERMINATED
    assert tx.on_response(ok, at(6)) == []


def test_client_reliable_no_retransmission_and_terminates_at_once():
    req = request()
    tx = ClientTransaction(req, reliable=True, now=T0)
    tx.start()
    assert tx.next_deadline() == at(32)  # only F
    assert tx.on_timer(at(10)) == []
    ok = response(req, 200)
    assert tx.on_response(ok, at(10)) == [Deliver(ok), Terminated()]
    assert tx.state is State.TERMINATED
    assert tx.next_deadline() is None


def test_client_reliable_timeout():
    tx = ClientTransaction(request(), reliable=True, now=T0)
    tx.start()
    assert tx.on_timer(at(40)) == [Timeout(), Terminated()]


def test_client_late_tick_sends_one_copy_then_times_out():
    tx = ClientTransaction(request(), reliable=False, now=T0)
    tx.start()
    actions = tx.on_timer(at(100))
    assert [type(a) for a in actions] == [Send, Timeout, Terminated]


def test_client_transport_error_reports_and_terminates():
    tx = ClientTransaction(request(), reliable=False, now=T0)
    tx.start()
    assert tx.on_transport_error(at(0.1)) == [TransportFailed(), Terminated()]
    assert tx.next_deadline() is None


def test_client_timers_configurable_and_start_once():
    timers = Timers(t1=timedelta(seconds=1), t2=timedelta(seconds=2), t4=timedelta(seconds=3))
    tx = ClientTransaction(request(), reliable=False, now=T0, timers=timers)
    tx.start()
    clock = Clock(tx)
    clock.run_until(64)
    assert clock.sent_at[:4] == [1.0, 3.0, 5.0, 7.0]
    assert clock.log[-1] == (64.0, Terminated())
    with pytest.raises(RuntimeError):
        tx.start()


def test_client_refuses_invite_and_missing_cookie():
    with pytest.raises(ValueError):
        ClientTransaction(request("INVITE"), reliable=False, now=T0)
    with pytest.raises(ValueError):
        ClientTransaction(request(branch="old2543"), reliable=False, now=T0)


# -- server ---------------------------------------------------------------------------------


def test_server_absorbs_retransmissions_resending_last_response_and_j_on_udp():
    req = request()
    tx = ServerTransaction(req, reliable=False, now=T0)
    assert tx.on_request(req, at(0.1)) == []  # TRYING: nothing to resend
    trying = response(req, 100)
    assert tx.respond(trying, at(0.2)) == [Send(trying.to_bytes())]
    assert tx.state is State.PROCEEDING
    assert tx.on_request(req, at(0.5)) == [Send(trying.to_bytes())]
    accepted = response(req, 202)
    assert tx.respond(accepted, at(1)) == [Send(accepted.to_bytes())]
    assert tx.state is State.COMPLETED
    assert tx.next_deadline() == at(33)  # timer J = 64*T1
    assert tx.on_request(req, at(2)) == [Send(accepted.to_bytes())]
    assert tx.respond(response(req, 500), at(3)) == []  # §17.2.2: discarded
    assert tx.on_request(req, at(4)) == [Send(accepted.to_bytes())]
    assert tx.on_timer(at(32.9)) == []
    assert tx.on_timer(at(33)) == [Terminated()]
    assert tx.state is State.TERMINATED


def test_server_reliable_completed_lasts_zero():
    req = request()
    tx = ServerTransaction(req, reliable=True, now=T0)
    ok = response(req, 200)
    assert tx.respond(ok, at(1)) == [Send(ok.to_bytes()), Terminated()]
    assert tx.state is State.TERMINATED


def test_server_transport_error():
    req = request()
    tx = ServerTransaction(req, reliable=False, now=T0)
    tx.respond(response(req, 100), T0)
    assert tx.on_transport_error(T0) == [TransportFailed(), Terminated()]
    assert tx.on_transport_error(T0) == []


def test_response_status_checked():
    req = request()
    bad = response(req, 200)
    bad.status = 700
    with pytest.raises(ValueError):
        ServerTransaction(req, reliable=False, now=T0).respond(bad, T0)


# -- transition tables ----------------------------------------------------------------------

CLIENT_NEVER_ARMED = {
    (s, e)
    for s in State
    for e in (ClientEvent.TIMER_E, ClientEvent.TIMER_F)
    if s in (State.COMPLETED, State.TERMINATED)
} | {(s, ClientEvent.TIMER_K) for s in State if s is not State.COMPLETED}
SERVER_NEVER_ARMED = {(s, ServerEvent.TIMER_J) for s in State if s is not State.COMPLETED}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", list(ClientEvent))
def test_every_client_pair_is_in_the_table_or_a_clear_error(state, event):
    tx = ClientTransaction(request(), reliable=False, now=T0)
    tx.state = state
    if (state, event) in CLIENT_NEVER_ARMED:
        assert (state, event) not in CLIENT_TABLE
        with pytest.raises(NoTransition) as info:
            tx._dispatch(event, T0)
        assert info.value.status == 500
        assert str(event) in str(info.value) and str(state) in str(info.value)
    else:
        assert (state, event) in CLIENT_TABLE
        tx._response = response(tx.request, 200)
        tx._dispatch(event, T0)


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", list(ServerEvent))
def test_every_server_pair_is_in_the_table_or_a_clear_error(state, event):
    tx = ServerTransaction(request(), reliable=False, now=T0)
    tx.state = state
    if (state, event) in SERVER_NEVER_ARMED:
        assert (state, event) not in SERVER_TABLE
        with pytest.raises(NoTransition):
            tx._dispatch(event, T0)
    else:
        assert (state, event) in SERVER_TABLE
        tx._dispatch(event, T0)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("response"), st.sampled_from([100, 180, 200, 202, 404, 503, 603])),
        st.tuples(st.just("tick"), st.floats(min_value=0, max_value=12)),
        st.tuples(st.just("error"), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(ops=OPS, reliable=st.booleans())
def test_client_property_one_outcome_and_always_terminates(ops, reliable):
    req = request()
    tx = ClientTransaction(req, reliable=reliable, now=T0)
    actions = list(tx.start())
    now = T0
    for kind, value in ops:
        if kind == "response":
            actions += tx.on_response(response(req, int(value)), now)
        elif kind == "tick":
            now += timedelta(seconds=value)
            actions += tx.on_timer(now)
        else:
            actions += tx.on_transport_error(now)
        outcomes = [
            a
            for a in actions
            if isinstance(a, Timeout | TransportFailed)
            or (isinstance(a, Deliver) and a.response.status >= 200)
        ]
        assert len(outcomes) <= 1
        assert sum(isinstance(a, Terminated) for a in actions) <= 1
        if tx.state is State.TERMINATED:
            assert tx.next_deadline() is None
    actions += tx.on_timer(now + timedelta(seconds=64 * 0.5 + 5 + 1))
    assert tx.state is State.TERMINATED
    assert tx.next_deadline() is None
    assert sum(isinstance(a, Terminated) for a in actions) == 1
    assert isinstance(actions[-1], Terminated)


# -- matching -------------------------------------------------------------------------------


def test_client_key_is_branch_and_cseq_method():
    req = request()
    tx = ClientTransaction(req, reliable=False, now=T0)
    assert client_key(response(req, 200)) == tx.key
    assert client_key(response(request(branch="z9hG4bKother"), 200)) != tx.key
    assert client_key(response(request("OPTIONS"), 200)) != tx.key


def test_server_key_rfc3261():
    req = request()
    key = server_key(req)
    assert key == server_key(request())  # a retransmission
    assert server_key(request(sent_by="APP.example.com:5060")) == key  # host case-insensitive
    assert server_key(request(sent_by="other.example.com:5060")) != key
    assert server_key(request(branch="z9hG4bKdifferent")) != key
    assert server_key(request("OPTIONS")) != key
    # ACK is matched as INVITE (§17.2.3)
    assert server_key(request("ACK")) == server_key(request("INVITE"))


def test_server_key_rfc2543_fallback():
    old = request(branch="")
    key = server_key(old)
    assert key[0] == "2543"
    assert server_key(request(branch="")) == key
    assert server_key(request(branch="", cseq=2)) != key
    assert server_key(request(branch="", to_tag="x")) != key
    assert server_key(request(branch="", sent_by="other.example.com")) != key
    assert server_key(request(branch="1234-no-cookie")) not in (key, server_key(request()))
    assert server_key(request(branch="", method="ACK")) == server_key(
        request(branch="", method="INVITE")
    )


# -- table ----------------------------------------------------------------------------------


def test_table_bound_refuses_with_503():
    table = TransactionTable(limit=2)
    table.add(ServerTransaction(request(branch="z9hG4bK1"), reliable=False, now=T0))
    table.add(ServerTransaction(request(branch="z9hG4bK2"), reliable=False, now=T0))
    with pytest.raises(TableFull) as info:
        table.add(ServerTransaction(request(branch="z9hG4bK3"), reliable=False, now=T0))
    assert isinstance(info.value, SipError) and info.value.status == 503
    assert len(table) == 2
    dup = TransactionTable()
    dup.add(ServerTransaction(request(), False, T0))
    with pytest.raises(ValueError):
        dup.add(ServerTransaction(request(), False, T0))


def test_table_routes_and_removes_on_terminated():
    table = TransactionTable()
    req = request()
    client = ClientTransaction(req, reliable=False, now=T0)
    assert table.start(client) == [Send(req.to_bytes())]
    assert table.next_deadline() == at(0.5)
    assert table.on_response(response(request(branch="z9hG4bKnope"), 200), T0) is None
    ok = response(req, 200)
    assert table.on_response(ok, at(0.1)) == [Deliver(ok)]
    assert table.next_deadline() == at(5.1)  # K, the stale E entry skipped

    incoming = request("MESSAGE", branch="z9hG4bKin")
    assert table.on_request(incoming, T0) is None  # new: caller creates it
    server = ServerTransaction(incoming, reliable=True, now=T0)
    table.add(server)
    assert table.match_request(incoming) is server
    assert table.get(server.key) is server
    assert table.respond(server, response(incoming, 202), T0)[-1] == Terminated()
    assert table.match_request(incoming) is None

    assert table.expire(at(5.0)) == []
    fired = table.expire(at(5.1))
    assert fired == [(client, [Terminated()])]
    assert len(table) == 0
    assert table.next_deadline() is None


def test_table_expire_drives_many_and_keeps_heap_bounded():
    table = TransactionTable()
    txs = [ClientTransaction(request(branch=f"z9hG4bK{i}"), False, T0) for i in range(50)]
    for tx in txs:
        table.start(tx)
    outcomes = 0
    while (deadline := table.next_deadline()) is not None:
        for _, actions in table.expire(deadline):
            outcomes += sum(isinstance(a, Timeout) for a in actions)
        assert len(table._heap) <= 2 * len(table) + 64
    assert outcomes == 50
    assert len(table) == 0


def test_table_transport_error_removes():
    table = TransactionTable()
    tx = ClientTransaction(request(), False, T0)
    table.start(tx)
    assert table.on_transport_error(tx, T0) == [TransportFailed(), Terminated()]
    assert len(table) == 0
    assert table.next_deadline() is None


# -- end to end over a lossy in-memory transport --------------------------------------------


class LossyLink:
    """Two transaction tables joined by a datagram channel that drops what ``losses`` says
    (one flag per datagram, in send order; True = lost) and delays every datagram 10 ms."""

    DELAY = timedelta(milliseconds=10)

    def __init__(self, losses: list[bool]) -> None:
        self.losses = iter(losses)
        self.in_flight: list[tuple[datetime, str, bytes]] = []  # (arrival, to, data)
        self.client = TransactionTable()
        self.server = TransactionTable()
        self.delivered: list[Response] = []
        self.outcomes: list[object] = []
        self.tu_requests = 0

    def send(self, to: str, data: bytes, now: datetime) -> None:
        if not next(self.losses, False):
            self.in_flight.append((now + self.DELAY, to, data))

    def act(self, side: str, actions: list, now: datetime) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.send("server" if side == "client" else "client", action.data, now)
            elif isinstance(action, Deliver) and action.response.status >= 200:
                self.delivered.append(action.response)
            elif isinstance(action, Timeout | TransportFailed):
                self.outcomes.append(action)

    def arrive(self, to: str, data: bytes, now: datetime) -> None:
        message = parse_message(data)
        if to == "server":
            assert isinstance(message, Request)
            again = self.server.on_request(message, now)
            if again is not None:
                self.act("server", again, now)
                return
            tx = ServerTransaction(message, False, now)
            self.server.add(tx)
            self.tu_requests += 1
            self.act("server", self.server.respond(tx, response(message, 200), now), now)
        else:
            assert isinstance(message, Response)
            actions = self.client.on_response(message, now)
            if actions is not None:
                self.act("client", actions, now)

    def run(self, until: datetime) -> None:
        while True:
            deadlines = [d for d in (self.client.next_deadline(), self.server.next_deadline()) if d]
            deadlines += [arrival for arrival, _, _ in self.in_flight]
            if not deadlines or min(deadlines) > until:
                return
            now = min(deadlines)
            due = [m for m in self.in_flight if m[0] <= now]
            self.in_flight = [m for m in self.in_flight if m[0] > now]
            for _, to, data in due:
                self.arrive(to, data, now)
            for side, table in (("client", self.client), ("server", self.server)):
                for _tx, actions in table.expire(now):
                    self.act(side, actions, now)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=40))
def test_lossy_udp_one_outcome_one_tu_request_and_everything_terminates(losses):
    link = LossyLink(losses)
    tx = ClientTransaction(request(), reliable=False, now=T0)
    link.act("client", link.client.start(tx), T0)
    link.run(until=at(120))
    # exactly one outcome reaches the client's TU: the 200 or a timeout (never both, never two)
    assert len(link.delivered) + len(link.outcomes) == 1
    assert link.tu_requests <= 1  # retransmissions never reach the server's TU twice
    if link.delivered:
        assert link.tu_requests == 1
    else:  # a timeout only when every retransmission in 64*T1 or every answer was lost
        assert isinstance(link.outcomes[0], Timeout)
    assert len(link.client) == 0 and len(link.server) == 0  # timers K and J cleaned up


def test_lossy_udp_recovers_from_lost_request_and_lost_response():
    # lost: the request, its first retransmission, then the server's first 200
    link = LossyLink([True, True, False, True])
    link.act("client", link.client.start(ClientTransaction(request(), False, T0)), T0)
    link.run(until=at(120))
    assert [r.status for r in link.delivered] == [200]
    assert link.tu_requests == 1


def test_known_branch_gives_the_same_key_as_parsing():
    req = request(branch="z9hG4bKknown1")
    assert (
        ClientTransaction(req, False, T0, branch="z9hG4bKknown1").key
        == ClientTransaction(req, False, T0).key
    )


# -- the table under random traffic (fuzz, bounded) -----------------------------------------

TABLE_OPS = st.lists(
    st.one_of(
        # a request arrives: (branch index, method, reliable); the same branch = retransmission
        st.tuples(
            st.just("request"),
            st.integers(0, 5),
            st.sampled_from(["MESSAGE", "OPTIONS", "REGISTER", "ACK"]),
            st.booleans(),
        ),
        # the TU answers one of the live server transactions
        st.tuples(
            st.just("respond"), st.integers(0, 7), st.sampled_from([100, 200, 403, 503]), st.just(0)
        ),
        # we send a request (client), and a response to it or to a stranger arrives
        st.tuples(st.just("send"), st.integers(0, 5), st.booleans(), st.just(0)),
        st.tuples(
            st.just("answer"), st.integers(0, 5), st.sampled_from([100, 200, 486]), st.just(0)
        ),
        st.tuples(st.just("tick"), st.floats(min_value=0, max_value=10), st.just(0), st.just(0)),
        st.tuples(st.just("error"), st.integers(0, 7), st.just(0), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops=TABLE_OPS)
def test_table_under_random_traffic_stays_bounded_and_empties(ops):
    """Whatever arrives in whatever order: at most ``limit`` live transactions (the next one
    refused with 503), only SIP errors escape, one final answer per server transaction on
    the wire, and once everything is answered and the timers ran out the table is empty."""
    limit = 4
    table = TransactionTable(limit=limit)
    now = T0
    finals: dict[int, int] = {}  # final answers sent at respond() per server transaction
    answered: list[ServerTransaction] = []  # kept alive, so their ids stay theirs
    for kind, a, b, c in ops:
        live = list(table._live.values())
        if kind == "request":
            req = request(b, branch=f"z9hG4bK-in-{a}")
            if table.on_request(req, now) is None and b != "ACK":
                tx = ServerTransaction(req, reliable=c, now=now)
                try:
                    table.add(tx)
                except TableFull as full:
                    assert full.status == 503
        elif kind == "respond":
            servers = [t for t in live if isinstance(t, ServerTransaction)]
            if servers:
                tx = servers[a % len(servers)]
                try:
                    actions = table.respond(tx, response(tx.request, b), now)
                except NoTransition:
                    continue  # answering a transaction that already has its final answer
                if b >= 200:
                    answered.append(tx)
                    finals[id(tx)] = finals.get(id(tx), 0) + len(sends(actions))
        elif kind == "send":
            tx = ClientTransaction(request(branch=f"z9hG4bK-out-{a}"), reliable=b, now=now)
            if table.get(tx.key) is None:
                try:
                    table.start(tx)
                except TableFull as full:
                    assert full.status == 503
        elif kind == "answer":
            table.on_response(response(request(branch=f"z9hG4bK-out-{a}"), b), now)
        elif kind == "tick":
            now += timedelta(seconds=a)
            table.expire(now)
        elif live:
            table.on_transport_error(live[a % len(live)], now)
        assert len(table) <= limit
        assert len(table._heap) <= 2 * len(table) + 64
    assert all(count <= 1 for count in finals.values())
    for tx in list(table._live.values()):  # the TU answers whatever it has not answered yet
        if isinstance(tx, ServerTransaction) and tx.state in (State.TRYING, State.PROCEEDING):
            table.respond(tx, response(tx.request, 500), now)
    while (deadline := table.next_deadline()) is not None:
        table.expire(deadline)
        assert deadline <= now + timedelta(seconds=64 * 0.5 + 10)
    assert len(table) == 0
