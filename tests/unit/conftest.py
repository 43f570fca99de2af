"""Fixtures for pure-logic tests: a clock that moves only when told to."""

from __future__ import annotations

import pytest


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now_s: float = 1000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
