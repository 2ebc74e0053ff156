# SMPP over TLS: a carrier binds and submits on the TLS listener; outdated TLS is refused.
from __future__ import annotations

import contextlib
import ssl

import pytest
import smpplib.client
import smpplib.exceptions
import trustme
from click.testing import CliRunner

from tests.conftest import Ctl
from tests.interop.gateway_process import GatewayProcess
from tests.interop.peers import TATA_PW, add_tata


@pytest.fixture
def tls_gateway(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)  # the gateway refuses a private key others can read
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    gw = GatewayProcess(
        tmp_path, f"sqlite:///{tmp_path / 'gateway.db'}", smpp_tls=(str(cert_file), str(key_file))
    )
    gw.write_config()
    ctl = Ctl(gw.config, CliRunner())
    ctl.ok("init")
    add_tata(ctl)
    ctl.ok("customer", "add", "John Doe")
    ctl.ok("product", "add", "Call & Chat")
    ctl.ok(
        "account", "add", "1111", "--customer", "John Doe", "--did", "111222333",
        "--password", "john-Secret-1", "--product", "Call & Chat",
    )  # fmt: skip
    gw.start()
    yield gw, ca
    gw.kill()


def test_bind_and_submit_over_tls(tls_gateway) -> None:
    gateway, ca = tls_gateway
    assert gateway.smpp_tls_port
    context = ssl.create_default_context()
    context.check_hostname = False  # smpplib wraps without a server name; the chain is verified
    ca.configure_trust(context)
    client = smpplib.client.Client(
        "127.0.0.1",
        gateway.smpp_tls_port,
        timeout=10,
        ssl_context=context,
        allow_unknown_opt_params=True,
    )
    client.connect()
    assert client.bind_transceiver(system_id="TATA", password=TATA_PW).status == 0
    client.send_message(
        source_addr_ton=5,
        source_addr="AsiaCell",
        dest_addr_ton=1,
        destination_addr="964111222333",
        short_message=b"over TLS",
    )
    resp = client.read_pdu()
    assert resp.command == "submit_sm_resp" and resp.status == 0
    client.unbind()
    client.disconnect()
    gateway.wait_for_log("bound trx from 127.0.0.1 over TLS")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_outdated_tls_is_refused(tls_gateway) -> None:
    gateway, ca = tls_gateway
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    ca.configure_trust(context)
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ssl.SSLError):  # let the client offer the old suites at all
        context.set_ciphers("ALL:@SECLEVEL=0")
    client = smpplib.client.Client(
        "127.0.0.1",
        gateway.smpp_tls_port,
        timeout=10,
        ssl_context=context,
        allow_unknown_opt_params=True,
    )
    with pytest.raises((ssl.SSLError, smpplib.exceptions.ConnectionError)):
        client.connect()
