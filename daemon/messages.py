"""Messages as operators see them: finding one by msg_id or outbox id, listing, the whole
story of one (deliveries and every attempt), test messages, and per-endpoint figures.

The CLI only parses and prints; what is looked up and checked lives here, with replays and
re-queues in `replay.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from daemon.errors import NotFound, WebhookdError
from daemon.units import MAX_AGE_S, format_duration, parse_duration

if TYPE_CHECKING:  # asyncpg is not needed to parse options (the CLI's --help)
    from daemon.store import Record, Store

# Relative times need a unit: a bare number could be an ISO 8601 basic date (20240501).
_RELATIVE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*")
_OUTBOX_ID = re.compile(r"[0-9]{1,18}")  # fits a bigint
STATUSES = ("pending", "delivering", "delivered", "failed")


class AmbiguousMessage(WebhookdError):
    """A msg_id used for several messages (once per tenant and endpoint is allowed)."""

    exit_code = 2

    def __init__(self, ref: str, ids: Sequence[int]) -> None:
        listed = ", ".join(map(str, ids))
        super().__init__(f"{ref} names {len(ids)} messages (outbox ids {listed}): give the id")
        self.ref = ref
        self.ids = tuple(ids)


class EndpointUnavailable(WebhookdError):
    """An endpoint named for a replay, re-queue or test message is disabled (exit 2) or
    deleted (exit 3): nothing would be delivered to it."""

    def __init__(self, endpoint_id: str, deleted: bool, reason: str | None = None) -> None:
        if deleted:
            why = "is deleted"
        else:
            why = (
                f"is disabled ({reason or 'no reason given'}); `webhookd endpoint enable` it first"
            )
        super().__init__(f"endpoint {endpoint_id} {why}")
        self.endpoint_id = endpoint_id
        self.deleted = deleted
        self.exit_code = 3 if deleted else 2


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """`--since`/`--until`: ISO 8601 (UTC when it has no offset), `now`, or a duration back
    from now (`30m`, `2h`, `1d`)."""
    now = datetime.now(UTC) if now is None else now
    stripped = text.strip()
    if stripped == "now":
        return now
    if _RELATIVE.fullmatch(stripped):
        back_s = parse_duration(stripped)
        if back_s > MAX_AGE_S:  # now minus it must stay a valid time
            limit = format_duration(MAX_AGE_S)
            raise ValueError(f"must be at most {limit} back from now, got {text[:40]!r}")
        return now - timedelta(seconds=back_s)
    try:
        when = datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(
            "expected an ISO 8601 time (2024-05-01T10:00:00Z) or a duration back from now"
            f" (30m, 2h, 1d), got {text[:40]!r}"
        ) from None
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    try:  # the database gets it in UTC: 0001-01-01T00:00+01:00 is before the year 1
        return when.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"must be between the years 1 and 9999 in UTC, got {text[:40]!r}"
        ) from None


def parse_payload(text: str) -> str:
    """`--data`: must be JSON; kept as written (PostgreSQL stores it as jsonb). The standard
    library parses it: unlike orjson it reads numbers of any size, as jsonb does."""
    try:
        json.loads(text, parse_constant=_not_json)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"not JSON: {exc}") from None
    return text


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def payload_value(text: str) -> orjson.Fragment:
    """A stored payload (jsonb as text) to embed as it is in JSON output: parsing it again
    would round numbers beyond 64 bits."""
    return orjson.Fragment(text)


async def resolve_message(store: Store, ref: str) -> Record:
    """The message an operator means: a numeric outbox id, else a msg_id used once."""
    number = int(ref) if _OUTBOX_ID.fullmatch(ref) else None
    rows = await store.fetch("message_find", outbox_id=number, msg_id=ref)
    by_id = [r for r in rows if r["id"] == number]
    if by_id:
        return by_id[0]
    if not rows:
        raise NotFound("message", ref)
    if len(rows) > 1:
        raise AmbiguousMessage(ref, [r["id"] for r in rows])
    return rows[0]


async def live_endpoint(store: Store, endpoint_id: str) -> Record:
    """An endpoint that deliveries may be made due for: it exists, is enabled, not deleted."""
    rec = await store.fetchrow("operator_endpoint", endpoint_id=endpoint_id)
    if rec is None:
        raise NotFound("endpoint", endpoint_id)
    if rec["deleted_at"] is not None or not rec["enabled"]:
        raise EndpointUnavailable(
            endpoint_id, rec["deleted_at"] is not None, rec["disabled_reason"]
        )
    return rec


@dataclass(frozen=True)
class MessageDetail:
    """A message, its deliveries and every attempt at them."""

    message: Record
    deliveries: list[Record]
    attempts: list[Record]


async def message_detail(store: Store, ref: str, *, body_bytes: int = 1024) -> MessageDetail:
    """Everything recorded about one message; response bodies cut to `body_bytes`."""
    found = await resolve_message(store, ref)
    message = await store.fetchrow("message_get", message_id=found["id"])
    if message is None:  # deleted between the two statements
        raise NotFound("message", ref)
    deliveries = await store.fetch("message_deliveries", message_id=found["id"])
    attempts = await store.fetch(
        "message_attempts", message_id=found["id"], max_body_bytes=body_bytes
    )
    return MessageDetail(message, deliveries, attempts)


@dataclass(frozen=True)
class MessageFilter:
    """What `message list` narrows to; None means any."""

    status: str | None = None
    endpoint_id: str | None = None
    event_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50


async def list_messages(store: Store, f: MessageFilter) -> list[Record]:
    if f.status is not None and f.status not in STATUSES:
        raise ValueError(f"unknown status {f.status!r}")
    return await store.fetch(
        "message_list",
        status=f.status,
        endpoint_id=f.endpoint_id,
        event_type=f.event_type,
        since=f.since,
        until=f.until,
        limit=f.limit,
    )


async def send_message(store: Store, endpoint_id: str, event_type: str, payload: str) -> Record:
    """Enqueue a message for one endpoint, as an application would; returns (id, msg_id)."""
    await live_endpoint(store, endpoint_id)
    row = await store.fetchrow(
        "message_send", endpoint_id=endpoint_id, event_type=event_type, payload=payload
    )
    assert row is not None  # INSERT ... RETURNING always returns the row
    return row


async def endpoint_stats(
    store: Store, window_s: float, endpoint_id: str | None = None
) -> list[dict[str, Any]]:
    """Per endpoint: backlog and in flight now, attempts, success and latency over the window."""
    rows = await store.fetch("operator_stats", window_s=window_s, endpoint_id=endpoint_id)
    if endpoint_id is not None and not rows:
        raise NotFound("endpoint", endpoint_id)
    return [_stats_view(r) for r in rows]


def _stats_view(rec: Record) -> dict[str, Any]:
    attempts, succeeded = rec["attempts"], rec["succeeded"]
    return {
        "endpoint": rec["endpoint_id"],
        "state": "deleted" if rec["deleted"] else "enabled" if rec["enabled"] else "disabled",
        "backlog": rec["backlog"],
        "due": rec["due"],
        "in_flight": rec["in_flight"],
        "attempts": attempts,
        "succeeded": succeeded,
        "success_pct": None if attempts == 0 else round(100.0 * succeeded / attempts, 1),
        "p50_ms": None if rec["p50_ms"] is None else round(rec["p50_ms"], 1),
        "p95_ms": None if rec["p95_ms"] is None else round(rec["p95_ms"], 1),
        "dead_letters": rec["dead_letters"],
    }
