"""Delivering again: replaying a message, re-queueing dead letters, listing them.

Either way the delivery row starts a new attempt series: `attempts` keeps counting (the
attempts table stays a monotonic history) and `attempt_base` records where the series began,
so the retry schedule applies afresh (`Delivery.series_attempt`). Only finished deliveries
are touched: a pending one is already going to be attempted, and one being attempted belongs
to the daemon holding its lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from daemon.errors import NotFound, WebhookdError
from daemon.messages import EndpointUnavailable, live_endpoint, resolve_message

if TYPE_CHECKING:
    from daemon.store import Record, Store

REQUEUE_BATCH = 1000  # rows per statement: a large recovery never holds one long transaction


class NothingToReplay(WebhookdError):
    """Every delivery of the message is still pending or being attempted."""

    exit_code = 2


@dataclass(frozen=True)
class Replayed:
    """One delivery made due again; `next_attempt` is the number its next attempt gets."""

    delivery_id: int
    endpoint_id: str
    next_attempt: int


@dataclass(frozen=True)
class Skipped:
    """A delivery of the message that was left as it is, and why."""

    delivery_id: int
    endpoint_id: str
    reason: str


@dataclass
class ReplayReport:
    message_id: int
    msg_id: str
    replayed: list[Replayed] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


async def replay_message(store: Store, ref: str, endpoint_id: str | None = None) -> ReplayReport:
    """Deliver a message again (delivered ones too) to each of its endpoints, or to one."""
    message = await resolve_message(store, ref)
    if endpoint_id is not None:
        await live_endpoint(store, endpoint_id)
    deliveries = [
        d
        for d in await store.fetch("message_deliveries", message_id=message["id"])
        if endpoint_id is None or d["endpoint_id"] == endpoint_id
    ]
    if endpoint_id is not None and not deliveries:
        raise NotFound("delivery", f"message {message['id']} to {endpoint_id}")
    if not deliveries:
        raise NothingToReplay(f"nothing to replay: message {message['id']} matched no endpoint")
    rows = await store.fetch("message_replay", message_id=message["id"], endpoint_id=endpoint_id)
    report = ReplayReport(message["id"], message["msg_id"])
    report.replayed = [Replayed(r["id"], r["endpoint_id"], r["attempts"] + 1) for r in rows]
    done = {r.delivery_id for r in report.replayed}
    report.skipped = [
        Skipped(d["id"], d["endpoint_id"], _why_not(d)) for d in deliveries if d["id"] not in done
    ]
    if not report.replayed:
        raise _refusal(deliveries, report.skipped)
    await store.execute("outbox_wake")
    return report


def _why_not(d: Record) -> str:
    if d["endpoint_deleted"]:
        return "endpoint deleted"
    if not d["endpoint_enabled"]:
        return "endpoint disabled"
    if d["status"] == "pending":
        return f"still pending (next attempt at {d['next_attempt_at']:%Y-%m-%dT%H:%M:%SZ})"
    if d["status"] == "delivering":
        return f"being attempted now (by {d['locked_by']})"
    return f"{d['status']}, changed meanwhile"


def _refusal(deliveries: Sequence[Record], skipped: Sequence[Skipped]) -> WebhookdError:
    """The one error that says why nothing was replayed: the first unusable endpoint, else
    that every delivery is unfinished."""
    for d in deliveries:
        if d["endpoint_deleted"] or not d["endpoint_enabled"]:
            return EndpointUnavailable(
                d["endpoint_id"], d["endpoint_deleted"], d["endpoint_disabled_reason"]
            )
    s = skipped[0]
    return NothingToReplay(f"nothing to replay: delivery to {s.endpoint_id} is {s.reason}")


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters: of one endpoint, of some messages, failed in [since, until)."""

    endpoint_id: str | None = None
    message_ids: tuple[int, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def params(self) -> dict[str, object]:
        """The selection as parameters of `dead_letters_requeue` and `dead_letters_stuck`."""
        ids = None if self.message_ids is None else list(self.message_ids)
        return {
            "endpoint_id": self.endpoint_id,
            "message_ids": ids,
            "since": self.since,
            "until": self.until,
        }


@dataclass(frozen=True)
class RequeueReport:
    requeued: int
    stuck: int  # dead letters selected but left alone: their endpoint is disabled or deleted


async def message_ids(store: Store, refs: Sequence[str]) -> tuple[int, ...]:
    """Outbox ids of messages named by msg_id or id (each must name exactly one)."""
    return tuple(dict.fromkeys([(await resolve_message(store, ref))["id"] for ref in refs]))


async def requeue_dead_letters(store: Store, f: DeadLetterFilter) -> RequeueReport:
    """New attempt series for every selected dead letter, in batches; idempotent (requeued
    rows are pending). Naming a disabled or deleted endpoint is an error; otherwise dead
    letters of such endpoints are left alone and counted."""
    if f.endpoint_id is not None:
        await live_endpoint(store, f.endpoint_id)
    requeued = 0
    after: tuple[datetime | None, int | None] = (None, None)
    while True:
        rows = await store.fetch(
            "dead_letters_requeue",
            **f.params(),
            limit=REQUEUE_BATCH,
            after_failed_at=after[0],
            after_id=after[1],
        )
        requeued += len(rows)
        if rows:
            await store.execute("outbox_wake")
            after = max((r["failed_at"], r["id"]) for r in rows)
        if len(rows) < REQUEUE_BATCH:
            break
    stuck = (
        0 if f.endpoint_id is not None else await store.fetchval("dead_letters_stuck", **f.params())
    )
    return RequeueReport(requeued, int(stuck))


COUNT_CAP = 10_000  # dead letters counted for a listing's total: there may be millions


@dataclass(frozen=True)
class DeadLetterPage:
    """The latest dead letters of a selection, and how many it holds: exact up to COUNT_CAP
    (or the page size, when larger); `total_capped` says there are more than `total`."""

    rows: list[Record]
    total: int
    total_capped: bool


async def list_dead_letters(store: Store, f: DeadLetterFilter, limit: int) -> DeadLetterPage:
    """Dead letters, latest failure first, with their count (an index scan of at most `limit`
    rows and COUNT_CAP + 1 entries, however many there are)."""
    if (
        f.endpoint_id is not None
        and await store.fetchrow("operator_endpoint", endpoint_id=f.endpoint_id) is None
    ):
        raise NotFound("endpoint", f.endpoint_id)
    window = {"endpoint_id": f.endpoint_id, "since": f.since, "until": f.until}
    rows = await store.fetch("dead_letters_list", **window, limit=limit)
    if len(rows) < limit:  # all of them are here
        return DeadLetterPage(rows, len(rows), False)
    cap = max(COUNT_CAP, limit)  # a total is never less than what is shown
    total = int(await store.fetchval("dead_letters_count", **window, count_cap=cap))
    return DeadLetterPage(rows, min(total, cap), total > cap)
