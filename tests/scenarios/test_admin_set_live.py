# `carrier set` and `connection set` reach a running gateway on its reload, without a restart.
from __future__ import annotations

import socket

import smpplib.client
import smpplib.exceptions
import smpplib.smpp

from gateway.smpp.constants import Status

ACME_PW = "acme1234"
TIMEOUT = 30.0


def bind_from(address: str, port: int) -> int | str:
    """A transceiver bind as ACME from ``address`` (a loopback alias): the bind_resp's
    command_status, or "closed" when the gateway dropped the connection."""
    client = smpplib.client.Client(
        "127.0.0.1", port, timeout=TIMEOUT, allow_unknown_opt_params=True
    )
    sock = socket.socket()
    sock.settimeout(TIMEOUT)
    sock.bind((address, 0))
    client._socket = sock  # smpplib connects the socket it is given (its own has no source)
    try:
        client.connect()
        client.bind_transceiver(system_id="ACME", password=ACME_PW)
    except smpplib.exceptions.PDUError as error:
        return int(error.args[1])
    except smpplib.exceptions.ConnectionError:
        return "closed"
    finally:
        client.disconnect()
    return int(Status.ESME_ROK)


def test_carrier_set_allow_ip_lets_the_new_address_bind_without_a_restart(make_env) -> None:
    gw = make_env(carrier=False)
    gw.ctl.ok(
        "carrier", "add", "ACME", "--system-id", "ACME", "--password", ACME_PW,
        "--allow-ip", "127.0.0.2",
    )  # fmt: skip
    gw.start()
    assert bind_from("127.0.0.2", gw.smpp_port) == Status.ESME_ROK
    assert bind_from("127.0.0.3", gw.smpp_port) != Status.ESME_ROK  # not allowed yet

    gw.ctl.ok("carrier", "set", "ACME", "--add-allow-ip", "127.0.0.3/32")
    gw.wait_for_log(r"carriers reloaded: ACME changed")
    assert bind_from("127.0.0.3", gw.smpp_port) == Status.ESME_ROK
    assert gw.process.poll() is None  # the same process: no restart

    gw.ctl.ok("carrier", "set", "ACME", "--remove-allow-ip", "127.0.0.2")
    gw.wait_for_log(r"carriers reloaded: ACME changed", count=2)
    assert bind_from("127.0.0.2", gw.smpp_port) != Status.ESME_ROK


def test_connection_set_port_makes_the_gateway_reconnect_to_the_new_port(make_env) -> None:
    old, new = socket.socket(), socket.socket()
    for peer in (old, new):
        peer.bind(("127.0.0.1", 0))
        peer.listen(8)
        peer.settimeout(TIMEOUT)
    gw = make_env(carrier=False)
    gw.ctl.ok(
        "connection", "add", "Vendor", "--host", "127.0.0.1", "--port",
        str(old.getsockname()[1]), "--system-id", "GW-ENV1", "--password", "peer1234",
    )  # fmt: skip
    gw.start()
    try:
        first, _ = old.accept()  # the gateway binds out to the port it was given
        first.close()
        gw.ctl.ok("connection", "set", "Vendor", "--port", str(new.getsockname()[1]))
        second, _ = new.accept()  # and, after `set`, to the new one, without a restart
        assert second.recv(4096)[4:8] == bytes.fromhex("00000009")  # bind_transceiver
        second.close()
        gw.wait_for_log(r"connection Vendor changed: binding again")
        assert gw.process.poll() is None
    finally:
        old.close()
        new.close()


def test_a_bind_from_an_address_taken_off_the_allow_list_is_unbound(make_env) -> None:
    """`carrier set --remove-allow-ip` ends the binds already up from that address on the
    next reload (the gateway sends unbind), while a bind from an address still allowed stays."""
    gw = make_env(carrier=False)
    gw.ctl.ok(
        "carrier", "add", "ACME", "--system-id", "ACME", "--password", ACME_PW,
        "--allow-ip", "127.0.0.2", "--allow-ip", "127.0.0.3",
    )  # fmt: skip
    gw.start()
    clients = {}
    try:
        for address in ("127.0.0.2", "127.0.0.3"):
            client = smpplib.client.Client(
                "127.0.0.1", gw.smpp_port, timeout=TIMEOUT, allow_unknown_opt_params=True
            )
            sock = socket.socket()
            sock.settimeout(TIMEOUT)
            sock.bind((address, 0))
            client._socket = sock
            client.connect()
            client.bind_transceiver(system_id="ACME", password=ACME_PW)
            clients[address] = client
        gw.ctl.ok("carrier", "set", "ACME", "--remove-allow-ip", "127.0.0.2")
        gw.wait_for_log(r"carrier ACME no longer allows 127\.0\.0\.2: unbinding it")
        pdu = clients["127.0.0.2"].read_pdu()  # the gateway's unbind
        assert pdu.command == "unbind"
        clients["127.0.0.3"].send_pdu(
            smpplib.smpp.make_pdu("enquire_link", client=clients["127.0.0.3"])
        )
        assert clients["127.0.0.3"].read_pdu().command == "enquire_link_resp"  # still bound
    finally:
        for client in clients.values():
            client.disconnect()
