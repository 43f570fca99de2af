"""Writes the daemon's state changes back to PostgreSQL; nothing is ever dropped.

Finished attempts are written in batches; the other changes the daemon makes (leases given
back, pauses shared with the other daemons, endpoints disabled after a 410) are `Write`s,
written in the order they were made, before the outcomes of the same round. Everything waits
in memory until a write succeeds: when the database is away the recorder backs off and keeps
it (the count is a metric). A batch PostgreSQL refuses is written one outcome at a time, and
an outcome refused on its own ends its delivery as a dead letter carrying the error, so no
delivery is attempted again in a loop. Stopping never interrupts a write: `stop()` lets the
current one finish and `drain()` writes the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from daemon.errors import DatabaseUnavailable
from daemon.loops import Backoff
from daemon.models import Delivery, Outcome, Status
from daemon.store import Record, Store, StoreError

log = structlog.get_logger("webhookd.recorder")


def outcome_status(outcome: Outcome) -> Status:
    if outcome.decision is None:
        return Status.DELIVERED
    return Status.PENDING if outcome.decision.retry else Status.FAILED


# The `record_outcomes` parameters with one element per outcome, in the order of the row
# `outcome_columns` builds.
_COLUMNS = (
    "delivery_ids",
    "lease_tokens",
    "attempts",
    "statuses",
    "next_in_s",
    "started_ago_s",
    "durations_ms",
    "status_codes",
    "error_classes",
    "last_errors",
    "response_bodies",
    "attempt_errors",
)


def started_ago_s(outcome: Outcome, now_mono: float, now_wall: float) -> float:
    """How long before now the attempt started: the database stores now() minus this, so
    every time it compares (health, prune, stats) is on its own clock."""
    r = outcome.result
    ago = now_mono - r.started_mono if r.started_mono is not None else now_wall - r.started_at_s
    return max(0.0, ago)


def outcome_columns(
    outcomes: Sequence[Outcome], now_mono: float = 0.0, now_wall: float = 0.0
) -> dict[str, list[Any]]:
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
            o.delivery.lease_token,
            o.delivery.attempt,
            status.value,
            d.delay_s if d is not None else 0.0,
            started_ago_s(o, now_mono, now_wall),
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


def finishes_its_key(outcome: Outcome, dead_letters_block: bool) -> bool:
    """Whether this outcome ends its ordered delivery's turn: delivered, or dead-lettered
    when dead letters do not block their key."""
    if outcome.delivery.ordering_key is None:
        return False
    status = outcome_status(outcome)
    return status is Status.DELIVERED or (status is Status.FAILED and not dead_letters_block)


@dataclass(frozen=True)
class Write:
    """A state change other than an outcome: one named query. `releases` are the leases it
    gives back (dropped from the daemon's leases once written); `on_done` gets its rows."""

    what: str  # for logs and webhookd_database_errors_total{operation}
    query: str
    params: Mapping[str, Any]
    releases: tuple[Delivery, ...] = ()
    on_done: Callable[[list[Record]], None] | None = field(default=None, compare=False)


def release_write(deliveries: Sequence[Delivery]) -> Write:
    """Give back leases of deliveries that were not attempted."""
    return Write(
        "release",
        "release",
        {
            "delivery_ids": [d.id for d in deliveries],
            "lease_tokens": [d.lease_token for d in deliveries],
        },
        releases=tuple(deliveries),
    )


def pause_write(endpoint_id: str, pause_s: float, waiting: Sequence[Delivery]) -> Write:
    """Pause an endpoint for every daemon and give back what waited for it, in one statement
    (a release committed first would let another daemon claim during the pause)."""
    return Write(
        "pause",
        "pause_and_release",
        {
            "endpoint_id": endpoint_id,
            "pause_s": pause_s,
            "delivery_ids": [d.id for d in waiting],
            "lease_tokens": [d.lease_token for d in waiting],
        },
        releases=tuple(waiting),
    )


class Recorder:
    """Buffers outcomes and writes, and flushes them every few milliseconds (tens while busy),
    or at once when many."""

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
        on_released: Callable[[Sequence[Delivery]], None] | None = None,
        on_db_error: Callable[[str], None] | None = None,
        dead_letters_block: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._instance = instance
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._busy_linger_s = busy_linger_s
        self._busy = busy
        self._buffer: list[Outcome] = []
        self._writes: deque[Write] = deque()
        self._ready = asyncio.Event()
        self._on_written = on_written
        self._on_released = on_released
        self._on_db_error = on_db_error
        self._dead_letters_block = dead_letters_block
        self._clock = clock
        self._wall_clock = wall_clock
        self.healthy = True
        self._stopping = False

    def put(self, outcome: Outcome) -> None:
        self._buffer.append(outcome)
        self._ready.set()

    def write(self, change: Write) -> None:
        """Queue a state change; written before the outcomes of the next flush, in order."""
        self._writes.append(change)
        self._ready.set()

    def release(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            self.write(release_write(deliveries))

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._writes)

    def stop(self) -> None:
        """Make `run` return after its current write (never cut a write in half)."""
        self._stopping = True
        self._ready.set()

    async def run(self) -> None:
        """Flush until `stop()`; then `drain()` writes what is left."""
        backoff = Backoff()
        while not self._stopping:
            await self._ready.wait()
            if self._stopping:
                return
            if len(self._buffer) < self._max_batch and not self._writes:
                # While attempts are running more outcomes are coming: wait longer, so one
                # statement writes tens of them (PostgreSQL's cost is mostly per statement).
                # Outcomes are off the attempt path; what waits for them (a retry's due time,
                # an ordering key's next delivery, a shared max in flight) moves by the linger.
                busy = self._busy()
                await asyncio.sleep(self._busy_linger_s if busy else self._linger_s)
            try:
                await self._flush_once()
                backoff.reset()
            except DatabaseUnavailable as exc:
                self._note_error(exc)
                await asyncio.sleep(backoff.failed())

    async def _flush_once(self) -> None:
        """Write what is queued now: the state changes in order, then the outcomes. Outcomes
        arriving during the write wait for the next round (and its linger): writing them at
        once, back to back, made batches of ~10."""
        while self._writes:
            await self._apply(self._writes[0])
            self._writes.popleft()
        left = len(self._buffer)
        while left > 0:
            batch = self._buffer[: min(self._max_batch, left)]
            left -= len(batch)
            try:
                await self._write(batch)
            except StoreError as exc:
                # A refused batch must not block the rest: write its outcomes one by one.
                if len(batch) == 1:
                    await self._write_unrecordable(batch[0], exc)
                else:
                    log.error("recorder.batch_refused", error=str(exc), size=len(batch))
                    await self._write_singly(batch)
            del self._buffer[: len(batch)]
            self.healthy = True
            if self._on_written is not None:
                self._on_written(batch)
        if not self._buffer and not self._writes:
            self._ready.clear()

    async def _apply(self, change: Write) -> None:
        """One state change. Refused (a bad value): logged and dropped, since retrying would
        be refused again; a release that is never written lets its lease expire instead."""
        try:
            rows = await self._store.fetch(change.query, **change.params)
        except StoreError as exc:
            log.error("recorder.write_refused", what=change.what, error=str(exc))
            if self._on_db_error is not None:
                self._on_db_error(change.what)
            return
        self.healthy = True
        if change.releases and self._on_released is not None:
            self._on_released(change.releases)
        if change.on_done is not None:
            change.on_done(rows)

    async def _write(self, batch: Sequence[Outcome]) -> None:
        params = {
            **outcome_columns(batch, self._clock(), self._wall_clock()),
            "instance": self._instance,
            "succeeded": health_column(batch),
        }
        block = self._dead_letters_block()
        finished = [o.delivery for o in batch if finishes_its_key(o, block)]
        if not finished:
            await self._store.fetchval("record_outcomes", **params)
            return
        # An ordered delivery finished: the next one of its key, held behind it, goes on. In
        # the same transaction, as a second statement that sees what claims held meanwhile
        # (migrations/0009_ordering_held.sql).
        async with self._store.transaction() as tx:
            await tx.fetchrow("record_outcomes", **params)
            await tx.fetch(
                "release_held",
                endpoint_ids=[d.endpoint_id for d in finished],
                ordering_keys=[d.ordering_key for d in finished],
                dead_letters_block=block,
            )

    async def _write_singly(self, batch: Sequence[Outcome]) -> None:
        for outcome in batch:
            try:
                await self._write([outcome])
            except StoreError as exc:
                await self._write_unrecordable(outcome, exc)

    async def _write_unrecordable(self, outcome: Outcome, refusal: StoreError) -> None:
        """An outcome refused on its own: dead-letter its delivery with the reason, so it is
        not attempted again every lease period, forever, with no attempt logged."""
        d = outcome.delivery
        error = f"outcome could not be recorded: {refusal}"[:500]
        log.error("recorder.outcome_refused", delivery_id=d.id, msg_id=d.msg_id, error=error)
        try:
            await self._store.execute(
                "record_unwritable",
                delivery_id=d.id,
                lease_token=d.lease_token,
                attempt=d.attempt,
                status_code=outcome.result.status_code,
                error=error,
                instance=self._instance,
            )
        except StoreError as exc:
            log.error("recorder.outcome_lost", delivery_id=d.id, error=str(exc))

    def _note_error(self, exc: Exception) -> None:
        self.healthy = False
        if self._on_db_error is not None:
            self._on_db_error("record")
        log.warning("recorder.database_unavailable", error=str(exc), buffered=self.pending)

    async def drain(self, timeout_s: float) -> bool:
        """Final flush on shutdown, retried until done or the deadline; True when empty."""
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            try:
                await self._flush_once()
            except DatabaseUnavailable as exc:
                self._note_error(exc)
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        if self.pending:
            log.error("recorder.unwritten_at_exit", count=self.pending)
        return not self.pending
