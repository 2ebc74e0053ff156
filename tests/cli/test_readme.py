# Every gatewayctl command the README shows is run, in order, on a fresh install's layout:
# the README cannot promise a command that does not work.
from __future__ import annotations

import re
import shlex
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatewayctl import main

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Pw123456"  # answers every password prompt (SIP and SMPP: 8 characters)


def readme_commands() -> list[str]:
    """The gatewayctl commands of the README's ``sh`` blocks, continuations joined and
    comments dropped, in the README's order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith("gatewayctl "):
                found.append(shlex.split(line, comments=True))
    return [" ".join(shlex.quote(a) for a in args) for args in found]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def install(tmp_path, monkeypatch):
    """The repository's conf/ in a fresh working directory (free ports instead of the
    well-known ones, the management listener on a port known in advance)."""
    conf = tmp_path / "conf"
    conf.mkdir()
    for example in (ROOT / "conf").glob("*.yaml"):
        shutil.copy(example, conf / example.name)
    text = (conf / "gateway.yaml").read_text(encoding="utf-8")
    text = re.sub(r"port: \d+", "port: 0", text)
    text = text.replace("management: {host: 127.0.0.1, port: 0}",
                        f"management: {{host: 127.0.0.1, port: {free_port()}}}")  # fmt: skip
    (conf / "gateway.yaml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    return tmp_path


def test_every_gatewayctl_command_in_the_readme_works(install):
    commands = readme_commands()
    assert len(commands) >= 20, commands
    runner = CliRunner()
    assert runner.invoke(main, ["init"]).exit_code == 0
    server = None
    try:
        for command in commands:
            args = shlex.split(command)[1:]
            if args[0] == "status" and server is None:  # needs a running gateway
                server = subprocess.Popen(
                    ["gatewayctl", "serve"], stderr=subprocess.PIPE, text=True
                )
                assert server.stderr is not None
                for line in server.stderr:  # until it is ready (no sleeping)
                    if "ready;" in line:
                        break
            if args[0] == "demo":
                done = subprocess.run(["gatewayctl", *args], capture_output=True, text=True,
                                      timeout=180)  # fmt: skip
                assert done.returncode == 0, (command, done.stdout, done.stderr)
                continue
            result = runner.invoke(main, args, input=f"{PASSWORD}\n{PASSWORD}\n")
            assert result.exit_code == 0, (command, result.output)
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
