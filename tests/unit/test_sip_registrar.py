# Tests of gateway/sip/registrar.py: REGISTER rules of RFC 3261 §10.3 on a fake clock.
"""Bindings: add, refresh, remove, query, ordering, limits, errors that change nothing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.message import Request, SipError, parse_message
from gateway.sip.registrar import Binding, Bindings, RegisterResult

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
ACCOUNT = 7
AOR = "1111"
SOURCE = ("198.51.100.7", 40123)
PHONE = "sip:1111@198.51.100.7:40123;transport=tcp"
TABLET = "sip:1111@203.0.113.9:5060"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def register(
    *contacts: str,
    expires: str | None = None,
    call_id: str = "reg-1@app",
    cseq: int = 1,
    extra: tuple[str, ...] = (),
    user_agent: str | None = "TestApp/1.0",
) -> Request:
    lines = [
        "REGISTER sip:env1.example.net SIP/2.0",
        "Via: SIP/2.0/TCP 198.51.100.7:40123;branch=z9hG4bK-1;rport",
        "Max-Forwards: 70",
        "To: <sip:1111@env1.example.net>",
        "From: <sip:1111@env1.example.net>;tag=abc",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
    ]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if user_agent is not None:
        lines.append(f"User-Agent: {user_agent}")
    lines += list(extra)
    parsed = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(parsed, Request)
    return parsed


def do(
    bindings: Bindings,
    request: Request,
    now: datetime = T0,
    *,
    account: int = ACCOUNT,
    transport: str = "tcp",
    source: tuple[str, int] = SOURCE,
) -> RegisterResult:
    return bindings.register(
        account, AOR if account == ACCOUNT else f"acc{account}", request,
        transport=transport, source=source, now=now,
    )  # fmt: skip


def contact_headers(result: RegisterResult) -> list[str]:
    return [v for n, v in result.headers if n == "Contact"]


def snapshot(bindings: Bindings) -> list[Binding]:
    return sorted(bindings, key=lambda b: (b.account, b.contact))


# -- adding, refreshing, querying -----------------------------------------------------------
def test_first_register_adds_a_binding_and_lists_it_with_date() -> None:
    reg = Bindings()
    result = do(reg, register(f"<{PHONE}>", expires="600"))
    assert (result.status, result.reason, result.changed) == (200, "OK", True)
    assert result.previous == ()
    [binding] = result.current
    assert binding == Binding(
        account=ACCOUNT,
        aor=AOR,
        contact=PHONE,
        expires_at=at(600),
        call_id="reg-1@app",
        cseq=1,
        q=None,
        transport="tcp",
        source=SOURCE,
        user_agent="TestApp/1.0",
        updated_at=T0,
    )
    assert contact_headers(result) == [f"<{PHONE}>;expires=600"]
    assert ("Date", "Mon, 23 Nov 2026 08:00:00 GMT") in result.headers
    assert reg.contacts(ACCOUNT, T0) == [binding]
    assert len(reg) == 1
    assert reg.accounts_with_bindings() == {ACCOUNT}


def test_refresh_extends_the_binding_and_remaining_time_is_listed() -> None:
    reg = Bindings()
    do(reg, register(f"<{PHONE}>", expires="600"))
    result = do(reg, register(f"<{PHONE}>", expires="600", cseq=2), at(300))
    assert result.changed
    [binding] = result.current
    assert binding.expires_at == at(900) and binding.cseq == 2 and binding.updated_at == at(300)
    assert [b.expires_at for b in result.previous] == [at(600)]
    assert len(reg) == 1
    # another contact registered later lists the first with the seconds it has left
    later = do(reg, register(f"<{TABLET}>", expires="600", cseq=3), at(400))
    assert sorted(contact_headers(later)) == sorted(
        [f"<{PHONE}>;expires=500", f"<{TABLET}>;expires=600"]
    )


def test_query_without_contact_lists_bindings_and_changes_nothing() -> None:
    reg = Bindings()
    do(reg, register(f"<{PHONE}>", expires="600"))
    before = snapshot(reg)
    result = do(reg, register(cseq=2), at(100))
    assert (result.status, result.changed) == (200, False)
    assert contact_headers(result) == [f"<{PHONE}>;expires=500"]
    assert snapshot(reg) == before
    empty = do(Bindings(), register())
    assert (empty.status, empty.current, contact_headers(empty)) == (200, (), [])
    assert any(n == "Date" for n, _ in empty.headers)


def test_same_request_again_with_higher_cseq_and_same_time_is_unchanged() -> None:
    reg = Bindings()
    do(reg, register(f"<{PHONE}>", expires="600"))
    # identical binding except the CSeq: still a change (the CSeq is part of the binding)
    assert do(reg, register(f"<{PHONE}>", expires="600", cseq=2)).changed


def test_several_contacts_in_one_header_and_in_several_headers() -> None:
    reg = Bindings()
    result = do(reg, register(f"<{PHONE}>, <{TABLET}>;expires=120", expires="600"))
    assert {b.contact: b.expires_at for b in result.current} == {PHONE: at(600), TABLET: at(120)}
    other = Bindings()
    result2 = do(other, register(f"<{PHONE}>", f"<{TABLET}>;expires=120", expires="600"))
    assert result2.current == result.current
    assert len(other) == 2


def test_bare_addr_spec_and_display_name_contacts() -> None:
    reg = Bindings()
    result = do(reg, register("sip:1111@192.0.2.1:5070", '"John" <sip:1111@192.0.2.2>'))
    assert {b.contact for b in result.current} == {"sip:1111@192.0.2.1:5070", "sip:1111@192.0.2.2"}


def test_same_contact_twice_in_one_request_the_last_counts() -> None:
    reg = Bindings()
    result = do(reg, register(f"<{PHONE}>;expires=100", f"<{PHONE}>;expires=200"))
    [binding] = result.current
    assert binding.expires_at == at(200)


# -- expiry values --------------------------------------------------------------------------
def test_expires_param_beats_header_which_beats_default() -> None:
    reg = Bindings(default_expires=1800)
    a = do(reg, register(f"<{PHONE}>;expires=300", expires="900")).current
    assert a[0].expires_at == at(300)
    b = do(reg, register(f"<{PHONE}>", expires="900", cseq=2)).current
    assert b[0].expires_at == at(900)
    c = do(reg, register(f"<{PHONE}>", cseq=3)).current
    assert c[0].expires_at == at(1800)


def test_expiry_above_max_is_lowered() -> None:
    reg = Bindings(max_expires=3600)
    result = do(reg, register(f"<{PHONE}>", expires="86400"))
    assert result.current[0].expires_at == at(3600)
    assert contact_headers(result) == [f"<{PHONE}>;expires=3600"]
    huge = do(reg, register(f"<{PHONE}>;expires=99999999999999999999", cseq=2))
    assert huge.status == 200 and huge.current[0].expires_at == at(3600)


def test_too_brief_is_423_with_min_expires_and_changes_nothing() -> None:
    reg = Bindings(min_expires=60)
    do(reg, register(f"<{PHONE}>", expires="600"))
    before = snapshot(reg)
    result = do(reg, register(f"<{TABLET}>", expires="30", cseq=2))
    assert (result.status, result.reason) == (423, "Interval Too Brief")
    assert result.headers == (("Min-Expires", "60"),)
    assert not result.changed
    assert snapshot(reg) == before
    # one contact too brief among good ones refuses the whole request
    mixed = do(reg, register(f"<{TABLET}>;expires=3600", f"<{PHONE}>;expires=59", cseq=3))
    assert mixed.status == 423 and snapshot(reg) == before
    # exactly the minimum is fine
    assert do(reg, register(f"<{TABLET}>", expires="60", cseq=4)).status == 200


@pytest.mark.parametrize(
    ("contact", "expires"),
    [
        (f"<{PHONE}>", "soon"),
        (f"<{PHONE}>", "-5"),
        (f"<{PHONE}>", "1.5"),
        (f"<{PHONE}>;expires=abc", None),
        (f"<{PHONE}>;expires", None),
        (f"<{PHONE}>;expires=", None),
    ],
)
def test_non_integer_expiry_is_400(contact: str, expires: str | None) -> None:
    reg = Bindings()
    try:
        request = register(contact, expires=expires)
    except SipError:  # the parser itself refuses some of these: nothing reaches the registrar
        return
    result = do(reg, request)
    assert result.status == 400 and not result.changed and len(reg) == 0


# -- removing -------------------------------------------------------------------------------
def test_expires_zero_removes_one_contact() -> None:
    reg = Bindings()
    do(reg, register(f"<{PHONE}>", f"<{TABLET}>", expires="600"))
    result = do(reg, register(f"<{PHONE}>;expires=0", cseq=2), at(10))
    assert result.changed
    assert [b.contact for b in result.current] == [TABLET]
    assert contact_headers(result) == [f"<{TABLET}>;expires=590"]
    assert len(reg) == 1
    # removing one that is not there changes nothing
    again = do(reg, register(f"<{PHONE}>", expires="0", cseq=3), at(11))
    assert again.status == 200 and not again.changed


def test_star_with_expires_zero_removes_all_of_the_account_only() -> None:
    reg = Bindings()
    do(reg, register(f"<{PHONE}>", f"<{TABLET}>", expires="600"))
    do(reg, register(f"<{PHONE}>", expires="600"), account=8)
    result = do(reg, register("*", expires="0", cseq=2), at(5))
    assert (result.status, result.changed, result.current) == (200, True, ())
    assert len(result.previous) == 2
    assert contact_headers(result) == []
    assert reg.contacts(ACCOUNT, at(5)) == []
    assert len(reg) == 1 and reg.accounts_with_bindings() == {8}
    # a star for an account without bindings: fine, nothing changes
    assert not do(reg, register("*", expires="0", cseq=3), at(6)).changed


@pytest.mark.parametrize(
    ("contacts", "expires"),
    [
        (("*",), "3600"),
        (("*",), None),
        (("*", f"<{PHONE}>"), "0"),
        ((f"*, <{PHONE}>",), "0"),
    ],
)
def test_star_needs_expires_zero_and_to_stand_alone(
    contacts: tuple[str, ...], expires: str | None
) -> None:
    reg = Bindings()
    do(reg, register(f"<{TABLET}>", expires="600"))
    before = snapshot(reg)
    result = do(reg, register(*contacts, expires=expires, cseq=2))
    assert result.status == 400 and not result.changed
    assert snapshot(reg) == before


# -- Call-ID and CSeq (§10.3 step 6) ---------------------------------------------------------
def test_same_call_id_with_cseq_not_higher_is_500_and_changes_nothing() -> None:
    reg = Bindings()
    do(reg, register(f"<{PHONE}>", expires="600", cseq=5))
    before = snapshot(reg)
    for cseq in (5, 4):
        result = do(reg, register(f"<{PHONE}>", expires="0", cseq=cseq), at(1))
        assert result.status == 500 and "order" in result.reason.lower()
        assert not result.changed and snapshot(reg) == before
    # a stale star is refused too
    assert do(reg, register("*", expires="0", cseq=3)).status == 500
    # a request also adding a new contact is aborted whole
    mixed = do(reg, register(f"<{TABLET}>", f"<{PHONE}>", expires="600", cseq=5))
    assert mixed.status == 500 and snapshot(reg) == before
    assert do(reg, register(f"<{PHONE}>", expires="600", cseq=6)).status == 200


def test_different_call_id_replaces_or_removes_whatever_its_cseq() -> None:
    reg = Bindings()
    do(reg, register(f"<{PHONE}>", expires="600", call_id="old@app", cseq=50))
    result = do(reg, register(f"<{PHONE}>", expires="900", call_id="new@app", cseq=1), at(2))
    assert result.status == 200
    [binding] = result.current
    assert (binding.call_id, binding.cseq, binding.expires_at) == ("new@app", 1, at(902))
    gone = do(reg, register(f"<{PHONE}>", expires="0", call_id="third@app", cseq=1), at(3))
    assert gone.status == 200 and gone.current == ()


def test_cseq_rule_only_concerns_the_contacts_named() -> None:
    reg = Bindings()
    do(reg, register(f"<{PHONE}>", expires="600", cseq=5))
    # the same Call-ID with a lower CSeq but another contact: no stored binding to compare
    result = do(reg, register(f"<{TABLET}>", expires="600", cseq=1))
    assert result.status == 200 and len(result.current) == 2


# -- ordering by q -------------------------------------------------------------------------
def test_contacts_ordered_by_q_then_most_recently_updated() -> None:
    reg = Bindings()
    do(reg, register("<sip:a@192.0.2.1>;q=0.5", expires="600"))
    do(reg, register("<sip:b@192.0.2.2>", expires="600", cseq=2), at(1))  # no q: 1.0
    do(reg, register("<sip:c@192.0.2.3>;q=0.5", expires="600", cseq=3), at(2))
    do(reg, register("<sip:d@192.0.2.4>;q=1.0", expires="600", cseq=4), at(3))
    do(reg, register("<sip:e@192.0.2.5>;q=0", expires="600", cseq=5), at(4))
    order = [b.contact for b in reg.contacts(ACCOUNT, at(5))]
    assert order == [
        "sip:d@192.0.2.4",
        "sip:b@192.0.2.2",
        "sip:c@192.0.2.3",
        "sip:a@192.0.2.1",
        "sip:e@192.0.2.5",
    ]
    result = do(reg, register(cseq=6), at(5))
    assert contact_headers(result)[0] == "<sip:d@192.0.2.4>;expires=598;q=1"
    assert contact_headers(result)[2] == "<sip:c@192.0.2.3>;expires=597;q=0.5"
    assert [b.contact for b in result.current] == order


@pytest.mark.parametrize("q", ["1.5", "-0.1", "abc", "0.1234", "1.001", "2", ""])
def test_bad_q_is_400(q: str) -> None:
    reg = Bindings()
    try:
        request = register(f"<{PHONE}>;q={q}", expires="600")
    except SipError:  # refused by the parser already
        return
    result = do(reg, request)
    assert result.status == 400 and len(reg) == 0


def test_q_flag_without_value_is_400() -> None:
    assert do(Bindings(), register(f"<{PHONE}>;q", expires="600")).status == 400


# -- schemes, limits, bad input -------------------------------------------------------------
@pytest.mark.parametrize(
    "contact", ["<tel:+9641112223>", "<mailto:a@example.com>", "<http://example.com/x>"]
)
def test_contact_must_be_sip_or_sips(contact: str) -> None:
    reg = Bindings()
    do(reg, register(f"<{PHONE}>", expires="600"))
    before = snapshot(reg)
    result = do(reg, register(f"<{TABLET}>", contact, expires="600", cseq=2))
    assert (result.status, result.reason) == (416, "Unsupported URI Scheme")
    assert snapshot(reg) == before


def test_sips_contact_is_accepted() -> None:
    result = do(Bindings(), register("<sips:1111@app.example.com>", expires="600"))
    assert result.status == 200 and result.current[0].contact == "sips:1111@app.example.com"


def test_too_many_contacts_is_403_and_changes_nothing() -> None:
    reg = Bindings(max_contacts=2)
    do(reg, register("<sip:a@192.0.2.1>", "<sip:b@192.0.2.2>", expires="600"))
    before = snapshot(reg)
    result = do(reg, register("<sip:c@192.0.2.3>", expires="600", cseq=2))
    assert result.status == 403 and "contacts" in result.reason.lower()
    assert snapshot(reg) == before
    # replacing one within the limit is fine
    swap = do(reg, register("<sip:a@192.0.2.1>;expires=0", "<sip:c@192.0.2.3>", cseq=3))
    assert swap.status == 200 and {b.contact for b in swap.current} == {
        "sip:b@192.0.2.2",
        "sip:c@192.0.2.3",
    }
    # expired bindings do not count
    assert do(reg, register("<sip:d@192.0.2.4>", cseq=4), at(10_000)).status == 200


def test_overlong_contact_and_call_id_are_400() -> None:
    reg = Bindings()
    long_contact = f"<sip:{'u' * 520}@192.0.2.1>"
    assert do(reg, register(long_contact, expires="600")).status == 400
    assert do(reg, register(f"<{PHONE}>", expires="600", call_id="c" * 256)).status == 400
    assert len(reg) == 0


def test_malformed_contact_is_400_never_an_exception() -> None:
    request = register(f"<{PHONE}>", expires="600")
    request.headers.add("Contact", '"unterminated <sip:x@192.0.2.1>')
    result = do(Bindings(), request)
    assert result.status == 400 and result.current == ()


def test_user_agent_is_kept_bounded_and_optional() -> None:
    reg = Bindings()
    result = do(reg, register(f"<{PHONE}>", user_agent="X" * 300))
    assert result.current[0].user_agent == "X" * 255
    result = do(reg, register(f"<{TABLET}>", user_agent=None, cseq=2))
    assert {b.contact: b.user_agent for b in result.current}[TABLET] is None


def test_transport_and_source_are_recorded_per_binding() -> None:
    reg = Bindings()
    do(reg, register(f"<{PHONE}>"), transport="udp", source=("192.0.2.50", 5060))
    [binding] = reg.contacts(ACCOUNT, T0)
    assert (binding.transport, binding.source) == ("udp", ("192.0.2.50", 5060))


def test_naive_now_and_unknown_transport_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="naive"):
        Bindings().register(ACCOUNT, AOR, register(), transport="tcp", source=SOURCE,
                            now=datetime(2026, 1, 1))  # fmt: skip
    with pytest.raises(ValueError, match="transport"):
        do(Bindings(), register(), transport="sctp")


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        Bindings(min_expires=100, max_expires=50)
    with pytest.raises(ValueError):
        Bindings(default_expires=10, min_expires=60)
    with pytest.raises(ValueError):
        Bindings(max_contacts=0)


# -- expiry, restore, load ------------------------------------------------------------------
def test_expire_removes_only_what_is_due_and_skips_refreshed_ones() -> None:
    reg = Bindings()
    do(reg, register(f"<{PHONE}>", expires="100"))
    do(reg, register(f"<{TABLET}>", expires="200", cseq=2))
    do(reg, register(f"<{PHONE}>", expires="100"), account=8)
    assert reg.expire(at(99)) == []
    # account 7's phone refreshed at 50: its first expiry time passes without removing it
    do(reg, register(f"<{PHONE}>", expires="100", cseq=3), at(50))
    gone = reg.expire(at(100))
    assert [(b.account, b.contact) for b in gone] == [(8, PHONE)]
    assert len(reg) == 2 and reg.accounts_with_bindings() == {ACCOUNT}
    gone = reg.expire(at(200))
    assert [(b.account, b.contact) for b in gone] == [(ACCOUNT, PHONE), (ACCOUNT, TABLET)]
    assert len(reg) == 0 and reg.accounts_with_bindings() == frozenset()
    assert reg.expire(at(10_000)) == []


def test_expired_but_not_yet_removed_bindings_are_not_listed() -> None:
    reg = Bindings()
    do(reg, register(f"<{PHONE}>", expires="100"))
    assert reg.contacts(ACCOUNT, at(100)) == []
    result = do(reg, register(cseq=2), at(100))
    assert result.current == () and contact_headers(result) == []
    # a new REGISTER drops the expired one from the account (persisted with the change)
    result = do(reg, register(f"<{TABLET}>", cseq=3), at(101))
    assert [b.contact for b in result.current] == [TABLET] and len(reg) == 1
    assert reg.expire(at(101)) == []


def test_restore_rolls_back_a_failed_commit() -> None:
    reg = Bindings()
    do(reg, register(f"<{PHONE}>", expires="600"))
    before = snapshot(reg)
    result = do(reg, register(f"<{TABLET}>", f"<{PHONE}>;expires=0", cseq=2), at(1))
    assert [b.contact for b in result.current] == [TABLET]
    assert reg.restore(ACCOUNT, result.previous)
    assert snapshot(reg) == before
    # the restored binding expires again at its time, the discarded one never
    gone = reg.expire(at(10_000))
    assert [b.contact for b in gone] == [PHONE]
    assert len(reg) == 0


def test_restore_if_current_does_not_undo_a_later_register() -> None:
    reg = Bindings()
    first = do(reg, register(f"<{PHONE}>", expires="600"))
    second = do(reg, register(f"<{TABLET}>", expires="600", cseq=2), at(1))
    assert not reg.restore(ACCOUNT, first.previous, if_current=first.current)
    assert snapshot(reg) == list(sorted(second.current, key=lambda b: b.contact))
    assert reg.restore(ACCOUNT, second.previous, if_current=second.current)
    assert [b.contact for b in reg.contacts(ACCOUNT, at(2))] == [PHONE]


def test_restore_to_nothing_and_refuses_another_accounts_bindings() -> None:
    reg = Bindings()
    result = do(reg, register(f"<{PHONE}>", expires="600"))
    reg.restore(ACCOUNT, ())
    assert len(reg) == 0 and reg.accounts_with_bindings() == frozenset()
    with pytest.raises(ValueError):
        reg.restore(9, result.current)


def test_load_then_register_and_expire() -> None:
    source = Bindings()
    do(source, register(f"<{PHONE}>", f"<{TABLET}>;expires=300", expires="600"))
    loaded = Bindings()
    loaded.load(source)
    assert len(loaded) == 2 and snapshot(loaded) == snapshot(source)
    # the store's CSeq is remembered: a replayed request is still out of order
    assert do(loaded, register(f"<{PHONE}>", expires="600")).status == 500
    assert [b.contact for b in loaded.expire(at(300))] == [TABLET]


def test_remove_account_forgets_its_bindings() -> None:
    reg = Bindings()
    do(reg, register(f"<{PHONE}>"))
    assert [b.contact for b in reg.remove_account(ACCOUNT)] == [PHONE]
    assert len(reg) == 0 and reg.expire(at(10_000)) == []


def test_expire_is_cheap_with_many_bindings_and_refreshes() -> None:
    reg = Bindings(max_expires=3600)
    rng = random.Random(4)
    contact = "sip:u@192.0.2.1"
    reg.load(
        Binding(account, f"acc{account}", contact, at(rng.randint(60, 3599)), "reg-1@app", 1,
                None, "udp", SOURCE, None, T0)
        for account in range(12_000)
    )  # fmt: skip
    assert len(reg) == 12_000
    # many refreshes: stale heap entries must not pile up without bound
    for round_ in range(5):
        request = register(f"<{contact}>", expires="3600", cseq=2 + round_)
        for account in range(0, 12_000, 3):
            assert do(reg, request, at(round_ + 1), account=account).status == 200
    assert len(reg._heap) <= 2 * len(reg) + 1024
    total = 0
    for second in range(3600):
        total += len(reg.expire(at(second)))
    assert total == 8000 and len(reg) == 4000  # the refreshed ones live until 3605
    assert len(reg.expire(at(3605))) == 4000 and len(reg) == 0


# -- properties -----------------------------------------------------------------------------
contacts_st = st.sampled_from(["<sip:a@192.0.2.1>", "<sip:b@192.0.2.2>", "<sip:c@192.0.2.3>"])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(contacts_st, max_size=3),
            st.sampled_from([None, "0", "30", "60", "600", "7200", "x"]),
            st.integers(0, 5),
            st.sampled_from(["c1", "c2"]),
            st.integers(0, 4000),
        ),
        max_size=12,
    )
)
def test_errors_never_change_anything_and_count_is_consistent(steps) -> None:
    reg = Bindings(max_contacts=2)
    for contacts, expires, cseq, call_id, t in steps:
        before = snapshot(reg)
        result = do(reg, register(*contacts, expires=expires, cseq=cseq, call_id=call_id), at(t))
        if result.status != 200:
            assert snapshot(reg) == before and not result.changed
        else:
            assert all(b.expires_at > at(t) for b in result.current)
            assert len(result.current) <= 2
        assert len(reg) == len(snapshot(reg))
        reg.expire(at(t))


# -- random REGISTERs (fuzz, bounded) --------------------------------------------------------

POOL = [f"<sip:1111@192.0.2.{i}:5060>" for i in range(1, 6)] + ["*", "<sips:1111@app.example>"]
CONTACT = st.one_of(
    st.sampled_from(POOL),
    st.builds(
        str.__add__,
        st.sampled_from(POOL),
        st.sampled_from([";expires=0", ";expires=30", ";expires=x", ";q=0.5", ";q=7", ";q", ""]),
    ),
    st.text(st.characters(blacklist_characters="\r\n\x00", max_codepoint=0x2FF), max_size=40),
)
REGISTERS = st.lists(
    st.tuples(
        st.sampled_from([1, 2]),  # the account
        st.lists(CONTACT, max_size=4),
        st.one_of(st.none(), st.sampled_from(["0", "30", "600", "99999999999", "-1", "x"])),
        st.sampled_from(["c1", "c2"]),  # Call-ID
        st.integers(0, 2**31 - 1),  # CSeq
        st.integers(0, 4000),  # seconds since the previous one
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(ops=REGISTERS)
def test_random_registers_are_answered_and_never_touch_another_account(ops) -> None:
    """Every REGISTER gets a status (never an exception); a refused one changes nothing; no
    account ever holds more than ``max_contacts`` live bindings; one account's REGISTER
    never changes another's bindings."""
    reg = Bindings(max_contacts=3)
    now = T0
    for account, contacts, expires, call_id, cseq, step in ops:
        now += timedelta(seconds=step)
        try:
            request = register(*contacts, expires=expires, call_id=call_id, cseq=cseq)
        except (SipError, AssertionError):
            continue  # not a parseable REGISTER: the parser's own fuzz covers it
        before = {a: reg.held(a) for a in (1, 2)}
        result = do(reg, request, now, account=account)
        assert result.status == 200 or 400 <= result.status < 600, result
        other = 2 if account == 1 else 1
        assert reg.held(other) == before[other]
        if result.status != 200:
            assert reg.held(account) == before[account] and not result.changed
        assert all(b.account == account for b in result.current)
        assert len(reg.contacts(account, now)) <= reg.max_contacts
