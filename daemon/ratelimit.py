"""The per-endpoint token bucket the scheduler consults (rates are read in daemon/units.py).

Pure: the bucket reads time from an injected clock, so tests drive it with a fake one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

# Refill is float arithmetic (0.1 * 10 may come out as 0.9999999999999999); a token this close to
# whole counts as whole, so callers never sleep for a nanosecond and try again.
_EPSILON_TOKENS: Final = 1e-9


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
