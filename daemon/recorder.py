"""Writes finished attempts back to PostgreSQL in batches; nothing is ever dropped.

Outcomes wait in memory until a write succeeds. When the database is away the recorder
backs off and keeps them (the count is a metric). Stopping never interrupts a write: `stop()`
lets the current one finish and `drain()` writes the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from daemon.errors import DatabaseUnavailable
from daemon.models import Outcome, Status
from daemon.store import Store, StoreError

log = structlog.get_logger("webhookd.recorder")


def outcome_status(outcome: Outcome) -> Status:
    if outcome.decision is None:
        return Status.DELIVERED
    return Status.PENDING if outcome.decision.retry else Status.FAILED


# The `record_outcomes` parameters with one element per outcome, in the order of the row
# `outcome_columns` builds.
_COLUMNS = (
    "delivery_ids",
    "attempts",
    "statuses",
    "next_in_s",
    "started_at_s",
    "durations_ms",
    "status_codes",
    "error_classes",
    "last_errors",
    "response_bodies",
    "attempt_errors",
)


def outcome_columns(outcomes: Sequence[Outcome]) -> dict[str, list[Any]]:
    """Column arrays for the `record_outcomes` unnest, by parameter name. `last_errors` are
    the deliveries' (for a dead letter: why it was given up), `attempt_errors` the attempts'
    own."""
    cols: list[list[Any]] = [[] for _ in _COLUMNS]
    for o in outcomes:
        r, d = o.result, o.decision
        status = outcome_status(o)
        last_error = r.error if d is None or d.retry else d.reason
        row = (
            o.delivery.id,
            o.delivery.attempt,
            status.value,
            d.delay_s if d is not None else 0.0,
            r.started_at_s,
            r.duration_s * 1000.0,
            r.status_code,
            r.error_class,
            last_error,
            r.response_body,
            r.error,
        )
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return dict(zip(_COLUMNS, cols, strict=True))


def health_column(outcomes: Sequence[Outcome]) -> list[bool | None]:
    """Per outcome, success or failure for the endpoint's failing streak (`record_outcomes`
    `succeeded`); None for results that say nothing about the endpoint."""
    return [o.result.ok if o.result.about_endpoint else None for o in outcomes]


class Recorder:
    """Buffers outcomes and flushes them every few milliseconds (tens while busy), or at
    once when many."""

    def __init__(
        self,
        store: Store,
        instance: str,
        *,
        max_batch: int = 500,
        linger_s: float = 0.005,
        busy_linger_s: float = 0.025,
        busy: Callable[[], bool] = lambda: False,
        on_written: Callable[[Sequence[Outcome]], None] | None = None,
        on_db_error: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._instance = instance
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._busy_linger_s = busy_linger_s
        self._busy = busy
        self._buffer: list[Outcome] = []
        self._ready = asyncio.Event()
        self._on_written = on_written
        self._on_db_error = on_db_error
        self.healthy = True
        self._stopping = False

    def put(self, outcome: Outcome) -> None:
        self._buffer.append(outcome)
        self._ready.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def stop(self) -> None:
        """Make `run` return after its current write (never cut a write in half)."""
        self._stopping = True
        self._ready.set()

    async def run(self) -> None:
        """Flush until `stop()`; then `drain()` writes what is left."""
        backoff_s = 0.1
        while not self._stopping:
            await self._ready.wait()
            if self._stopping:
                return
            if len(self._buffer) < self._max_batch:
                # While attempts are running more outcomes are coming: wait longer, so one
                # statement writes tens of them (PostgreSQL's cost is mostly per statement).
                # Outcomes are off the attempt path; what waits for them (a retry's due time,
                # an ordering key's next delivery, a shared max in flight) moves by the linger.
                busy = self._busy()
                await asyncio.sleep(self._busy_linger_s if busy else self._linger_s)
            try:
                await self._flush_once()
                backoff_s = 0.1
            except DatabaseUnavailable as exc:
                self._note_error(exc)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)

    async def _flush_once(self) -> None:
        """Write what is buffered now. Outcomes arriving during the write wait for the next
        round (and its linger): writing them at once, back to back, made batches of ~10."""
        left = len(self._buffer)
        while left > 0:
            batch = self._buffer[: min(self._max_batch, left)]
            left -= len(batch)
            try:
                await self._write(batch)
            except StoreError as exc:
                # A refused batch must not block the rest: write its outcomes one by one.
                log.error("recorder.batch_refused", error=str(exc), size=len(batch))
                await self._write_singly(batch)
            del self._buffer[: len(batch)]
            self.healthy = True
            if self._on_written is not None:
                self._on_written(batch)
        if not self._buffer:
            self._ready.clear()

    async def _write(self, batch: Sequence[Outcome]) -> None:
        await self._store.fetchval(
            "record_outcomes",
            **outcome_columns(batch),
            instance=self._instance,
            succeeded=health_column(batch),
        )

    async def _write_singly(self, batch: Sequence[Outcome]) -> None:
        for outcome in batch:
            try:
                await self._write([outcome])
            except StoreError as exc:
                log.error(
                    "recorder.outcome_refused",
                    delivery_id=outcome.delivery.id,
                    msg_id=outcome.delivery.msg_id,
                    error=str(exc),
                )

    def _note_error(self, exc: Exception) -> None:
        self.healthy = False
        if self._on_db_error is not None:
            self._on_db_error()
        log.warning("recorder.database_unavailable", error=str(exc), buffered=len(self._buffer))

    async def drain(self, timeout_s: float) -> bool:
        """Final flush on shutdown, retried until done or the deadline; True when empty."""
        deadline = time.monotonic() + timeout_s
        while self._buffer and time.monotonic() < deadline:
            try:
                await self._flush_once()
            except DatabaseUnavailable as exc:
                self._note_error(exc)
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        if self._buffer:
            log.error("recorder.unwritten_at_exit", count=len(self._buffer))
        return not self._buffer
