# Linphone (linphone-daemon of linphone-cli 5.1, Debian package) as a real app of the tests.
"""A ``linphone-daemon`` process with its own ``linphonerc`` and HOME in a folder: one proxy
account registering to the gateway (UDP or TCP, a random local port), commands on stdin
(``register-status``, ``message``), answers and events on stdout:
``Event-type: message-received`` (From, Content) and ``message-state-changed`` (the state of
a message sent: ``Delivered`` once the gateway answered 202). No audio device is opened.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.interop.cliapp import Console

DAEMON = "/usr/bin/linphone-daemon"


class Linphone:
    """One Linphone user agent registered as ``user``."""

    def __init__(
        self,
        folder: Path,
        *,
        registrar: tuple[str, int],
        domain: str,
        user: str,
        password: str,
        transport: str = "udp",
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        host, port = registrar
        ports = {"udp": "0", "tcp": "0"}
        ports[transport] = "-1"  # a random free port, on that transport only
        proxy = f"sip:{host}:{port};transport={transport}"
        rc = folder / "linphonerc"
        rc.write_text(
            "\n".join(
                [
                    "[sip]",
                    f"sip_port={ports['udp']}",
                    f"sip_tcp_port={ports['tcp']}",
                    "sip_tls_port=0",
                    "default_proxy=0",
                    "register_only_when_network_is_up=0",
                    "ipv6_enabled=0",
                    "[rtp]",
                    "audio_rtp_port=-1",
                    "video_rtp_port=-1",
                    "[sound]",
                    "playback_dev_id=",
                    "ringer_dev_id=",
                    "capture_dev_id=",
                    "[misc]",
                    "config-uri=",
                    "[proxy_0]",
                    f"reg_proxy=<{proxy}>",
                    f"reg_route=<{proxy};lr>",  # every request through the gateway
                    f"reg_identity=sip:{user}@{domain}",
                    "reg_expires=600",
                    "reg_sendregister=1",
                    "publish=0",
                    "[auth_info_0]",
                    f"username={user}",
                    f"passwd={password}",
                    f"realm={domain}",
                    f"domain={domain}",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        self._received_from = 0
        self.console = Console([DAEMON, "--config", str(rc)], cwd=folder, env={"HOME": str(folder)})

    def registration_state(self, timeout: float = 5.0) -> str:
        """``Ok``, ``Progress``, ``Failed``, ... as ``register-status`` answers."""
        mark = self.console.mark
        self.console.send("register-status ALL")
        match = self.console.wait_for(r"^State: LinphoneRegistration(\w+)", timeout, mark)
        return match.group(1)

    def wait_registered(self, timeout: float = 15.0) -> str:
        """Asks ``register-status`` (each answer an event) until the registration settled;
        its final state (``Ok`` or ``Failed``/``Cleared``)."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while True:
            state = self.registration_state()
            if state not in ("None", "Progress") or time.monotonic() > deadline:
                return state
            pause.wait(0.2)  # between two questions: the daemon has no registration event

    def send_message(self, uri: str, text: str, timeout: float = 15.0) -> str:
        """``message``; the final state of the message (``Delivered`` once the gateway
        answered 2xx, ``NotDelivered`` on a failure)."""
        mark = self.console.mark
        self.console.send(f"message {uri} {text}")
        index, found = self.console.wait_line(r"^Id: (\S+)", timeout, mark)
        match = self.console.wait_for(
            r"^State: LinphoneChatMessageState(Delivered|NotDelivered)$", timeout, index
        )
        assert found.group(1)
        return match.group(1)

    def next_message(self, timeout: float = 15.0) -> tuple[str, str]:
        """The next MESSAGE received: (From URI, text)."""
        start, _ = self.console.wait_line(
            r"^Event-type: message-received", timeout, self._received_from
        )
        sender = self.console.wait_for(r"^From: (\S+)", timeout, start).group(1)
        index, content = self.console.wait_line(r'^Content: "(.*)"$', timeout, start)
        self._received_from = index + 1
        return sender, content.group(1)

    def close(self) -> int:
        return self.console.close("quit")

    def kill(self) -> None:
        self.console.kill()
