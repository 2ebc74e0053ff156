# The sipp harness against itself: sipp UAC -> sipp UAS on 127.0.0.1, no gateway involved.
from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.sipp import (
    free_port,
    parse_received,
    run_sipp,
    start_sipp,
    write_users_csv,
)

CALLS = 20
ARABIC = "مرحبا بالعالم، هذه رسالة اختبار رقم"  # message_uac.xml's body, + " <call number>"


@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["udp", "tcp"])
def test_message_uac_to_uas(tmp_path: Path, transport: str) -> None:
    # start_sipp returns once the UAS's socket is bound (UDP) / listening (TCP), read from
    # /proc: what the UAC sends from then on is queued by the kernel, never lost.
    with start_sipp(
        "message_uas.xml", transport=transport, calls=CALLS, timeout=30, cwd=tmp_path
    ) as uas:
        sent = run_sipp(
            "message_uac.xml",
            uas.address,
            transport=transport,
            calls=CALLS,
            rate=200,
            timeout=20,
            recv_timeout=5,
            cwd=tmp_path,
        )
        assert sent.ok, sent.report()
        assert (sent.successful, sent.failed) == (CALLS, 0), sent.report()
        served = uas.wait(timeout=10)  # -m CALLS: the UAS ends by itself after the last one

    assert served.returncode == 0, served.report()
    assert (served.successful, served.failed) == (CALLS, 0), served.report()
    received = served.received()
    assert len(received) == CALLS, served.logs
    assert sorted(m.body for m in received) == sorted(
        f"{ARABIC} {n}\r\n" for n in range(1, CALLS + 1)
    )
    assert len({m.call_id for m in received}) == CALLS
    assert all(m.request_uri == f"sip:service@127.0.0.1:{uas.port}" for m in received)
    assert all(m.from_header.startswith("<sip:sipp@127.0.0.1:") for m in received)


def test_failed_calls_are_counted_not_hidden(tmp_path: Path) -> None:
    # nobody listens on the port: every MESSAGE goes unanswered and each call must fail
    result = run_sipp(
        "message_uac.xml",
        ("127.0.0.1", free_port()),
        calls=2,
        rate=50,
        timeout=20,
        recv_timeout=1,
        cwd=tmp_path,
    )
    assert not result.ok
    assert result.returncode == 1, result.report()
    assert (result.successful, result.failed) == (0, 2), result.report()
    assert result.errors, result.report()


def test_stop_collects_a_running_uas(tmp_path: Path) -> None:
    uas = start_sipp("message_uas.xml", transport="u1", timeout=30, cwd=tmp_path)
    assert uas.running()
    result = uas.stop()
    assert not uas.running()
    assert result.returncode == 0, result.report()  # SIGUSR1: sipp's soft exit
    assert (result.successful, result.failed) == (0, 0), result.report()
    assert uas.stop() is result


def test_write_users_csv(tmp_path: Path) -> None:
    path = write_users_csv(
        tmp_path / "users.csv",
        [("1111", "john-Secret-1", "env1.example.net"), ("2222", "pw", "env1.example.net")],
    )
    assert path.read_text(encoding="utf-8").splitlines() == [
        "SEQUENTIAL",
        "1111;john-Secret-1;env1.example.net;[authentication username=1111 password=john-Secret-1]",
        "2222;pw;env1.example.net;[authentication username=2222 password=pw]",
    ]
    for bad in ("semi;colon", "spa ce", "brack]et", ""):
        with pytest.raises(ValueError):
            write_users_csv(tmp_path / "bad.csv", [("u", bad, "d.example")])


def test_parse_received_multiline_bodies() -> None:
    log = (
        "REGISTERED 1111\n"
        "MESSAGE-RECEIVED MESSAGE sip:1111@127.0.0.1:5070| <sip:gw@x>;tag=1| abc@x|line 1\r\n"
        "line | 2\r\n|END-OF-MESSAGE\n"
        "MESSAGE-RECEIVED MESSAGE sip:2222@127.0.0.1:5070| <sip:gw@x>;tag=2| def@x||END-OF-MESSAGE\n"
        "MESSAGE-RECEIVED MESSAGE sip:3333@127.0.0.1:5070| <sip:gw@x>;tag=3| ghi@x|half"
    )
    received = parse_received(log)
    assert [(m.request_uri, m.call_id, m.body) for m in received] == [
        ("sip:1111@127.0.0.1:5070", "abc@x", "line 1\r\nline | 2\r\n"),
        ("sip:2222@127.0.0.1:5070", "def@x", ""),
    ]
    assert received[0].from_header == "<sip:gw@x>;tag=1"
