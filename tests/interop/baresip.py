# baresip 1.0 (Debian package) as a real app of the test suite: headless, driven on stdin.
"""A baresip process with its own config folder (``baresip -f DIR``): one account that
registers to the gateway through an outbound proxy, the ``menu`` and ``contact`` modules for
commands (``/message`` sends to the current contact), its SIP trace (``-s``) on stdout so
that each request's final answer is an event to wait for. Received MESSAGEs are printed by
``menu`` as ``sip:FROM: "TEXT"``. No audio device is opened (``ausine``/``aubridge``).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.interop.cliapp import Console

BARESIP = "/usr/bin/baresip"
MODULES = "/usr/lib/baresip/modules"
_RECEIVED = re.compile(r'^(sip:\S+): "(.*)"$')


class Baresip:
    """One baresip user agent registered as ``user`` (messages go to ``peer``)."""

    def __init__(
        self,
        folder: Path,
        *,
        registrar: tuple[str, int],
        domain: str,
        user: str,
        password: str,
        peer: str,
        transport: str = "udp",
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        host, port = registrar
        (folder / "config").write_text(
            "\n".join(
                [
                    "poll_method epoll",
                    "sip_listen 127.0.0.1:0",
                    f"sip_trans_def {transport}",
                    f"module_path {MODULES}",
                    "module stdio.so",  # commands on stdin (it says it has no terminal: fine)
                    "module g711.so",
                    "module ausine.so",
                    "module aubridge.so",
                    "module_app account.so",
                    "module_app contact.so",
                    "module_app menu.so",
                    "audio_player aubridge,nil",
                    "audio_source ausine,440",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        # outbound: every request goes to the gateway (the domain need not resolve)
        (folder / "accounts").write_text(
            f"<sip:{user}@{domain};transport={transport}>;auth_pass={password};"
            f'outbound="sip:{host}:{port};transport={transport}";regint=600\n',
            encoding="utf-8",
        )
        (folder / "contacts").write_text(f'"peer" <{peer}>\n', encoding="utf-8")
        self.user = user
        self.register_error: str | None = None
        self._received_from = 0
        self.console = Console(
            [BARESIP, "-s", "-f", str(folder)], cwd=folder, env={"HOME": str(folder)}
        )

    def wait_registered(self, timeout: float = 15.0) -> int:
        """The final status of its REGISTER as baresip reports it; 0 when baresip gave up
        on its own (the reason is then in ``register_error``)."""
        match = self.console.wait_for(
            rf"^{self.user}@\S+: \{{\d+/\w+/v4\}} (\d{{3}}) |reg: \S+: Register: (.*)$", timeout
        )
        if match.group(1) is None:
            self.register_error = match.group(2)
            return 0
        return int(match.group(1))

    def send_message(self, text: str, timeout: float = 15.0) -> int:
        """``/message`` to the peer; the final answer to the MESSAGE (after its 407)."""
        mark = self.console.mark
        self.console.send(f"/message {text}")
        self.console.wait_for(r"^MESSAGE sip:", timeout, mark)
        # the trace shows each response's status line; 401/407 are answered by baresip
        match = self.console.wait_for(r"^SIP/2\.0 (?!40[17] )(\d{3}) ", timeout, mark)
        return int(match.group(1))

    def next_message(self, timeout: float = 15.0) -> tuple[str, str]:
        """The next MESSAGE received: (From URI, text)."""
        index, match = self.console.wait_line(_RECEIVED.pattern, timeout, self._received_from)
        self._received_from = index + 1
        return match.group(1), match.group(2)

    def close(self) -> int:
        """Quit (it unregisters)."""
        return self.console.close("/quit")

    def kill(self) -> None:
        self.console.kill()
