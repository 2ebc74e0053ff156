# Data at rest: the store, its side files and TLS keys are owner-only, or the node refuses to start.
from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import trustme
import yaml

MODE = 0o777


def config(folder: Path, **extra: object) -> Path:
    data = {
        "database": f"sqlite:///{folder / 'gateway.db'}",
        "secret_key_file": str(folder / "gateway.key"),
        "smpp": {"listen": [{"host": "127.0.0.1", "port": 0}]},
        "sip": {"listen": [{"transport": "udp", "host": "127.0.0.1", "port": 0}]},
        "management": {"host": "127.0.0.1", "port": 0},
        **extra,
    }
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def gatewayctl(path: Path, *args: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["gatewayctl", "--config", str(path), *args],
        capture_output=True, text=True, timeout=60, check=False, umask=umask,
    )  # fmt: skip


def refused_in_one_line(result: subprocess.CompletedProcess[str], *wanted: str) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for text in wanted:
        assert text in lines[0], lines[0]
    return lines[0]


def tls_files(folder: Path) -> tuple[str, str]:
    leaf = trustme.CA().issue_cert("127.0.0.1")
    cert, key = folder / "cert.pem", folder / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))  # 0644 under umask 022
    return str(cert), str(key)


def test_init_under_umask_022_makes_the_store_and_its_side_files_0600(tmp_path):
    path = config(tmp_path)
    assert gatewayctl(path, "init", umask=0o022).returncode == 0
    db = tmp_path / "gateway.db"
    assert db.stat().st_mode & MODE == 0o600
    assert (tmp_path / "gateway.key").stat().st_mode & MODE == 0o600
    # the side files a writer opens (WAL, shared memory) are owner-only too
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE probe (x)")
        conn.commit()
        for side in ("gateway.db-wal", "gateway.db-shm"):
            assert (tmp_path / side).stat().st_mode & MODE == 0o600, side
    finally:
        conn.close()
    # a provisioning command under umask 022 leaves them so
    assert gatewayctl(path, "customer", "add", "John Doe", umask=0o022).returncode == 0
    assert db.stat().st_mode & MODE == 0o600


def test_init_makes_an_existing_readable_store_owner_only(tmp_path):
    path = config(tmp_path)
    assert gatewayctl(path, "init").returncode == 0
    db = tmp_path / "gateway.db"
    db.chmod(0o644)
    again = gatewayctl(path, "init")
    assert again.returncode == 0, again.stderr
    assert f"{db} could be read by group or others: now owner-only (0600)" in again.stdout
    assert db.stat().st_mode & MODE == 0o600


def test_serve_and_check_config_refuse_a_store_others_can_read(tmp_path):
    path = config(tmp_path)
    assert gatewayctl(path, "init").returncode == 0
    db = tmp_path / "gateway.db"
    db.chmod(0o644)
    wanted = ("database", str(db), "mode 0644", f"chmod 600 {db}")
    refused_in_one_line(gatewayctl(path, "serve"), *wanted)
    refused_in_one_line(gatewayctl(path, "check-config"), *wanted)


def test_serve_and_check_config_refuse_tls_keys_others_can_read(tmp_path):
    cert, key = tls_files(tmp_path)
    smpp = config(
        tmp_path,
        smpp={"listen": [{"host": "127.0.0.1", "port": 0, "tls": {"cert": cert, "key": key}}]},
    )
    assert gatewayctl(smpp, "init").returncode == 0
    wanted = ("smpp.listen[0].tls.key", key, f"chmod 600 {key}")
    refused_in_one_line(gatewayctl(smpp, "serve"), *wanted)
    refused_in_one_line(gatewayctl(smpp, "check-config"), *wanted)
    sip = config(
        tmp_path,
        sip={"listen": [{"transport": "tls", "host": "127.0.0.1", "port": 0, "cert": cert,
                         "key": key}]},
    )  # fmt: skip
    wanted = ("sip.listen[0].key", key, f"chmod 600 {key}")
    refused_in_one_line(gatewayctl(sip, "serve"), *wanted)
    refused_in_one_line(gatewayctl(sip, "check-config"), *wanted)
    Path(key).chmod(0o600)
    assert gatewayctl(sip, "check-config").returncode == 0
