# SIPp (Debian's sip-tester, 3.6.x) as a test peer: bounded runs, parsed statistics, a UAS.
"""Run the scenarios in ``tests/interop/sipp/`` and read back what happened.

* :func:`run_sipp` runs one sipp to completion (a UAC: REGISTERs, OPTIONS, MESSAGEs, a flood)
  and returns a :class:`SippResult`: exit code, successful/failed call counts from the
  statistics file, the error log, the screen, the ``<log>`` output.
* :func:`start_sipp` starts one in the background (typically a UAS: ``message_uas.xml``)
  and returns a :class:`SippProcess` once its socket is bound; ``stop()`` ends it and
  returns its :class:`SippResult`. :func:`start_registered_uas` is the gateway tests' usual
  peer: it registers users and then answers the MESSAGEs sent to them, in one process
  (see the comment at the top of ``register_then_receive.xml``).
* :func:`write_users_csv` writes the injection file the REGISTER scenarios read.

Every process is bounded: sipp's own ``-timeout`` (with ``-timeout_error``: exit code 255),
``-recv_timeout`` per expected message, and a Python-side deadline that kills it.

Readiness of a background sipp is checked, not slept for: ``/proc/<pid>/fd`` and
``/proc/net/{udp,tcp}`` tell when that very process has its UDP socket bound or its TCP
socket listening on the port. From then on nothing sent to it is lost (datagrams wait in the
socket buffer, connections in the listen backlog) even if sipp has not polled yet.

Exit codes (``sipp -h``): 0 all calls successful, 1 at least one failed, 97 exit on internal
command, 99 normal exit without calls processed, 255 fatal error (also ``-timeout_error``),
254 a socket could not be bound. A process stopped with SIGTERM still writes its statistics
and exits 0 whatever happened, so judge stopped processes by :attr:`SippResult.failed` and
the counts, not by the exit code.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SCENARIOS = Path(__file__).parent / "sipp"
LOCAL_IP = "127.0.0.1"
DEFAULT_RATE = 100
"""Calls per second when ``rate`` is None (sipp's own default, 10/s, makes 100 REGISTERs
take 10 s)."""
MAX_SOCKETS = 1000
"""``-max_socket``: sipp's default (50000) exceeds the usual open-file limit and it warns."""
BIND_ATTEMPTS = 3
"""Runs retried with fresh ports when sipp cannot bind (exit 254): the free-port probe and
sipp's bind are not atomic."""
_UDP_TRANSPORTS = ("u1", "un", "ui")
_counter = itertools.count(1)


class _BindFailed(AssertionError):
    """sipp exited 254: it could not bind its port."""


def sipp_binary() -> str:
    """Path of ``sipp``; scripts/test.sh installs it (Debian package sip-tester)."""
    path = shutil.which("sipp")
    if path is None:
        raise RuntimeError("sipp not found: install Debian's sip-tester (scripts/test.sh does it)")
    return path


def scenario_path(scenario: str | Path) -> Path:
    """A scenario name in tests/interop/sipp/ ("options.xml") or a path to one."""
    path = Path(scenario)
    if not path.is_absolute() and not path.exists():
        path = SCENARIOS / path
    if not path.is_file():
        raise FileNotFoundError(f"no sipp scenario {scenario!r} (looked in {SCENARIOS})")
    return path


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP at this moment (sipp -t t1 binds TCP,
    -t u1 UDP; a port free for both serves either)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOCAL_IP, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOCAL_IP, port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


# --- users -----------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[;\[\]\s]")


def write_users_csv(path: Path, users: Sequence[tuple[str, str, str]]) -> Path:
    """The ``-inf`` file of register_auth.xml / register_then_receive.xml.

    ``users`` are ``(user, password, domain)``; each line is
    ``user;password;domain;[authentication username=user password=password]`` (field3 is
    how sipp 3.6 takes per-user credentials: it cannot nest [field0] inside
    [authentication ...]). Hence no ``;``, ``[``, ``]`` or white space in any value.
    """
    lines = ["SEQUENTIAL"]
    for user, password, domain in users:
        for what, value in (("user", user), ("password", password), ("domain", domain)):
            if not value or _UNSAFE.search(value):
                raise ValueError(f"{what} {value!r} cannot go through a sipp injection file")
        lines.append(
            f"{user};{password};{domain};[authentication username={user} password={password}]"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMessage:
    """One MESSAGE answered by message_uas.xml (its ``<log>`` record)."""

    request_uri: str
    from_header: str
    call_id: str
    body: str
    """As received, with the UTF-8 decoded; sipp's own UAC ends bodies with CRLF."""


_RECORD_END = "|END-OF-MESSAGE\n"
_RECORD_START = "MESSAGE-RECEIVED "


def parse_received(log_text: str) -> list[ReceivedMessage]:
    """The MESSAGE records of a ``-trace_logs`` file (format in message_uas.xml)."""
    found = []
    for chunk in log_text.split(_RECORD_END)[:-1]:  # the tail has no complete record
        start = chunk.rfind(_RECORD_START)
        if start < 0:
            continue
        reqline, from_header, call_id, body = chunk[start + len(_RECORD_START) :].split("|", 3)
        found.append(
            ReceivedMessage(
                request_uri=reqline.removeprefix("MESSAGE ").strip(),
                from_header=from_header.strip(),
                call_id=call_id.strip(),
                body=body,
            )
        )
    return found


def parse_registered(log_text: str) -> list[str]:
    """Users whose REGISTER got its 200 in register_then_receive.xml ("REGISTERED <user>")."""
    return re.findall(r"^REGISTERED (\S+)$", log_text, re.MULTILINE)


def read_stats(path: Path) -> dict[str, str]:
    """The last complete row of a ``-trace_stat`` CSV (';'-separated, header first), by column
    name: "SuccessfulCall(C)", "FailedCall(C)", "TotalCallCreated", "CurrentCall", ...;
    empty if sipp has not written one yet."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return {}
    if not lines:
        return {}
    header = lines[0].rstrip(";").split(";")
    for line in reversed(lines[1:]):
        values = line.rstrip(";").split(";")
        if len(values) == len(header):  # a row sipp is still writing is skipped
            return dict(zip(header, values, strict=True))
    return {}


def _count(stats: dict[str, str], column: str) -> int:
    try:
        return int(stats.get(column, "0") or 0)
    except ValueError:
        return 0


def _read(path: Path, limit: int | None = None) -> str:
    try:
        # newline="": keep the CRLFs of logged SIP bodies as they were received
        with path.open(encoding="utf-8", errors="replace", newline="") as file:
            text = file.read()
    except FileNotFoundError:
        return ""
    if limit is not None and len(text) > limit:
        return text[:limit] + f"\n... ({len(text) - limit} more characters in {path})"
    return text


@dataclass
class SippResult:
    """What one sipp process did. Counts come from its last statistics row."""

    scenario: str
    command: list[str]
    returncode: int | None
    stats: dict[str, str]
    errors: str
    """The ``-trace_err`` log: unexpected messages, aborted calls, timeouts."""
    stderr: str
    screen: str
    """The final statistics screen (``-trace_screen``)."""
    logs: str
    """The ``-trace_logs`` output of ``<log>`` actions (message_uas.xml, registrations)."""
    timed_out: bool
    elapsed: float
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def successful(self) -> int:
        return _count(self.stats, "SuccessfulCall(C)")

    @property
    def failed(self) -> int:
        return _count(self.stats, "FailedCall(C)")

    @property
    def created(self) -> int:
        return _count(self.stats, "TotalCallCreated")

    @property
    def current(self) -> int:
        """Calls still open when the statistics were last written (e.g. a stopped hold)."""
        return _count(self.stats, "CurrentCall")

    @property
    def ok(self) -> bool:
        """Exit code 0, nothing failed, no timeout."""
        return self.returncode == 0 and self.failed == 0 and not self.timed_out

    def received(self) -> list[ReceivedMessage]:
        return parse_received(self.logs)

    def registered(self) -> list[str]:
        return parse_registered(self.logs)

    def report(self) -> str:
        """For assertion messages: the counts, the command, and the logs worth reading."""
        failures = {
            name: value
            for name, value in self.stats.items()
            if name.startswith("Failed") and name.endswith("(C)") and value not in ("", "0")
        }
        parts = [
            f"sipp {self.scenario}: exit {self.returncode}"
            + (" (timed out)" if self.timed_out else "")
            + f", {self.successful} successful, {self.failed} failed, {self.created} created,"
            f" {self.current} open, {self.elapsed:.1f} s",
            f"failure causes: {failures}" if failures else "",
            "command: " + " ".join(self.command),
            "stderr:\n" + self.stderr[-4000:] if self.stderr.strip() else "",
            "errors:\n" + self.errors[-6000:] if self.errors.strip() else "",
        ]
        return "\n".join(part for part in parts if part)

    __str__ = report


# --- processes -------------------------------------------------------------------------------


@dataclass
class _Files:
    stats: Path
    errors: Path
    screen: Path
    logs: Path
    stdout: Path
    stderr: Path

    @classmethod
    def make(cls, cwd: Path, scenario: Path) -> _Files:
        stem = f"{scenario.stem}_{os.getpid()}_{next(_counter)}"
        return cls(
            stats=cwd / f"{stem}_stats.csv",
            errors=cwd / f"{stem}_errors.log",
            screen=cwd / f"{stem}_screen.log",
            logs=cwd / f"{stem}_logs.log",
            stdout=cwd / f"{stem}_stdout.log",
            stderr=cwd / f"{stem}_stderr.log",
        )


def _command(
    scenario: Path,
    target: tuple[str, int] | None,
    *,
    transport: str,
    port: int,
    control_port: int,
    calls: int | None,
    rate: int | None,
    inf: Path | None,
    keys: dict[str, str] | None,
    timeout: float,
    recv_timeout: float | None,
    auth_uri: str | None,
    oocsf: str | Path | None,
    files: _Files,
    extra: Sequence[str],
) -> list[str]:
    cmd = [sipp_binary(), "-sf", str(scenario)]
    if target is not None:
        cmd.append(f"{target[0]}:{target[1]}")
    cmd += ["-t", transport, "-i", LOCAL_IP, "-p", str(port), "-bind_local"]
    # the UDP control socket (default 8888, +1.. when taken) would collide between runs
    cmd += ["-ci", LOCAL_IP, "-cp", str(control_port)]
    cmd += ["-nostdin", "-max_socket", str(MAX_SOCKETS)]
    cmd += ["-timeout", f"{max(1, round(timeout))}s", "-timeout_error"]
    if recv_timeout is not None:
        cmd += ["-recv_timeout", str(max(1, round(recv_timeout * 1000)))]
    if calls is not None:
        cmd += ["-m", str(calls)]
    cmd += ["-r", str(rate if rate is not None else DEFAULT_RATE)]
    if inf is not None:
        cmd += ["-inf", str(inf)]
    if auth_uri is not None:
        cmd += ["-auth_uri", auth_uri]
    if oocsf is not None:
        cmd += ["-oocsf", str(scenario_path(oocsf))]
    for key, value in (keys or {}).items():
        cmd += ["-key", key, str(value)]
    cmd += ["-trace_stat", "-stf", str(files.stats), "-fd", "1"]
    cmd += ["-trace_err", "-error_file", str(files.errors)]
    cmd += ["-trace_screen", "-screen_file", str(files.screen)]
    cmd += ["-trace_logs", "-log_file", str(files.logs)]
    cmd += list(extra)
    return cmd


def _result(
    scenario: Path,
    command: list[str],
    returncode: int | None,
    files: _Files,
    started: float,
    timed_out: bool = False,
) -> SippResult:
    stderr = _read(files.stderr, 20_000)
    return SippResult(
        scenario=scenario.name,
        command=command,
        returncode=returncode,
        stats=read_stats(files.stats),
        errors=_read(files.errors, 50_000),
        stderr=stderr,
        screen=_read(files.screen, 20_000),
        logs=_read(files.logs),
        timed_out=timed_out or (returncode == 255 and "timed out after" in stderr),
        elapsed=time.monotonic() - started,
        files={name: getattr(files, name) for name in files.__dataclass_fields__},
    )


def run_sipp(
    scenario: str | Path,
    target: tuple[str, int],
    *,
    transport: str = "u1",
    calls: int,
    rate: int | None = None,
    inf: Path | None = None,
    keys: dict[str, str] | None = None,
    timeout: float = 60,
    recv_timeout: float | None = 10,
    auth_uri: str | None = None,
    port: int | None = None,
    extra: Sequence[str] = (),
    cwd: Path,
) -> SippResult:
    """Run ``scenario`` as a client against ``target`` for ``calls`` calls; wait for it.

    ``transport``: sipp's -t (u1 UDP one socket, t1 TCP one connection, tn TCP one
    connection per call). ``rate``: calls per second (None: :data:`DEFAULT_RATE`).
    ``inf``: injection CSV (:func:`write_users_csv`). ``keys``: ``-key name value`` pairs,
    [name] in the scenario. ``auth_uri``: the digest uri host, e.g. the SIP domain (sipp
    prepends "sip:"); needed by register_auth.xml. ``timeout``: whole run, seconds (sipp's
    -timeout -timeout_error; the process is killed 15 s later if still there).
    ``recv_timeout``: seconds a call waits for each expected message before failing.
    ``port``: local port (default: a free one). Files go to ``cwd``.
    """
    path = scenario_path(scenario)
    for attempt in range(BIND_ATTEMPTS):
        files = _Files.make(cwd, path)
        command = _command(
            path,
            target,
            transport=transport,
            port=port if port is not None else free_port(),
            control_port=free_port(),
            calls=calls,
            rate=rate,
            inf=inf,
            keys=keys,
            timeout=timeout,
            recv_timeout=recv_timeout,
            auth_uri=auth_uri,
            oocsf=None,
            files=files,
            extra=extra,
        )
        started = time.monotonic()
        with files.stdout.open("wb") as out, files.stderr.open("wb") as err:
            process = subprocess.Popen(
                command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
            timed_out = False
            try:
                returncode = process.wait(timeout=timeout + 15)
            except subprocess.TimeoutExpired:
                timed_out = True
                process.kill()
                returncode = process.wait()
        if returncode == 254 and port is None and attempt + 1 < BIND_ATTEMPTS:
            continue  # the port was taken between the probe and sipp's bind
        return _result(path, command, returncode, files, started, timed_out)
    raise AssertionError("unreachable")


class SippProcess:
    """A sipp running in the background (from :func:`start_sipp`); use as a context manager
    or call :meth:`stop`, which returns the :class:`SippResult`."""

    def __init__(
        self,
        scenario: Path,
        command: list[str],
        process: subprocess.Popen,
        files: _Files,
        port: int,
        transport: str,
        timeout: float,
        hold: bool,
    ) -> None:
        self.scenario = scenario
        self.command = command
        self.process = process
        self.files = files
        self.port = port
        self.transport = transport
        self.hold = hold
        self.started = time.monotonic()
        self.deadline = self.started + timeout + 15
        self.result: SippResult | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (a target for run_sipp, a Contact host:port)."""
        return (LOCAL_IP, self.port)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    # readiness -------------------------------------------------------------------------------

    def _socket_inodes(self) -> set[str]:
        inodes = set()
        fd_dir = Path(f"/proc/{self.process.pid}/fd")
        try:
            entries = list(fd_dir.iterdir())
        except FileNotFoundError:
            return inodes
        for entry in entries:
            try:
                link = os.readlink(entry)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[len("socket:[") : -1])
        return inodes

    def bound(self) -> bool:
        """This very process has its UDP socket bound / TCP socket listening on the port."""
        udp = self.transport in _UDP_TRANSPORTS
        table = Path("/proc/net/udp" if udp else "/proc/net/tcp")
        inodes = self._socket_inodes()
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if int(local.rsplit(":", 1)[1], 16) != self.port or inode not in inodes:
                continue
            if udp or state == "0A":  # 0A: TCP_LISTEN
                return True
        return False

    def wait_ready(self, timeout: float = 10) -> None:
        self.wait_for(self.bound, timeout, f"sipp listening on {self.port}")

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``condition`` (10 ms steps) until true; fail early if sipp exits."""
        end = time.monotonic() + timeout
        while True:
            if condition():
                return
            if not self.running():
                raise AssertionError(f"sipp exited before {what}:\n{self.stop().report()}")
            if time.monotonic() > end:
                raise AssertionError(f"no {what} within {timeout} s:\n{self.snapshot().report()}")
            time.sleep(0.01)

    # what it saw so far ----------------------------------------------------------------------

    def log_text(self) -> str:
        return _read(self.files.logs)

    def received(self) -> list[ReceivedMessage]:
        """MESSAGEs answered so far (message_uas.xml, also as -oocsf)."""
        return parse_received(self.log_text())

    def registered(self) -> list[str]:
        """Users registered so far (register_then_receive.xml)."""
        return parse_registered(self.log_text())

    def stats(self) -> dict[str, str]:
        """The latest statistics row (rewritten every second: -fd 1)."""
        return read_stats(self.files.stats)

    def wait_received(self, count: int, timeout: float = 30) -> list[ReceivedMessage]:
        self.wait_for(lambda: len(self.received()) >= count, timeout, f"{count} MESSAGEs")
        return self.received()

    def wait_registered(self, count: int, timeout: float = 30) -> list[str]:
        """Until ``count`` users are registered; fails at once when a registration failed."""

        def done() -> bool:
            if _count(self.stats(), "FailedCall(C)"):
                raise AssertionError(f"a registration failed:\n{self.snapshot().report()}")
            return len(self.registered()) >= count

        self.wait_for(done, timeout, f"{count} registrations")
        return self.registered()

    def snapshot(self) -> SippResult:
        """A result for the process as it is now (still running: returncode None)."""
        return _result(self.scenario, self.command, self.process.poll(), self.files, self.started)

    # ending ----------------------------------------------------------------------------------

    def stop(self, grace: float = 5) -> SippResult:
        """End it and collect the result (idempotent).

        A plain UAS gets SIGUSR1 (sipp's soft quit: no new calls, open ones finish), then
        SIGTERM after ``grace`` seconds; a holding process (register_then_receive.xml, whose
        calls pause until the timeout) gets SIGTERM at once. SIGKILL is the last resort.
        """
        if self.result is not None:
            return self.result
        timed_out = False
        if self.running():
            steps = [signal.SIGTERM, signal.SIGKILL]
            if not self.hold:
                steps.insert(0, signal.SIGUSR1)
            for sig in steps:
                if sig is signal.SIGKILL:
                    timed_out = True
                self.process.send_signal(sig)
                try:
                    self.process.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                self.process.wait()
        self.result = _result(
            self.scenario, self.command, self.process.poll(), self.files, self.started, timed_out
        )
        return self.result

    def wait(self, timeout: float | None = None) -> SippResult:
        """Let it finish by itself (-m reached) and collect the result."""
        left = self.deadline - time.monotonic() if timeout is None else timeout
        try:
            self.process.wait(timeout=max(0.0, left))
        except subprocess.TimeoutExpired:
            return self.stop()
        return self.stop()

    def __enter__(self) -> SippProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_sipp(
    scenario: str | Path,
    target: tuple[str, int] | None = None,
    *,
    transport: str = "u1",
    calls: int | None = None,
    rate: int | None = None,
    port: int | None = None,
    inf: Path | None = None,
    keys: dict[str, str] | None = None,
    timeout: float = 120,
    recv_timeout: float | None = 10,
    auth_uri: str | None = None,
    oocsf: str | Path | None = None,
    hold: bool = False,
    wait_ready: bool = True,
    extra: Sequence[str] = (),
    cwd: Path,
) -> SippProcess:
    """Start sipp in the background and (``wait_ready``) return once its socket is bound.

    A server scenario (message_uas.xml) needs no ``target``; ``calls`` None means it answers
    until stopped. ``timeout`` bounds its whole life (sipp's -timeout, exit 255 if reached).
    ``hold``: its calls pause until stopped, so :meth:`SippProcess.stop` uses SIGTERM.
    Other arguments as :func:`run_sipp`. Always :meth:`~SippProcess.stop` it (or use
    ``with``).
    """
    path = scenario_path(scenario)
    for attempt in range(BIND_ATTEMPTS):
        files = _Files.make(cwd, path)
        local_port = port if port is not None else free_port()
        command = _command(
            path,
            target,
            transport=transport,
            port=local_port,
            control_port=free_port(),
            calls=calls,
            rate=rate,
            inf=inf,
            keys=keys,
            timeout=timeout,
            recv_timeout=recv_timeout,
            auth_uri=auth_uri,
            oocsf=oocsf,
            files=files,
            extra=extra,
        )
        with files.stdout.open("wb") as out, files.stderr.open("wb") as err:
            process = subprocess.Popen(
                command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        handle = SippProcess(path, command, process, files, local_port, transport, timeout, hold)
        if not wait_ready:
            return handle
        try:
            handle.wait_ready()
        except AssertionError as error:
            handle.stop()
            if process.poll() != 254:
                raise
            if port is None and attempt + 1 < BIND_ATTEMPTS:
                continue  # the port was taken between the probe and sipp's bind
            raise _BindFailed(str(error)) from error
        return handle
    raise AssertionError("unreachable")


def start_registered_uas(
    target: tuple[str, int],
    users_csv: Path,
    *,
    users: int,
    domain: str,
    transport: str = "u1",
    rate: int | None = None,
    timeout: float = 300,
    recv_timeout: float | None = 10,
    cwd: Path,
) -> SippProcess:
    """One sipp that registers ``users`` users from ``users_csv`` at ``target`` and then
    answers (200) every MESSAGE sent to them, until stopped (register_then_receive.xml with
    -oocsf message_uas.xml). Returns once its socket is bound; then call
    :meth:`~SippProcess.wait_registered` before making the gateway send, and
    :meth:`~SippProcess.wait_received` / :meth:`~SippProcess.received` to check delivery.
    ``domain`` is the SIP domain in the CSV (the digest uri).
    """
    for attempt in range(BIND_ATTEMPTS):
        port = free_port()  # also the Contact port: -key contact_port
        try:
            return start_sipp(
                "register_then_receive.xml",
                target,
                transport=transport,
                calls=users,
                rate=rate,
                port=port,
                inf=users_csv,
                keys={"contact_port": str(port)},
                timeout=timeout,
                recv_timeout=recv_timeout,
                auth_uri=domain,
                oocsf="message_uas.xml",
                hold=True,
                # each registration call pauses past the process's -timeout: only stop() ends
                extra=["-d", str(round((timeout + 60) * 1000))],
                cwd=cwd,
            )
        except _BindFailed:
            if attempt + 1 == BIND_ATTEMPTS:
                raise
    raise AssertionError("unreachable")
