# A console program driven over stdin/stdout in tests: its output lines, waited on as events.
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

MAX_LINES = 20_000  # output kept per program (a test's worth; older lines are dropped)


class Console:
    """A child process whose stdout+stderr is read line by line in a thread; tests wait for
    a line matching a pattern (never a sleep) and write commands to its stdin."""

    def __init__(
        self, argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None
    ) -> None:
        self.argv = list(argv)
        self.lines: list[str] = []
        self._dropped = 0  # lines dropped at MAX_LINES (indexes stay absolute)
        self._seen = threading.Condition()
        self.process = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\r\n"))
                if len(self.lines) > MAX_LINES:
                    del self.lines[0]
                    self._dropped += 1
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    @property
    def mark(self) -> int:
        """The index of the next line to come (wait from here for what a command causes)."""
        with self._seen:
            return self._dropped + len(self.lines)

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match[str]:
        """The first line from index ``start`` on matching ``pattern`` (searched); raises
        AssertionError with the output when none comes within ``timeout`` seconds or the
        program exits."""
        return self.wait_line(pattern, timeout, start)[1]

    def wait_line(self, pattern: str, timeout: float, start: int = 0) -> tuple[int, re.Match[str]]:
        """Like :meth:`wait_for`, with the index of the matching line."""
        regex = re.compile(pattern)
        found: list[tuple[int, re.Match[str]]] = []

        def ready() -> bool:
            first = max(0, start - self._dropped)
            for offset, line in enumerate(self.lines[first:]):
                match = regex.search(line)
                if match is not None:
                    found.append((self._dropped + first + offset, match))
                    return True
            return self.process.poll() is not None and not self._reader.is_alive()

        with self._seen:
            self._seen.wait_for(ready, timeout)
            if found:
                return found[0]
            tail = "\n".join(self.lines[-60:])
        raise AssertionError(
            f"{self.argv[0]}: no line matching {pattern!r} within {timeout}s:\n{tail}"
        )

    def send(self, command: str) -> None:
        """One command line on the program's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def close(self, quit_command: str | None = None, timeout: float = 5.0) -> int:
        """Ask the program to quit (``quit_command``), kill it if it does not in time."""
        if self.process.poll() is None and quit_command is not None:
            with contextlib.suppress(OSError, ValueError):
                self.send(quit_command)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
        self._reader.join(timeout)
        return self.process.returncode

    def kill(self) -> None:
        """Die at once, like a crash: nothing is unregistered."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(5)
        self._reader.join(5)

    @property
    def output(self) -> str:
        with self._seen:
            return "\n".join(self.lines)
