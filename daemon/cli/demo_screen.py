"""Where `webhookd demo` draws: a terminal redrawn in place, or plain progress lines.

Kept apart from demo_cmds so that importing the CLI does not import the demo (aiohttp, the service).
"""

from __future__ import annotations

import os
import shutil
import time
from typing import TextIO

from daemon.demo import Snapshot
from daemon.demo_view import Style, fit, frame, progress_line

_LINE_EVERY_S = 1.0  # without a terminal: one progress line a second


class Screen:
    """A terminal: the frame is redrawn in place (cursor moved up, lines cleared)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        unicode = (out.encoding or "").lower().replace("-", "") == "utf8"
        self._style = Style(color="NO_COLOR" not in os.environ, unicode=unicode)
        self._drawn = 0

    def stage(self, text: str) -> None:
        self._out.write(f"webhookd demo: {text}...\n")
        self._out.flush()

    def show(self, snap: Snapshot) -> None:
        width = max(40, shutil.get_terminal_size().columns - 1)
        lines = frame(snap, self._style, width)
        parts = ["\x1b[?25l"]  # hide the cursor while drawing
        if self._drawn:
            parts.append(f"\x1b[{self._drawn}F")  # back to the frame's first line
        parts += [f"\x1b[2K{line}\n" for line in lines]
        parts += ["\x1b[2K\n"] * max(0, self._drawn - len(lines))
        self._out.write("".join(parts))
        self._out.flush()
        self._drawn = max(self._drawn, len(lines))

    def close(self) -> None:
        self._out.write("\x1b[0m\x1b[?25h")
        self._out.flush()


class Lines:
    """Not a terminal (a pipe, a log, CI): the endpoints once, then a progress line a second."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last = -_LINE_EVERY_S
        self._introduced = False

    def stage(self, text: str) -> None:
        self._write(f"webhookd demo: {text}...")

    def show(self, snap: Snapshot) -> None:
        if not self._introduced:
            self._introduced = True
            self._write(f"webhookd demo: {snap.messages} messages, metrics at {snap.metrics_url}")
            for e in snap.endpoints:
                self._write(fit(f"  {e.endpoint.name:<8} {e.endpoint.behaviour}", 100))
        now = time.monotonic()
        if now - self._last >= _LINE_EVERY_S or snap.finished or snap.timed_out:
            self._last = now
            self._write(progress_line(snap))

    def close(self) -> None:
        self._out.flush()

    def _write(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()
