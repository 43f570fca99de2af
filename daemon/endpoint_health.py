"""Endpoint health: disable an endpoint that has been failing too long, or that said 410 Gone.

The recorder keeps each endpoint's failing streak in `endpoint_state` (`failing_since`,
`consecutive_failures`, written by `record_outcomes` only when they change). Here a periodic
check disables the endpoints whose streak began more than `health.disable_after` ago and is
at least `health.min_failures` long, and a 410 Gone disables its endpoint at once. Each is an
idempotent `UPDATE ... WHERE enabled`: with several daemons an endpoint is disabled, logged
and counted once, and the endpoints trigger's NOTIFY makes every daemon drop it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from daemon.config import HealthConfig
from daemon.errors import DatabaseUnavailable
from daemon.loops import every
from daemon.metrics import Metrics
from daemon.recorder import Write
from daemon.store import Store, StoreError

log = structlog.get_logger("webhookd.health")

GONE_REASON = "HTTP 410 Gone from receiver"
CHECK_EVERY_MAX_S = 60.0
CHECK_EVERY_MIN_S = 0.05


def check_interval_s(config: HealthConfig) -> float:
    """How often to look for endpoints failing too long: a quarter of the period, at most a
    minute, so an endpoint is disabled soon after its period ends."""
    return min(CHECK_EVERY_MAX_S, max(CHECK_EVERY_MIN_S, config.disable_after_s / 4))


class HealthMonitor:
    """The periodic check (a supervised side task) and the 410 Gone switch."""

    def __init__(self, store: Store, metrics: Metrics, config: Callable[[], HealthConfig]) -> None:
        self._store = store
        self._metrics = metrics
        self._config = config  # read on every round: a reload applies at once
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Check again now (the configuration was reloaded)."""
        self._wake.set()

    async def run(self) -> None:
        await every(
            lambda: check_interval_s(self._config()),
            self._round,
            wake=self._wake,
            survive=(DatabaseUnavailable, StoreError),
        )

    async def _round(self) -> None:
        config = self._config()
        if config.enabled:
            await self.check(config)

    async def check(self, config: HealthConfig) -> list[str]:
        """Disable every endpoint failing too long; returns the ids this call disabled."""
        try:
            # Select first: the UPDATE would fire the endpoints trigger (and make every daemon
            # reload its endpoints) on each check, even when it changes nothing.
            rows = await self._store.fetch(
                "endpoints_failing",
                disable_after_s=config.disable_after_s,
                min_failures=config.min_failures,
            )
            if not rows:
                return []
            disabled = await self._store.fetch(
                "endpoints_disable_failing",
                endpoint_ids=[r["endpoint_id"] for r in rows],
                disable_after_s=config.disable_after_s,
                min_failures=config.min_failures,
            )
        except (DatabaseUnavailable, StoreError) as exc:
            log.warning("health.check_failed", error=str(exc))
            raise
        for row in disabled:
            self._disabled(
                row["id"],
                "failing",
                row["disabled_reason"],
                failing_since=row["failing_since"].isoformat(),
                failures=row["consecutive_failures"],
            )
        return [row["id"] for row in disabled]

    def gone_write(self, endpoint_id: str) -> Write:
        """The write that disables an endpoint whose receiver answered 410 Gone, through the
        recorder (retried while the database is away). Logged and counted once: the UPDATE
        changes only an enabled endpoint, so another daemon or attempt that did it first
        makes this one a no-op."""

        def done(rows: list[Any]) -> None:
            if rows:
                self._disabled(endpoint_id, "gone", GONE_REASON)

        return Write(
            "disable",
            "endpoint_auto_disable",
            {"endpoint_id": endpoint_id, "reason": GONE_REASON},
            on_done=done,
        )

    def _disabled(self, endpoint_id: str, cause: str, reason: str, **details: Any) -> None:
        self._metrics.auto_disabled.labels(cause).inc()
        log.warning(
            "endpoint.auto_disabled", endpoint=endpoint_id, cause=cause, reason=reason, **details
        )
