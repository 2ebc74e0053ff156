# A private PostgreSQL server for fault tests: its own data folder and port, stopped at will.
"""The shared server (127.0.0.1:5432) serves every other test, so the tests that take the
database away run their own: ``initdb`` into a temporary folder, ``pg_ctl start`` on a free
port (127.0.0.1 only, trust auth), ``stop`` with ``-m immediate`` (a crash) or ``fast``. The
server runs as the ``postgres`` system user when the tests run as root, as PostgreSQL refuses
to run as root."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    def __init__(self) -> None:
        # its own folder under /tmp: pytest's tmp_path is private to root, the server is not root
        self.folder = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        self.folder.chmod(0o755)
        self.data = self.folder / "pgdata"
        self.port = _free_port()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: object) -> None:
        command = [str(a) for a in args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder}"
        self._run(BIN / "pg_ctl", "-D", self.data, "-o", options, "-l", self.folder / "log",
                  "-w", "start")  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        self._run(BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
