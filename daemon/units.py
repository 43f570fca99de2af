"""Durations, sizes and rates: read from what operators write, printed back, and bounded.

One module, so that the config file, WEBHOOKD_* variables and CLI options read `30s`, `64KiB`
and `100/min` alike and refuse the same out-of-range values. Pure.

The bounds are far beyond what an operator needs, and keep every value inside what the
database (int4 columns, the timestamp range) and aiohttp accept: an unbounded value would be
accepted here and fail later, in every daemon, at the first claim.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

MINUTE_S: Final = 60.0
HOUR_S: Final = 3600.0
DAY_S: Final = 86400.0

MAX_RATE_PER_S: Final = 100_000.0
MIN_RATE_PER_S: Final = 1 / DAY_S  # 1/d
MAX_BURST: Final = 1_000_000
MAX_IN_FLIGHT: Final = 10_000
MAX_TIMEOUT_S: Final = HOUR_S  # an attempt, a connection, a drain
MAX_ENDPOINT_TIMEOUT_S: Final = 10 * MINUTE_S  # an endpoint's own attempt timeout
MAX_RETRY_DELAY_S: Final = 30 * DAY_S  # one entry of a retry schedule
MAX_SCHEDULE_ENTRIES: Final = 50
MAX_SIZE_BYTES: Final = 1024**3
# How far back a time window or a retention may reach (100 years): now minus it stays a valid
# timestamp for Python and PostgreSQL.
MAX_AGE_S: Final = 36500 * DAY_S
MAX_GRACE_S: Final = 365 * DAY_S  # a secret rotation's grace, the failing time before disable

# --- durations ---------------------------------------------------------------------------------

_DURATION_UNITS_S: Final = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_SCALES: Final = {"ms": (1, 1000), "s": (1, 1), "m": (60, 1), "h": (3600, 1), "d": (86400, 1)}
_DURATION_RE: Final = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*")


def parse_duration(text: str) -> float:
    """Seconds in `250ms`, `30s`, `1.5s`, `5m`, `2h`, `1d`, or a bare number of seconds."""
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r} (use e.g. 250ms, 30s, 5m, 2h)")
    number, unit = match.groups()
    multiplier, divisor = _SCALES[unit or "s"]
    # Dividing by 1000 rather than multiplying by 0.001 keeps `250ms` exactly 0.25.
    seconds = float(number) * multiplier / divisor
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {text!r} (too large)")
    return seconds


def format_duration(s: float) -> str:
    """The inverse of parse_duration: the largest unit that holds `s` as a whole number."""
    if not (math.isfinite(s) and s >= 0):
        raise ValueError(f"cannot format duration {s!r}")
    if s == 0:
        return "0s"
    for unit, unit_s in _DURATION_UNITS_S:
        if s % unit_s == 0:
            return f"{int(s // unit_s)}{unit}"
    ms = round(s * 1000)
    if ms / 1000 == s:
        return f"{ms}ms"
    return format(decimal.Decimal(repr(s)), "f") + "s"  # never "1e-07s": parse must read it


def check_duration(seconds: float, *, low: float = 0.0, high: float, above: bool = False) -> float:
    """`seconds` if inside [low, high] (or (low, high] with `above`), else ValueError(why)."""
    if above and seconds <= low:
        raise ValueError(f"must be longer than {format_duration(low)}")
    if seconds < low:
        raise ValueError(f"must be at least {format_duration(low)}")
    if seconds > high:
        raise ValueError(f"must be at most {format_duration(high)}")
    return seconds


def bounded_duration(
    *, low: float = 0.0, high: float, above: bool = False
) -> Callable[[str], float]:
    """A parser for an option: a duration inside the bounds (see check_duration)."""

    def parse(text: str) -> float:
        return check_duration(parse_duration(text), low=low, high=high, above=above)

    return parse


def parse_schedule(text: str) -> tuple[float, ...]:
    """Delays in `4s,8s,10s`; an empty string means no retries."""
    if not text.strip():
        return ()
    return check_schedule([parse_duration(part) for part in text.split(",")])


def check_schedule(delays_s: Sequence[float]) -> tuple[float, ...]:
    """At most MAX_SCHEDULE_ENTRIES delays, each at most MAX_RETRY_DELAY_S."""
    if len(delays_s) > MAX_SCHEDULE_ENTRIES:
        raise ValueError(
            f"retry schedule has {len(delays_s)} entries (at most {MAX_SCHEDULE_ENTRIES})"
        )
    for position, delay_s in enumerate(delays_s, start=1):
        if delay_s > MAX_RETRY_DELAY_S:
            raise ValueError(
                f"item {position}: must be at most {format_duration(MAX_RETRY_DELAY_S)},"
                f" got {format_duration(delay_s)}"
            )
    return tuple(delays_s)


def format_schedule(schedule_s: Sequence[float]) -> str:
    """The inverse of parse_schedule, for config dumps and the CLI."""
    return ",".join(format_duration(delay_s) for delay_s in schedule_s)


# --- sizes -------------------------------------------------------------------------------------

_SIZE_RE: Final = re.compile(r"(\d+)\s*([kmg]i?b|b)?", re.IGNORECASE)
_SIZE_UNITS: Final = {
    "GiB": 1024**3,
    "MiB": 1024**2,
    "KiB": 1024,
    "GB": 1000**3,
    "MB": 1000**2,
    "KB": 1000,
}
_SIZE_UNIT_BYTES: Final = {unit.lower(): n for unit, n in _SIZE_UNITS.items()} | {"b": 1}


def parse_size(text: str) -> int:
    """Bytes in `512`, `64KiB`, `1MiB`, `1GiB` (powers of 1024) or `10MB` (powers of 1000)."""
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None or len(match[1]) > 30:  # 30 digits is far past any bound: no bignums
        raise ValueError(f"invalid size {text!r} (use e.g. 64KiB, 1MiB, 10MB or 512)")
    return int(match[1]) * _SIZE_UNIT_BYTES[(match[2] or "b").lower()]


def format_size(size: int) -> str:
    """The inverse of parse_size: the largest unit that holds `size` as a whole number."""
    unit = next((u for u, n in _SIZE_UNITS.items() if size and size % n == 0), None)
    return f"{size // _SIZE_UNITS[unit]}{unit}" if unit else str(size)


# --- rates -------------------------------------------------------------------------------------

_RATE_UNITS_S: Final = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hr": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE_UNIT_NAMES: Final = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "d"}
_RATE_RE: Final = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*/\s*([a-z]+)\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Rate:
    """`tokens` per `per_s` seconds, kept as written so `100/min` prints back as `100/min`."""

    tokens: float
    per_s: float

    def __post_init__(self) -> None:
        if not (_positive(self.tokens) and _positive(self.per_s)):
            raise ValueError(
                f"rate needs positive tokens and period, got {self.tokens}/{self.per_s}s"
            )

    @property
    def per_second(self) -> float:
        return self.tokens / self.per_s

    def __str__(self) -> str:
        unit = _RATE_UNIT_NAMES.get(self.per_s)
        if unit is None:
            return f"{_number(self.per_second)}/s"
        return f"{_number(self.tokens)}/{unit}"


def parse_rate(text: str) -> Rate:
    """Parse `N/s` (`/sec`, `/second`), `N/min` (`/m`, `/minute`), `N/h` (`/hour`), `N/d`,
    between 1/d and 100000/s."""
    match = _RATE_RE.fullmatch(text)
    per_s = _RATE_UNITS_S.get(match.group(2).lower()) if match else None
    if match is None or per_s is None:
        raise ValueError(f"invalid rate {text!r} (use e.g. 10/s, 100/min, 1000/hour)")
    tokens = float(match.group(1))
    if not _positive(tokens):
        raise ValueError(f"invalid rate {text!r}: the count must be positive")
    rate = Rate(tokens=tokens, per_s=per_s)
    check_rate(rate.per_second)
    return rate


def check_rate(rate_per_s: float) -> float:
    """A rate in tokens per second, between MIN_RATE_PER_S and MAX_RATE_PER_S."""
    if not MIN_RATE_PER_S * (1 - 1e-9) <= rate_per_s <= MAX_RATE_PER_S:
        raise ValueError(
            f"must be between 1/d and {format_rate(MAX_RATE_PER_S)}, got {_rate_shown(rate_per_s)}"
        )
    return rate_per_s


def format_rate(rate_per_s: float) -> str:
    """Tokens per second as the shortest whole `N/s`, `N/min`, `N/h` or `N/d` (for display)."""
    for unit, period_s in (("s", 1), ("min", 60), ("h", 3600), ("d", 86400)):
        count = rate_per_s * period_s
        if count >= 1 and abs(count - round(count)) < 1e-9 * count:
            return f"{round(count)}/{unit}"
    return f"{format(decimal.Decimal(repr(rate_per_s)), 'f')}/s"  # never an exponent


def _rate_shown(rate_per_s: float) -> str:
    if not math.isfinite(rate_per_s) or rate_per_s > 1e15:
        return f"{rate_per_s:g}/s"  # format_rate would print every digit
    return format_rate(rate_per_s)


# --- whole numbers -----------------------------------------------------------------------------


def check_int(value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ValueError(f"must be an integer between {low} and {high}, got {value}")
    return value


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """A parser for an option: a whole number between `low` and `high`."""

    def parse(text: str) -> int:
        stripped = text.strip()
        if not re.fullmatch(r"[+-]?\d{1,30}", stripped):
            raise ValueError(f"must be an integer between {low} and {high}, got {text[:40]!r}")
        return check_int(int(stripped), low, high)

    return parse


def _positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))
