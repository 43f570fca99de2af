"""Retention: `webhookd prune` and the daemon's periodic prune delete finished messages (with
their deliveries and attempts) and old attempts of kept deliveries, in small batches, and
nothing else."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from structlog.testing import capture_logs

from daemon.retention import PruneReport, prune
from daemon.store import Store
from tests.cli_support import Cli
from tests.integration.conftest import DaemonFactory, Harness, Receiver, wait_until

DAY_S = 86400.0
MONTH_S = 30 * DAY_S


@dataclass
class Made:
    message_id: int
    delivery_ids: list[int]


async def make_message(
    harness: Harness,
    endpoint_ids: list[str],
    statuses: list[str],
    *,
    age_days: float = 40,
    finished_days: float | None = None,
    attempt_days: tuple[float, ...] = (40, 39),
) -> Made:
    """A message created `age_days` ago with one delivery per endpoint in the given status,
    finished `finished_days` ago (default: as old as the message), each with one attempt
    started that many days ago per entry of `attempt_days`."""
    conn = harness.conn
    created = f"now() - make_interval(secs => {age_days * DAY_S})"
    if endpoint_ids:
        msg = await harness.enqueue(endpoint_id=endpoint_ids[0])
        for other in endpoint_ids[1:]:  # more deliveries of the same message, as a fan-out
            await conn.execute(
                "INSERT INTO webhookd.deliveries (message_id, endpoint_id) VALUES ($1, $2)",
                msg,
                other,
            )
    else:  # a message that matched no endpoint
        msg = await harness.enqueue(tenant_id="nobody")
    await conn.execute(f"UPDATE webhookd.outbox SET created_at = {created} WHERE id = $1", msg)
    done = finished_days if finished_days is not None else age_days
    ids = []
    for ep_id, status in zip(endpoint_ids, statuses, strict=True):
        finished = f"now() - make_interval(secs => {done * DAY_S})"
        did = await conn.fetchval(
            "UPDATE webhookd.deliveries SET status = $3, attempts = $4,"
            f" created_at = {created}, updated_at = {finished},"
            f" finished_at = CASE WHEN $3 IN ('delivered', 'failed') THEN {finished} END"
            " WHERE message_id = $1 AND endpoint_id = $2 RETURNING id",
            msg,
            ep_id,
            status,
            len(attempt_days),
        )
        for n, days in enumerate(attempt_days, start=1):
            await conn.execute(
                "INSERT INTO webhookd.attempts (delivery_id, attempt, started_at, duration_ms,"
                " status_code, instance)"
                " VALUES ($1, $2, now() - make_interval(secs => $3), 1.0, 200, 'test')",
                did,
                n,
                days * DAY_S,
            )
        ids.append(did)
    return Made(msg, ids)


async def counts(conn: asyncpg.Connection) -> tuple[int, int, int]:
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM webhookd.outbox) AS m,"
        " (SELECT count(*) FROM webhookd.deliveries) AS d,"
        " (SELECT count(*) FROM webhookd.attempts) AS a"
    )
    assert row is not None
    return row["m"], row["d"], row["a"]


async def exists(conn: asyncpg.Connection, table: str, row_id: int) -> bool:
    return bool(await conn.fetchval(f"SELECT count(*) FROM webhookd.{table} WHERE id = $1", row_id))


def totals(report: PruneReport) -> tuple[int, int, int]:
    return report.messages, report.deliveries, report.attempts


async def test_prune_deletes_only_old_finished_messages_and_old_attempts_of_kept_ones(
    harness: Harness,
) -> None:
    a, _ = await harness.endpoint("http://127.0.0.1:9/a")
    b, _ = await harness.endpoint("http://127.0.0.1:9/b")
    old = [await make_message(harness, [a], ["delivered"]) for _ in range(3)]
    fanned = await make_message(harness, [a, b], ["delivered", "delivered"])
    unmatched = await make_message(harness, [], [])
    recent = await make_message(harness, [a], ["delivered"], age_days=2, attempt_days=(2,))
    # Kept: still pending (an old attempt and a recent one), dead-lettered, one delivery of two
    # dead-lettered, delivered only recently (its message is old).
    pending = await make_message(harness, [a], ["pending"], attempt_days=(40, 0.1))
    dead = await make_message(harness, [a], ["failed"])
    half = await make_message(harness, [a, b], ["delivered", "failed"])
    late = await make_message(harness, [a], ["delivered"], finished_days=1, attempt_days=(35, 1))
    before = await counts(harness.conn)

    report = await prune(harness.store, MONTH_S, batch_size=100)

    # Pruned: 3 + 1 + 1 messages, 3 + 2 deliveries with 2 attempts each. Old attempts of kept
    # deliveries: pending 1, dead 2, half 2 + 2, late 1.
    assert totals(report) == (5, 5, 10 + 8)
    assert await counts(harness.conn) == (before[0] - 5, before[1] - 5, before[2] - 18)
    for made in [*old, fanned, unmatched]:
        assert not await exists(harness.conn, "outbox", made.message_id)
    for made in (recent, pending, dead, half, late):
        assert await exists(harness.conn, "outbox", made.message_id)
        for did in made.delivery_ids:
            assert await exists(harness.conn, "deliveries", did)
    left = await harness.conn.fetch(
        "SELECT delivery_id, started_at > now() - interval '30 days' AS young"
        " FROM webhookd.attempts ORDER BY id"
    )
    assert all(r["young"] for r in left)
    assert sorted(r["delivery_id"] for r in left) == sorted(
        [recent.delivery_ids[0], pending.delivery_ids[0], late.delivery_ids[0]]
    )
    # Nothing left to do: a second run deletes nothing.
    assert totals(await prune(harness.store, MONTH_S)) == (0, 0, 0)


async def test_include_failed_also_prunes_dead_letters(harness: Harness) -> None:
    a, _ = await harness.endpoint("http://127.0.0.1:9/a")
    b, _ = await harness.endpoint("http://127.0.0.1:9/b")
    dead = await make_message(harness, [a], ["failed"])
    half = await make_message(harness, [a, b], ["delivered", "failed"])
    pending = await make_message(harness, [a, b], ["failed", "pending"], attempt_days=(40,))
    report = await prune(harness.store, MONTH_S, include_failed=True)
    assert totals(report) == (2, 3, 6 + 2)
    assert not await exists(harness.conn, "outbox", dead.message_id)
    assert not await exists(harness.conn, "outbox", half.message_id)
    assert await exists(harness.conn, "outbox", pending.message_id)


async def test_dry_run_counts_what_a_run_deletes_and_deletes_nothing(harness: Harness) -> None:
    a, _ = await harness.endpoint("http://127.0.0.1:9/a")
    for _ in range(4):
        await make_message(harness, [a], ["delivered"])
    await make_message(harness, [a], ["pending"], attempt_days=(40, 38, 0.5))
    await make_message(harness, [a], ["failed"], attempt_days=(45,))
    before = await counts(harness.conn)
    dry = await prune(harness.store, MONTH_S, batch_size=3, dry_run=True)
    assert await counts(harness.conn) == before
    real = await prune(harness.store, MONTH_S, batch_size=3)
    assert totals(dry) == totals(real) == (4, 4, 8 + 2 + 1)
    assert await counts(harness.conn) == (before[0] - 4, before[1] - 4, before[2] - 11)


async def test_prune_works_in_batches_each_its_own_transaction(harness: Harness) -> None:
    a, _ = await harness.endpoint("http://127.0.0.1:9/a")
    for _ in range(7):
        await make_message(harness, [a], ["delivered"])
    for _ in range(5):
        await make_message(harness, [a], ["pending"], attempt_days=(40,))
    report = await prune(harness.store, MONTH_S, batch_size=3)
    # Messages: 12 scanned in 4 batches (3, 3, 3, 3 -> a 5th finds none); attempts: the 5
    # old ones of pending deliveries in 2 batches (3, 2).
    assert totals(report) == (7, 7, 14 + 5)
    assert report.batches == 5 + 2


async def test_a_second_prune_waits_for_the_first_or_stops(harness: Harness) -> None:
    a, _ = await harness.endpoint("http://127.0.0.1:9/a")
    await make_message(harness, [a], ["delivered"])
    holder = await asyncpg.connect(harness.dsn)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT pg_advisory_xact_lock(hashtext('webhookd.prune'))")
        skipped = await prune(harness.store, MONTH_S, wait_if_busy=False)
        assert skipped.busy and totals(skipped) == (0, 0, 0)
        waiting = asyncio.create_task(prune(harness.store, MONTH_S))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await tx.rollback()
        report = await asyncio.wait_for(waiting, 5)
    finally:
        await holder.close()
    assert totals(report) == (1, 1, 2) and not report.busy


async def test_prune_command_reports_counts_as_json_and_checks_its_options(
    harness: Harness, tmp_path: Path
) -> None:
    cli = Cli(harness.dsn, tmp_path)
    a, _ = await harness.endpoint("http://127.0.0.1:9/a")
    for _ in range(3):
        await make_message(harness, [a], ["delivered"])
    await make_message(harness, [a], ["failed"])
    dry = await cli("prune", "--older-than", "30d", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert {k: dry.json()[k] for k in ("messages", "deliveries", "attempts", "dry_run")} == {
        "messages": 3,
        "deliveries": 3,
        "attempts": 8,
        "dry_run": True,
    }
    real = await cli("prune", "--older-than", "30d", "--batch-size", "2", "--json")
    assert real.code == 0, real.err
    data = real.json()
    assert (data["messages"], data["deliveries"], data["attempts"]) == (3, 3, 8)
    assert (data["older_than"], data["include_failed"], data["dry_run"]) == ("30d", False, False)
    text = await cli("prune", "--older-than", "30d", "--include-failed")
    assert text.code == 0, text.err
    assert "deleted 1 messages, 1 deliveries and 0 attempts older than 30d" in text.out
    missing, zero, bad = await asyncio.gather(
        cli("prune"), cli("prune", "--older-than", "0s"), cli("prune", "--older-than", "soon")
    )
    for result in (missing, zero, bad):
        assert result.code == 2 and "--older-than" in result.err, result
        assert len(result.err_lines) == 1


async def test_running_daemon_prunes_periodically(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url("/ok"))
    with capture_logs() as logs:
        async with run_daemon(
            retention={"prune_after_s": 1.0, "prune_interval_s": 0.3, "batch_size": 2}
        ) as service:
            for _ in range(5):
                await harness.enqueue(endpoint_id=ep_id)
            await harness.wait_status("delivered", 5)

            def pruned(table: str) -> float | None:
                return service.metrics.registry.get_sample_value(
                    "webhookd_pruned_rows_total", {"table": table}
                )

            async def all_pruned() -> bool:  # runs counted once they end
                return pruned("outbox") == 5 and pruned("attempts") == 5

            await wait_until(all_pruned, 10, "delivered messages pruned by the daemon")
    assert await counts(harness.conn) == (0, 0, 0)
    events = [e for e in logs if e["event"] == "retention.pruned"]
    assert sum(e["messages"] for e in events) == 5
    assert sum(e["attempts"] for e in events) == 5
    assert not [e for e in logs if e["event"] == "retention.prune_failed"]


async def test_daemon_without_prune_after_never_deletes(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url("/ok"))
    async with run_daemon(retention={"prune_interval_s": 0.1}):
        await harness.enqueue(endpoint_id=ep_id)
        await harness.wait_status("delivered", 1)
        await asyncio.sleep(0.5)
    assert await counts(harness.conn) == (1, 1, 1)


async def test_prune_as_a_store_without_rows_to_prune(db_dsn: str) -> None:
    store = await Store.connect(db_dsn, max_size=1)
    try:
        report = await prune(store, 1.0)
    finally:
        await store.close()
    assert totals(report) == (0, 0, 0) and report.batches == 1
