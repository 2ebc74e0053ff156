# TLS with modern settings only: the SIP TLS listener refuses TLS 1.0/1.1 and speaks 1.2+
# (the SMPP side: tests/interop/test_smpp_tls.py).
from __future__ import annotations

import contextlib
import socket
import ssl

import pytest

from tests.interop.sipua import harness_ca, make_tls_files


@pytest.fixture
def tls_gateway(make_env, tmp_path):
    _, cert, key = make_tls_files(tmp_path / "tls")
    listen = [
        {"transport": "udp", "host": "127.0.0.1", "port": 0},
        {"transport": "tls", "host": "127.0.0.1", "port": 0, "cert": str(cert), "key": str(key)},
    ]
    gw = make_env(sip={"listen": listen}).start()
    yield gw
    gw.stop()


def handshake(port: int, context: ssl.SSLContext) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


def client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    harness_ca().configure_trust(context)
    return context


def test_sip_tls_speaks_tls_1_2_or_later(tls_gateway):
    assert handshake(tls_gateway.sip_ports["tls"], client_context()) in ("TLSv1.2", "TLSv1.3")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_sip_tls_refuses_tls_1_0_and_1_1(tls_gateway):
    context = client_context()
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ssl.SSLError):  # let the client offer the old suites at all
        context.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(tls_gateway.sip_ports["tls"], context)
