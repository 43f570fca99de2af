"""Circuit breaker per endpoint: stop hammering an endpoint that keeps failing.

Closed: results go into a window of the last `window` attempts; when the window is full and
at least `failure_ratio` of it failed, the breaker opens. Open: no attempts for `cooldown_s`
(doubling, up to 16x, each time a probe fails). Half-open: exactly one probe attempt; success
closes the breaker, failure opens it again. While open, deliveries wait in PostgreSQL and
spend none of their retry schedule. Pure: the clock is injected.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

MAX_BACKOFF = 16


class State(enum.IntEnum):
    """Also the value of the per-endpoint metric."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


@dataclass(frozen=True)
class BreakerSettings:
    enabled: bool = True
    window: int = 20
    failure_ratio: float = 0.7
    cooldown_s: float = 30.0


class CircuitBreaker:
    """One endpoint's breaker."""

    def __init__(self, settings: BreakerSettings, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._clock = clock
        self._results: deque[bool] = deque(maxlen=settings.window)
        self._state = State.CLOSED
        self._open_until = 0.0
        self._backoff = 1
        self._probing = False

    def update(self, settings: BreakerSettings) -> None:
        """New settings (a configuration reload): the recent results and state are kept; a
        cool-down in progress ends when it was due to."""
        if settings.window != self._settings.window:
            self._results = deque(self._results, maxlen=settings.window)
        self._settings = settings

    @property
    def state(self) -> State:
        if self._state is State.OPEN and self._clock() >= self._open_until:
            self._state = State.HALF_OPEN
        return self._state

    def open_for_s(self) -> float:
        """Seconds of cool-down left (0 unless open)."""
        return max(0.0, self._open_until - self._clock()) if self.state is State.OPEN else 0.0

    def allows(self, in_flight: int) -> int:
        """How many attempts may be in flight now: unlimited (-1), none, or the one probe."""
        state = self.state
        if state is State.CLOSED:
            return -1
        if state is State.OPEN:
            return 0
        return 0 if self._probing or in_flight else 1

    def started(self) -> None:
        if self.state is State.HALF_OPEN:
            self._probing = True

    def abandon_probe(self) -> None:
        """The probe's attempt ended with a result that says nothing about the endpoint (a
        refused destination, a payload over the limit): the next attempt probes instead.
        Without this the breaker stayed half-open with a probe that never reports."""
        self._probing = False

    def record(self, ok: bool) -> State | None:
        """Count an attempt's result; returns the new state when it changed."""
        before = self.state
        if before is State.HALF_OPEN:
            self._probing = False
            return self._close() if ok else self._open(backoff=True)
        if before is State.OPEN:
            return None  # an attempt started before the breaker opened
        self._results.append(ok)
        window = self._settings.window
        failures = self._results.count(False)
        if len(self._results) == window and failures >= self._settings.failure_ratio * window:
            return self._open(backoff=False)
        return None

    def _open(self, *, backoff: bool) -> State:
        self._backoff = min(self._backoff * 2, MAX_BACKOFF) if backoff else 1
        self._open_until = self._clock() + self._settings.cooldown_s * self._backoff
        self._state = State.OPEN
        self._results.clear()
        return State.OPEN

    def _close(self) -> State:
        self._state = State.CLOSED
        self._backoff = 1
        self._results.clear()
        return State.CLOSED
