"""`demo`: webhookd delivering, retrying and rate-limiting on this machine, watched live."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from typing import Any, TextIO

from daemon.cli.common import Parser, option, positive_int
from daemon.config import Config
from daemon.demo import DemoOptions, Snapshot, run_demo
from daemon.demo_view import Style, fit, frame, progress_line, summary
from daemon.logs import configure_logging
from daemon.retry import parse_duration

_LINE_EVERY_S = 1.0  # without a terminal: one progress line a second
_MAX_MESSAGES = 100_000


def register(sub: Any, common: Parser) -> None:
    demo = sub.add_parser(
        "demo",
        help="watch webhookd deliver, retry and rate-limit on this machine (~15 s)",
        description=(
            "Starts a throwaway PostgreSQL in a temporary directory, a local receiver with four"
            " endpoints (fast, slow, down for a moment, rate-limited) that checks every"
            " signature, and the daemon; enqueues a burst of messages and shows what happens."
            " Exit code 0 when every message was delivered."
        ),
        parents=[common],
    )
    demo.add_argument(
        "--messages",
        type=option(_message_count, "--messages"),
        default=200,
        help="messages to enqueue, spread over the endpoints (default 200)",
    )
    demo.add_argument(
        "--duration",
        type=option(parse_duration, "--duration"),
        default=30.0,
        help="give up waiting for deliveries after this long (default 30s)",
    )
    demo.set_defaults(handler=cmd_demo)


def _message_count(text: str) -> int:
    value = positive_int(text)
    if value > _MAX_MESSAGES:
        raise ValueError(f"at most {_MAX_MESSAGES}, got {value}")
    return value


async def cmd_demo(args: argparse.Namespace, _config: Config) -> int:
    # The view owns stdout; only errors are logged (to stderr), or they would tear the frame.
    configure_logging("error", "console", sys.stderr)
    out = sys.stdout
    screen: Screen | Lines = Screen(out) if out.isatty() else Lines(out)
    try:
        last = await run_demo(
            DemoOptions(messages=args.messages, duration_s=args.duration), screen.show, screen.stage
        )
    finally:
        screen.close()
    out.write("\n".join(summary(last)) + "\n")
    out.flush()
    return 0 if last.all_delivered else 1


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
