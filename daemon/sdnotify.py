"""systemd's notify protocol, spoken directly: one datagram per message to $NOTIFY_SOCKET.

No C library is needed: READY=1 once the service can deliver, STATUS= lines with figures,
WATCHDOG=1 from the event loop at half of WATCHDOG_USEC (a wedged loop stops petting and
systemd restarts the unit), STOPPING=1 on shutdown. Without NOTIFY_SOCKET every call is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping


class Notifier:
    """Sends sd_notify messages; silent when not started by systemd with Type=notify."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval_s = int(usec) / 2e6 if usec.isdigit() and mine else None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *lines: str) -> bool:
        if self._address is None:
            return False
        data = "\n".join(lines).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto(data, self._address)
            except OSError:
                return False  # systemd went away; nothing to do about it here
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    async def watchdog(self, status: Callable[[], str] | None = None) -> None:
        """Pet the watchdog (and refresh STATUS) from the loop until cancelled."""
        interval = self.watchdog_interval_s or 5.0
        while True:
            lines = ["WATCHDOG=1"] if self.watchdog_interval_s else []
            if status is not None:
                lines.append(f"STATUS={status()}")
            if lines:
                self.send(*lines)
            await asyncio.sleep(interval)


def _socket_address(raw: str) -> str | bytes | None:
    if not raw:
        return None
    if raw.startswith("@"):  # abstract namespace
        return b"\0" + raw[1:].encode()
    return raw
