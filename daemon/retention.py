"""Retention: delete finished messages and old attempts in small batches.

`webhookd prune --older-than 30d` and, when `retention.prune_after` is set, the daemon's
periodic prune run the same `prune()`. It deletes, older than the cutoff:

1. messages all of whose deliveries finished before the cutoff (delivered; with
   `include_failed` also dead-lettered), with their deliveries and attempts. A message that
   matched no endpoint counts as finished;
2. attempts of the deliveries that are kept (still pending, or dead letters kept).

Each batch is one short statement (at most `batch_size` messages or attempts, walked by id or
start time so no batch rescans what an earlier one left), so locks are few and brief. Batches
take a transaction-level advisory lock: two prunes (several daemons, or a daemon and the CLI)
never run a batch at the same time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from daemon.config import RetentionConfig
from daemon.errors import DatabaseUnavailable
from daemon.loops import every
from daemon.metrics import Metrics
from daemon.store import Store, StoreError

log = structlog.get_logger("webhookd.retention")

BUSY_RETRY_S = 0.2  # another prune holds the lock: look again this soon
DAEMON_PAUSE_S = 0.02  # between the daemon's batches, so deliveries keep the database first
_INSUFFICIENT_PRIVILEGE = "42501"


@dataclass
class PruneReport:
    """Rows deleted (or, in a dry run, that would be)."""

    messages: int = 0
    deliveries: int = 0
    attempts: int = 0
    batches: int = 0
    busy: bool = False  # stopped early: another prune was running (only without waiting)
    cutoff: datetime | None = None  # what was older than this was pruned


@dataclass(frozen=True)
class _Run:
    store: Store
    cutoff: datetime
    batch_size: int
    include_failed: bool
    dry_run: bool
    wait_if_busy: bool
    pause_s: float


async def prune(
    store: Store,
    older_than_s: float,
    *,
    batch_size: int = 500,
    include_failed: bool = False,
    dry_run: bool = False,
    wait_if_busy: bool = True,
    pause_s: float = 0.0,
) -> PruneReport:
    """Delete what is older than `older_than_s` (see the module docstring)."""
    bounds = await store.fetchrow("prune_bounds", older_than_s=older_than_s)
    assert bounds is not None
    run = _Run(store, bounds["cutoff"], batch_size, include_failed, dry_run, wait_if_busy, pause_s)
    report = PruneReport(cutoff=run.cutoff)
    counted = await _prune_messages(run, bounds["last_id"], report)
    if not report.busy:
        await _prune_attempts(run, report, counted)
    return report


async def _batch(run: _Run, report: PruneReport, query: str, /, **params: Any) -> Any:
    """One batch; None when another prune holds the lock and we do not wait for it."""
    while True:
        row = await run.store.fetchrow(query, **params)
        assert row is not None
        if row["ok"]:
            report.batches += 1
            return row
        if not run.wait_if_busy:
            report.busy = True
            return None
        await asyncio.sleep(BUSY_RETRY_S)


async def _prune_messages(run: _Run, last_id: int | None, report: PruneReport) -> int:
    """Finished messages up to `last_id`, in id order; returns how many of their attempts
    started before the cutoff (so a dry run does not count them twice)."""
    old_attempts = 0
    after = 0
    while last_id is not None:
        row = await _batch(
            run,
            report,
            "prune_messages",
            after_id=after,
            last_id=last_id,
            cutoff=run.cutoff,
            limit=run.batch_size,
            include_failed=run.include_failed,
            dry_run=run.dry_run,
        )
        if row is None:
            break
        report.messages += row["messages"]
        report.deliveries += row["deliveries"]
        report.attempts += row["attempts"]
        old_attempts += row["old_attempts"]
        if row["scanned"] < run.batch_size:
            break
        after = row["last_id"]
        await asyncio.sleep(run.pause_s)
    return old_attempts


async def _prune_attempts(run: _Run, report: PruneReport, counted: int) -> None:
    """Attempts started before the cutoff of the deliveries that are kept."""
    if run.dry_run:
        old = await run.store.fetchval("prune_attempts_count", cutoff=run.cutoff)
        report.attempts += int(old) - counted
        return
    since: datetime | None = None
    while True:
        row = await _batch(
            run, report, "prune_attempts", since=since, cutoff=run.cutoff, limit=run.batch_size
        )
        if row is None:
            return
        report.attempts += row["deleted"]
        if row["scanned"] < run.batch_size:
            return
        since = row["last_started_at"]
        await asyncio.sleep(run.pause_s)


class Pruner:
    """The daemon's periodic prune (a supervised side task); idle while prune_after is off."""

    def __init__(
        self, store: Store, metrics: Metrics, config: Callable[[], RetentionConfig]
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._config = config  # read on every round: a reload applies at once
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Run again now (the retention settings were reloaded)."""
        self._wake.set()

    async def run(self) -> None:
        await every(lambda: self._config().prune_interval_s, self._round, wake=self._wake)

    async def _round(self) -> None:
        config = self._config()
        if config.prune_after_s is not None:
            await self.prune_once(config)

    async def prune_once(self, config: RetentionConfig) -> PruneReport | None:
        """One periodic prune; failures are logged and the next round tries again."""
        assert config.prune_after_s is not None
        started = time.monotonic()
        try:
            report = await prune(
                self._store,
                config.prune_after_s,
                batch_size=config.batch_size,
                include_failed=config.include_failed,
                wait_if_busy=False,  # another daemon is pruning: it does the work
                pause_s=DAEMON_PAUSE_S,
            )
        except DatabaseUnavailable as exc:
            log.warning("retention.prune_failed", error=str(exc))
            return None
        except StoreError as exc:
            hint = (
                "the daemon role needs the optional prune grants of daemon/sql/roles.sql"
                if exc.sqlstate == _INSUFFICIENT_PRIVILEGE
                else None
            )
            log.error("retention.prune_failed", error=str(exc), hint=hint)
            return None
        for table, count in (
            ("outbox", report.messages),
            ("deliveries", report.deliveries),
            ("attempts", report.attempts),
        ):
            self._metrics.pruned.labels(table).inc(count)
        log.info(
            "retention.pruned",
            messages=report.messages,
            deliveries=report.deliveries,
            attempts=report.attempts,
            batches=report.batches,
            skipped_busy=report.busy,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        return report
