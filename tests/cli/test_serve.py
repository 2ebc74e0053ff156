# The README's first command works: init, then serve on the default config until a signal.
from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_first_command() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```sh\n\s*(.+?)\n\s*```", text)
    return commands[0].strip()


def test_readme_first_command_initialises_and_serves_until_sigterm(tmp_path: Path) -> None:
    command = readme_first_command()
    assert command == "python3 -m pip install -e . && gatewayctl init && gatewayctl serve"
    # The package is installed already; run the rest exactly, from a copy of the project's
    # default config, so the default paths (conf/gateway.yaml, gateway.db) are exercised.
    (tmp_path / "conf").mkdir()
    # the default config, with free ports instead of the well-known ones
    text = (ROOT / "conf" / "gateway.yaml").read_text(encoding="utf-8")
    text = re.sub(r"port: \d+", "port: 0", text)
    (tmp_path / "conf" / "gateway.yaml").write_text(text, encoding="utf-8")
    init = subprocess.run(
        ["gatewayctl", "init"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    assert "initialised at schema revision" in init.stdout
    assert (tmp_path / "gateway.db").is_file()
    assert (tmp_path / "gateway.key").stat().st_mode & 0o777 == 0o600

    server = subprocess.Popen(
        ["gatewayctl", "serve"], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        seen = []
        assert server.stderr is not None
        for line in server.stderr:  # blocks until the server writes; no sleeping
            seen.append(line)
            if "ready" in line:
                break
        log = "".join(seen)
        assert "ready" in log, log
        assert "env gateway, database sqlite:///gateway.db" in log
        assert re.search(r"smpp listening on 127.0.0.1:\d+", log)
        server.send_signal(signal.SIGTERM)
        rest = server.stderr.read()
        assert server.wait(timeout=30) == 0
        assert "SIGTERM received, shutting down" in rest and "stopped" in rest
    finally:
        if server.poll() is None:
            server.kill()


def test_serve_refuses_an_uninitialised_store(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    shutil.copy(ROOT / "conf" / "gateway.yaml", tmp_path / "conf" / "gateway.yaml")
    result = subprocess.run(
        ["gatewayctl", "serve"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "file gateway.db does not exist (a typo in the path?); run 'gatewayctl init'" in (
        result.stderr
    )
    assert not (tmp_path / "gateway.db").exists()  # only init creates the store


def test_check_config_reports_missing_tls_files_and_key(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(
        "database: sqlite:///" + str(tmp_path / "g.db") + "\n"
        "secret_key_file: " + str(tmp_path / "g.key") + "\n"
        "smpp: {listen: [{host: 127.0.0.1, port: 0, tls: {cert: nope.pem, key: nope.key}}]}\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        ["gatewayctl", "--config", str(config), "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "smpp.listen[0].tls.cert: file not found: nope.pem" in result.stderr
    assert "g.db does not exist (a typo in the path?); run 'gatewayctl init'" in result.stderr
    assert not (tmp_path / "g.db").exists()  # check-config creates no store
    assert "g.key" in result.stderr
    subprocess.run(
        ["gatewayctl", "--config", str(config), "init"], check=True, capture_output=True, timeout=60
    )
    result = subprocess.run(
        ["gatewayctl", "--config", str(config), "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.count("error:") == 1  # only the TLS files remain
