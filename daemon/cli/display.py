"""What the operator commands share: --since/--until options, and cells for the text view.

Text from receivers (response bodies, errors) and from applications (payloads) is shown on one
line, cut short, with control characters escaped: a terminal never runs a receiver's escape
codes.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from daemon.cli.common import option
from daemon.errors import ConfigError
from daemon.messages import parse_when

_TEXT_CELL = 60


def add_window_options(
    parser: argparse.ArgumentParser, what: str, *, since_required: bool = False, **kwargs: Any
) -> None:
    """--since/--until: ISO 8601 or a duration back from now (`2h`)."""
    when = option(parse_when, "time")
    since_help = f"{what} at or after this time (ISO 8601, or 2h: two hours ago)"
    parser.add_argument("--since", type=when, required=since_required, help=since_help, **kwargs)
    parser.add_argument("--until", type=when, help=f"{what} before this time", **kwargs)


def check_window(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and until <= since:
        raise ConfigError("--until", "must be after --since")


def at(value: datetime | None) -> str:
    """A time for the text view, in UTC."""
    return "-" if value is None else f"{value.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def clean(text: str | None, limit: int = _TEXT_CELL) -> str:
    """Free text for a terminal: one line, control characters escaped, at most `limit` chars."""
    if not text:
        return "-"
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return line if len(line) <= limit else line[: limit - 1] + "…"
