"""systemd's notify protocol (sd_notify): a datagram to $NOTIFY_SOCKET. A few lines, so written
here rather than pulled in: no socket, no message (not under systemd), never an error."""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, enabled: bool = True):
        path = os.environ.get("NOTIFY_SOCKET") if enabled else None
        if path and path.startswith("@"):
            path = "\0" + path[1:]  # abstract namespace
        self.path = path
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        ok = usec and usec.isdigit() and (not pid or pid == str(os.getpid()))
        # ping at a third of the interval: two late pings are still in time
        self.watchdog_every = int(usec) / 3e6 if ok else None
        self._last = 0.0

    def send(self, message: str) -> None:
        if not self.path:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)  # a reader that does not keep up must never stall the inspection loop
            try:
                sock.sendto(message.encode(), self.path)
            except OSError:
                pass  # systemd gone (shutdown) or its queue full: nothing to tell now

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def progress(self) -> None:
        """Called from the inference loop each time it goes round: the watchdog ping is proof of
        progress, so a hung loop stops the pings and systemd restarts the service."""
        if self.watchdog_every is None:
            return
        now = time.monotonic()
        if now - self._last >= self.watchdog_every:
            self._last = now
            self.send("WATCHDOG=1")
