"""Rates (`100/min`) and the per-endpoint token bucket the scheduler consults.

Pure: the bucket reads time from an injected clock, so tests drive it with a fake one.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

_UNITS_S: Final = {
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
_UNIT_NAMES: Final = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "d"}
_RATE_RE: Final = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*/\s*([a-z]+)\s*", re.IGNORECASE)
# Refill is float arithmetic (0.1 * 10 may come out as 0.9999999999999999); a token this close to
# whole counts as whole, so callers never sleep for a nanosecond and try again.
_EPSILON_TOKENS: Final = 1e-9


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
        unit = _UNIT_NAMES.get(self.per_s)
        if unit is None:
            return f"{_number(self.per_second)}/s"
        return f"{_number(self.tokens)}/{unit}"


def parse_rate(text: str) -> Rate:
    """Parse `N/s` (`/sec`, `/second`), `N/min` (`/m`, `/minute`), `N/h` (`/hour`), `N/d`."""
    match = _RATE_RE.fullmatch(text)
    per_s = _UNITS_S.get(match.group(2).lower()) if match else None
    if match is None or per_s is None:
        raise ValueError(f"invalid rate {text!r} (use e.g. 10/s, 100/min, 1000/hour)")
    tokens = float(match.group(1))
    if not _positive(tokens):
        raise ValueError(f"invalid rate {text!r}: the count must be positive")
    return Rate(tokens=tokens, per_s=per_s)


def format_rate(rate_per_s: float) -> str:
    """Tokens per second as the shortest whole `N/s`, `N/min`, `N/h` or `N/d` (for display)."""
    for unit, period_s in (("s", 1), ("min", 60), ("h", 3600), ("d", 86400)):
        count = rate_per_s * period_s
        if count >= 1 and abs(count - round(count)) < 1e-9 * count:
            return f"{round(count)}/{unit}"
    return f"{format(decimal.Decimal(repr(rate_per_s)), 'f')}/s"  # never an exponent


def default_burst(rate_per_s: float) -> int:
    """One second's worth of tokens, at least one, so slow endpoints can still send."""
    return max(1, math.ceil(rate_per_s))


class TokenBucket:
    """Continuous-refill token bucket; starts full, so a fresh endpoint may send its burst.

    (Retry-After pauses are the scheduler's business: endpoints without a rate can be paused.)
    """

    __slots__ = ("_burst", "_clock", "_rate_per_s", "_tokens", "_updated_s")

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float]) -> None:
        _check_settings(rate_per_s, burst)
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated_s = clock()

    @property
    def rate_per_s(self) -> float:
        return self._rate_per_s

    @property
    def burst(self) -> int:
        return self._burst

    def try_take(self, n: int = 1) -> bool:
        """Take `n` tokens if they are there."""
        self._check_n(n)
        self._refill()
        if self._tokens + _EPSILON_TOKENS < n:
            return False
        self._tokens = max(0.0, self._tokens - n)
        return True

    def available(self) -> float:
        """Tokens in the bucket now."""
        self._refill()
        return self._tokens

    def wait_s(self, n: int = 1) -> float:
        """Seconds until `try_take(n)` can succeed; 0 when it can now."""
        self._check_n(n)
        self._refill()
        missing = n - self._tokens
        return missing / self._rate_per_s if missing > _EPSILON_TOKENS else 0.0

    def update(self, rate_per_s: float, burst: int) -> None:
        """Apply new settings (config reload) keeping the current level, clamped to `burst`."""
        _check_settings(rate_per_s, burst)
        self._refill()  # tokens earned so far accrue at the old rate
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._tokens = min(self._tokens, float(burst))

    def _refill(self) -> float:
        now_s = self._clock()
        elapsed_s = now_s - self._updated_s
        if elapsed_s > 0:  # a clock that steps back earns nothing rather than losing tokens
            self._tokens = min(float(self._burst), self._tokens + elapsed_s * self._rate_per_s)
            self._updated_s = now_s
        return now_s

    def _check_n(self, n: int) -> None:
        if not 1 <= n <= self._burst:
            raise ValueError(f"cannot take {n} tokens from a bucket of {self._burst}")


def _check_settings(rate_per_s: float, burst: int) -> None:
    if not _positive(rate_per_s):
        raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, got {burst}")


def _positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))
