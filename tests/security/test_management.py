# The management listener under attack: malformed HTTP floods the log no more; token on /metrics.
from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from gateway.management import LOGGED_PER_MINUTE, ManagementServer, RequestLog, is_loopback

TOKEN = "0123456789abcdef0123456789abcdef"
BAD_REQUESTS = 500

# What a scanner or a broken client sends: each is one request aiohttp cannot parse.
MALFORMED = (
    b"GET / HTTP/1.1\r\nHost: x\r\nNo colon in this header\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,  # a TLS hello
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
)


def token_file(folder: Path) -> Path:
    path = folder / "management.token"
    path.write_text(TOKEN + "\n", encoding="ascii")
    path.chmod(0o600)
    return path


def get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def send_raw(port: int, data: bytes) -> bytes:
    """One connection: ``data``, then everything the listener answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def bad_requests(metrics: bytes) -> float:
    found = re.findall(rb"^gateway_management_bad_requests_total\{[^}]*\} (\S+)$", metrics, re.M)
    return sum(float(value) for value in found)


def test_500_malformed_requests_are_counted_and_logged_one_line_each_within_a_cap(
    make_env, tmp_path
):
    gw = make_env(
        carrier=False,
        management={"host": "127.0.0.1", "port": 0, "token_file": str(token_file(tmp_path))},
    )
    gw.start()
    port = gw.management_port
    started = time.monotonic()
    health = []
    for i in range(BAD_REQUESTS):
        answer = send_raw(port, MALFORMED[i % len(MALFORMED)])
        assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0], answer[:80]
        if i % 100 == 99:  # legitimate traffic meanwhile
            health.append(get(port, "/healthz")[0])
    seconds = time.monotonic() - started
    status, metrics = get(port, "/metrics", TOKEN)
    assert status == 200
    assert bad_requests(metrics) == BAD_REQUESTS  # every one counted, logged or not
    assert health == [200] * (BAD_REQUESTS // 100)
    assert gw.stop() == 0
    gw.wait_for_log(r"\bstopped\b")
    raw = gw.raw_log()
    lines = [line for line in gw.log().splitlines() if "Error handling request" in line]
    assert "Traceback" not in raw
    # at most the cap a minute (two windows if the run straddles a minute's end), one line each
    assert 1 <= len(lines) <= 2 * LOGGED_PER_MINUTE + 1, "\n".join(lines)
    log_bytes = sum(len(line) for line in lines)
    print(  # the figures for tests/reliability/README.md (pytest -s)
        f"\n{BAD_REQUESTS} malformed requests in {seconds:.1f}s: {len(lines)} log lines,"
        f" {log_bytes} bytes; /healthz {health.count(200)}/{len(health)} answered 200"
    )


def test_status_and_metrics_need_the_token_health_checks_stay_open(make_env, tmp_path):
    token = token_file(tmp_path)
    gw = make_env(
        carrier=False, management={"host": "127.0.0.1", "port": 0, "token_file": str(token)}
    )
    gw.start()
    port = gw.management_port
    for path in ("/metrics", "/status"):
        assert get(port, path)[0] == 401
        assert get(port, path, "not-the-token-at-all-00000000000")[0] == 401
        assert get(port, path, TOKEN)[0] == 200
    assert get(port, "/healthz")[0] == 200  # load balancers have no token
    assert get(port, "/readyz")[0] == 200
    _, metrics = get(port, "/metrics", TOKEN)
    assert re.search(rb"^gateway_management_unauthorized_total 4\.0$", metrics, re.M)
    # gatewayctl status sends the token of the config (port 0 there: --url names the port)
    url = f"http://127.0.0.1:{port}"
    shown = subprocess.run(
        ["gatewayctl", "--config", str(gw.config), "status", "--url", url, "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["env"] == "env1"
    # a config without the token: one line naming the fix, no traceback
    other = tmp_path / "no-token.yaml"
    other.write_text(gw.config.read_text().replace(f"token_file: {token}", ""), encoding="utf-8")
    refused = subprocess.run(
        ["gatewayctl", "--config", str(other), "status", "--url", url, "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "401" in refused.stderr and "management.token_file" in refused.stderr
    gw.stop()


def test_a_token_file_others_can_read_is_refused_at_start(make_env, tmp_path):
    token = token_file(tmp_path)
    token.chmod(0o644)
    gw = make_env(
        carrier=False, management={"host": "127.0.0.1", "port": 0, "token_file": str(token)}
    )
    result = subprocess.run(
        ["gatewayctl", "--config", str(gw.config), "serve"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "management.token_file" in result.stderr and f"chmod 600 {token}" in result.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("mgmt.example.net", False)],
)  # fmt: skip
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_a_listener_beyond_loopback_without_a_token_warns(caplog):
    async def status() -> list[str]:
        return []

    exposed = ManagementServer("0.0.0.0", 0, dict, status)
    with caplog.at_level(logging.WARNING, logger="gateway.management"):
        assert exposed.warn_if_exposed()
    assert "beyond loopback without a token" in caplog.text
    assert not ManagementServer("0.0.0.0", 0, dict, status, b"x" * 16).warn_if_exposed()
    assert not ManagementServer("127.0.0.1", 0, dict, status).warn_if_exposed()


def test_the_request_log_caps_lines_a_minute_and_counts_the_rest(caplog):
    now = [0.0]
    request_log = RequestLog(logging.getLogger("gateway.management"), 10, lambda: now[0])
    from aiohttp.http_exceptions import BadHttpMessage

    with caplog.at_level(logging.DEBUG, logger="gateway.management"):
        for _ in range(500):
            request_log.exception(
                "Error handling request from %s", "127.0.0.1", exc_info=BadHttpMessage("bad")
            )
        assert len(caplog.records) == 10
        assert all(record.exc_info is None for record in caplog.records)  # one line each
        now[0] = 61.0
        request_log.exception("Error handling request from %s", "127.0.0.1", exc_info=None)
    assert "490 more bad requests in the last minute were not logged" in caplog.text
    assert len(caplog.records) == 12
