"""Fixtures for pure-logic tests: a clock that moves only when told to, and no system config."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import config


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


@pytest.fixture
def no_system_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Keep a real /etc/webhookd/webhookd.toml on the test machine out of the tests."""
    absent = tmp_path / "etc" / "webhookd.toml"
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", absent)
    return absent
