# Passwords reach gatewayctl by file, stdin or prompt, never only by argv (visible in ps).
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from gateway.secrets import SecretBox, ha1, verify_password
from gateway.store.engine import make_engine
from gateway.store.schema import accounts, carriers, connections
from tests.conftest import Ctl, write_config

SIP_PW = "john Secret-1 with spaces"
SMPP_PW = "tata 123"


@pytest.fixture
def ctl(tmp_path: Path) -> Ctl:
    tool = Ctl(write_config(tmp_path, f"sqlite:///{tmp_path / 'gateway.db'}"), CliRunner())
    tool.ok("init")
    tool.ok("customer", "add", "John Doe")
    tool.ok("product", "add", "Call & Chat")
    return tool


def run(ctl: Ctl, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["gatewayctl", "--config", str(ctl.config), "--actor", "tester", *args]
    for secret in (SIP_PW, SMPP_PW):
        assert secret not in argv  # what ps shows
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def stored(ctl: Ctl, table, key, value):
    engine = make_engine(f"sqlite:///{ctl.config.parent / 'gateway.db'}")
    try:
        with engine.connect() as conn:
            return conn.execute(select(table).where(key == value)).mappings().one()
    finally:
        engine.dispose()


def secret_file(folder: Path, text: str) -> str:
    path = folder / "pw.txt"
    path.write_text(text + "\n", encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def test_password_file_and_stdin_reach_every_command_that_takes_a_password(ctl, tmp_path):
    account = ("account", "add", "1111", "--customer", "John Doe", "--product", "Call & Chat")
    done = run(ctl, *account, "--password-file", secret_file(tmp_path, SIP_PW))
    assert done.returncode == 0, done.stderr
    row = stored(ctl, accounts, accounts.c.account_id, "1111")
    realm = "env1.example.net"
    assert row["sip_ha1_md5"] == ha1("1111", realm, SIP_PW, "MD5")

    carrier = ("carrier", "add", "TATA", "--system-id", "TATA", "--allow-ip", "10.0.0.0/8")
    done = run(ctl, *carrier, "--password-stdin", stdin=SMPP_PW + "\n")
    assert done.returncode == 0, done.stderr
    assert verify_password(SMPP_PW, stored(ctl, carriers, carriers.c.name, "TATA")["password_hash"])

    connection = ("connection", "add", "to-env4", "--host", "127.0.0.1", "--port", "2775",
                  "--system-id", "GW-ENV1")  # fmt: skip
    done = run(ctl, *connection, "--password-stdin", stdin=SMPP_PW)  # no newline at the end
    assert done.returncode == 0, done.stderr
    box = SecretBox.from_key_file(tmp_path / "gateway.key")
    sealed = stored(ctl, connections, connections.c.name, "to-env4")["password_enc"]
    assert box.decrypt(sealed) == SMPP_PW

    for kind, ref, new in (("account", "1111", "a-new-Secret-2"), ("carrier", "TATA", "tata-2"),
                           ("connection", "to-env4", "peer-2")):  # fmt: skip
        done = run(ctl, kind, "passwd", ref, "--password-file", secret_file(tmp_path, new))
        assert done.returncode == 0, done.stderr
    assert verify_password(
        "tata-2", stored(ctl, carriers, carriers.c.name, "TATA")["password_hash"]
    )


def test_the_prompt_still_asks_twice_without_echo(ctl):
    result = ctl.ok(
        "carrier", "add", "TATA", "--system-id", "TATA", "--allow-ip", "10.0.0.0/8",
        input=f"{SMPP_PW}\n{SMPP_PW}\n",
    )  # fmt: skip
    assert SMPP_PW not in result.output
    assert verify_password(SMPP_PW, stored(ctl, carriers, carriers.c.name, "TATA")["password_hash"])


@pytest.mark.parametrize(
    ("extra", "stdin", "wanted"),
    [
        (("--password", "pw123456", "--password-stdin"), "x\n", "--password-stdin: give the"
         " password once, by one of --password, --password-file or --password-stdin"),
        (("--password-file", "FILE", "--password-stdin"), "x\n", "give the password once"),
        (("--password-file", "/nonexistent/pw"), None, "--password-file: cannot read"
         " /nonexistent/pw: No such file or directory"),
        (("--password-file", "EMPTY"), None, "--password-file: EMPTY is empty"),
        (("--password-file", "LATIN1"), None, "--password-file: LATIN1 is not UTF-8 text"),
        (("--password-stdin",), "", "--password-stdin: standard input is empty"),
    ],
)  # fmt: skip
def test_a_bad_password_source_is_one_line(ctl, tmp_path, extra, stdin, wanted):
    files = {"FILE": secret_file(tmp_path, "pw123456")}
    files["EMPTY"] = str(tmp_path / "empty")
    Path(files["EMPTY"]).write_bytes(b"")
    files["LATIN1"] = str(tmp_path / "latin1")
    Path(files["LATIN1"]).write_bytes("pässwörd\n".encode("latin-1"))
    argv = [files.get(arg, arg) for arg in extra]
    wanted = " ".join(files.get(word, word) for word in wanted.split(" "))
    result = run(ctl, "carrier", "add", "TATA", "--system-id", "TATA", "--allow-ip",
                 "10.0.0.0/8", *argv, stdin=stdin)  # fmt: skip
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and wanted in line, line


def test_help_names_the_safe_sources():
    result = CliRunner().invoke(__import__("gatewayctl").main, ["account", "add", "--help"])
    assert "--password-file" in result.output and "--password-stdin" in result.output
    assert "visible to local users in ps" in result.output
