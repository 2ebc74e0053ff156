# The README's tour, run as written: its gatewayctl commands in order on a fresh install's layout,
# then its traffic part (the gateway started as it says, an app registered, its smpplib example).
from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.config import load_config
from gateway.sip.testua import TestUA
from gatewayctl import main

ROOT = Path(__file__).resolve().parents[2]
# answers every password prompt: the SMPP password the tour suggests for TATA (1-8
# characters), long enough for a SIP password too (8 or more)
PASSWORD = "tata1234"
TIMEOUT = 60.0


def readme_steps() -> list[tuple[str, str]]:
    """The README's gatewayctl commands (``sh`` blocks, continuations joined, comments
    dropped) and Python examples, as ("sh", command) and ("python", code), in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    steps: list[tuple[str, str]] = []
    for match in re.finditer(r"^( *)```(sh|python)\n(.*?)^ *```", text, flags=re.S | re.M):
        block = textwrap.dedent(match.group(3))
        if match.group(2) == "python":
            steps.append(("python", block))
            continue
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith("gatewayctl "):
                args = shlex.split(line, comments=True)
                steps.append(("sh", " ".join(shlex.quote(a) for a in args)))
    return steps


def readme_commands() -> list[str]:
    """The gatewayctl commands of the README, in its order."""
    return [step for kind, step in readme_steps() if kind == "sh"]


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


class Server:
    """``gatewayctl serve`` as the README starts it, in the install's working directory."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(["gatewayctl", "serve"], stderr=subprocess.PIPE, text=True)
        self.ports: dict[str, int] = {}
        self.log: list[str] = []
        assert self.process.stderr is not None
        for line in self.process.stderr:  # until it is ready (no sleeping)
            self.log.append(line)
            found = re.search(r"(smpp|sip udp) listening on [\d.]+:(\d+)", line)
            if found:
                self.ports[found.group(1)] = int(found.group(2))
            if "ready;" in line:
                break
        assert self.process.poll() is None, "".join(self.log)
        # keep reading, so the gateway never blocks on a full pipe
        threading.Thread(target=self.log.extend, args=(self.process.stderr,), daemon=True).start()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


class App:
    """John's app (the built-in SIP test UA) registered as the README says: user 1111, its
    password, the config's sip.domain; answers the first MESSAGE 200."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.domain = load_config("conf/gateway.yaml").sip.domain
        self.registered = threading.Event()
        self.bodies: list[str] = []
        self.problem: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.registered.wait(TIMEOUT) and self.problem is None, self.problem

    def _run(self) -> None:
        try:
            asyncio.run(self._play())
        except (AssertionError, OSError, TimeoutError) as exc:  # reported to the test
            self.problem = exc
            self.registered.set()

    async def _play(self) -> None:
        ua = await TestUA(
            "udp", ("127.0.0.1", self.port), user="1111", password=PASSWORD, domain=self.domain
        ).open()
        try:
            answer = await ua.register(expires=300)
            assert answer.status == 200, answer.status
            self.registered.set()
            request = await ua.incoming(timeout=TIMEOUT)
            ua.answer(request, 200)
            self.bodies.append(request.body.decode())
        finally:
            ua.close()


def run_smpplib_example(code: str, server: Server) -> str:
    """The README's smpplib example, as written but for the port (free, not 2775)."""
    written = 'smpplib.client.Client("127.0.0.1", 2775)'
    assert code.count(written) == 1, code
    code = code.replace(written, f'smpplib.client.Client("127.0.0.1", {server.ports["smpp"]})')
    app = App(server.ports["sip udp"])
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    app.thread.join(TIMEOUT)
    assert app.problem is None and app.bodies == ["Hi John"], (app.problem, app.bodies)
    return done.stdout


def test_the_readme_tour_works_as_written(install):
    steps = readme_steps()
    assert len([kind for kind, _ in steps if kind == "sh"]) >= 20, steps
    assert [kind for kind, _ in steps].count("python") == 1, steps
    runner = CliRunner()
    assert runner.invoke(main, ["init"]).exit_code == 0
    server: Server | None = None
    message_id = None
    try:
        for kind, step in steps:
            if kind == "python":  # the traffic part: with the gateway running
                server = server or Server()
                out = run_smpplib_example(step, server)
                sent = re.search(r"^message id (\S+)$", out, flags=re.M)
                assert sent, out
                message_id = sent.group(1)
                receipt = rf"^receipt id:{message_id} sub:001 dlvrd:001 .*stat:DELIVRD"
                assert re.search(receipt, out, flags=re.M), out
                continue
            args = shlex.split(step)[1:]
            if args[0] == "status" and server is None:  # needs a running gateway
                server = Server()
            if args[0] == "demo":
                done = subprocess.run(["gatewayctl", *args], capture_output=True, text=True,
                                      timeout=180)  # fmt: skip
                assert done.returncode == 0, (step, done.stdout, done.stderr)
                continue
            result = runner.invoke(main, args, input=f"{PASSWORD}\n{PASSWORD}\n")
            assert result.exit_code == 0, (step, result.output)
        # the tour's last step: trace the message by the id the example printed
        assert message_id is not None
        shown = runner.invoke(main, ["messages", "show", message_id, "--json"])
        assert shown.exit_code == 0, shown.output
        assert "964111222333" in shown.output
    finally:
        if server is not None:
            server.stop()
