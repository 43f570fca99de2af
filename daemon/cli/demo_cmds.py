"""`demo`: webhookd delivering, retrying and rate-limiting on this machine, watched live."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from daemon.cli.common import Parser, option, positive_int
from daemon.config import Config
from daemon.units import HOUR_S, bounded_duration

_MAX_MESSAGES = 100_000
_DURATION = bounded_duration(high=HOUR_S, above=True)


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
        type=option(_DURATION, "--duration"),
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
    # Here, not at the top: the demo pulls in aiohttp and the whole service.
    from daemon.cli.demo_screen import Lines, Screen
    from daemon.demo import DemoOptions, run_demo
    from daemon.demo_view import summary
    from daemon.logs import configure_logging

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
