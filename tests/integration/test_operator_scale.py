"""The operator commands with many endpoints (almost all idle) and large delivery and attempt
tables: `endpoint list` pages by a cursor, `stats` shows only endpoints with something to show,
`dead-letters` does not count millions. What each costs is read from EXPLAIN ANALYZE of the
named query: an index probe per row shown, never a pass over a table, which stays true however
large the tables grow (a test building a million endpoints would be too slow for the suite;
docs/operating.md has the figures at that scale).

The large database is built once for the module with INSERT ... SELECT generate_series, with
triggers off (`session_replication_role = replica`): the rows are written consistently by hand,
and only what the operator queries read is there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from daemon.endpoints import COUNT_CAP
from daemon.replay import DeadLetterFilter, requeue_dead_letters
from tests.cli_support import Cli, assert_one_line_error, ok
from tests.integration.conftest import Harness
from tests.plan_support import (
    assert_no_full_scan,
    built_database,
    explain,
    rows_read,
    scans,
)

ENDPOINTS = 150_000  # ep_000001 ... ; every 50th disabled, every 50th (+2) deleted
MESSAGES = 60_000  # one delivery each, spread over 1,000 endpoints and ten days
BUSY = "ep_000000"  # the first id: more than COUNT_CAP waiting and dead-lettered
BUSY_EACH = COUNT_CAP + 1000
# The count cap the plan tests pass: far below what a selection holds, so that a plan reading
# the whole selection (not stopping at the cap) shows. (With a selection barely over the cap,
# reading all of it and sorting can be the cheaper plan, and is no more than that.)
PLAN_CAP = 1000

BUILD = [
    "SET session_replication_role = replica",
    f"""
    INSERT INTO webhookd.endpoints (id, tenant_id, url, secret, enabled, deleted_at)
    SELECT 'ep_' || lpad(g::text, 6, '0'), 't' || (g % 500), 'https://example.com/h/' || g,
           'whsec_x', g % 50 <> 7, CASE WHEN g % 50 = 9 THEN now() END
    FROM generate_series(0, {ENDPOINTS}) g
    """,
    f"""
    INSERT INTO webhookd.outbox (id, msg_id, endpoint_id, event_type, payload, created_at)
    SELECT g, 'm' || g, 'ep_' || lpad((1 + abs(hashtext(g::text)) % 1000 * 150)::text, 6, '0'), 'e',
           '{{}}'::jsonb, now() - g * interval '14 seconds'
    FROM generate_series(1, {MESSAGES}) g
    UNION ALL
    SELECT g, 'm' || g, '{BUSY}', 'e', '{{}}'::jsonb, now() - interval '1 day'
    FROM generate_series({MESSAGES} + 1, {MESSAGES} + 2 * {BUSY_EACH}) g
    """,
    f"""
    INSERT INTO webhookd.deliveries (id, message_id, endpoint_id, status, ordering_key,
                                     next_attempt_at, created_at, updated_at, attempts)
    SELECT o.id, o.id, o.endpoint_id,
           CASE WHEN o.id > {MESSAGES} THEN
                    CASE WHEN o.id % 2 = 0 THEN 'pending' ELSE 'failed' END
                WHEN o.id % 100 < 80 THEN 'delivered' WHEN o.id % 100 < 92 THEN 'failed'
                WHEN o.id % 100 < 97 THEN 'pending' WHEN o.id % 100 < 98 THEN 'delivering'
                ELSE 'held' END,
           CASE WHEN o.id % 100 >= 98 THEN 'k' END,
           o.created_at, o.created_at, o.created_at + interval '5 seconds', 1
    FROM webhookd.outbox o
    """,
    """
    INSERT INTO webhookd.attempts (delivery_id, attempt, started_at, duration_ms, status_code,
                                   instance)
    SELECT d.id, 1, d.created_at + interval '1 second', d.id % 300,
           CASE WHEN d.status = 'delivered' THEN 200 ELSE 500 END, 'x'
    FROM webhookd.deliveries d
    """,
    "SELECT setval('webhookd.outbox_id_seq', (SELECT max(id) FROM webhookd.outbox))",
    # as autovacuum keeps them (0001 tunes it to run early on these tables): the visibility
    # map lets the planner count on index-only scans
    "VACUUM ANALYZE webhookd.endpoints, webhookd.outbox, webhookd.deliveries, webhookd.attempts",
]


@pytest.fixture(scope="module")
def large_dsn(pg_server_dsn: str, template_db: str) -> Iterator[str]:
    """A migrated database with ENDPOINTS endpoints and MESSAGES deliveries and attempts, built
    once for the module (about 3 s) and only read by its tests."""
    with built_database(pg_server_dsn, template_db, "webhookd_scale", BUILD) as dsn:
        yield dsn


@pytest.fixture
async def large(large_dsn: str) -> Any:
    conn = await asyncpg.connect(large_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def large_cli(large_dsn: str, tmp_path: Path) -> Cli:
    return Cli(large_dsn, tmp_path)


# -- endpoint list ------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", [None, "t17"])
async def test_endpoint_list_page_costs_a_probe_per_endpoint_listed(
    large: asyncpg.Connection, tenant: str | None
) -> None:
    limit = 100
    page = {"tenant_id": tenant, "after_id": "ep_075000", "limit": limit}
    plan = await explain(large, "endpoint_list", **page, count_cap=COUNT_CAP)

    assert_no_full_scan(plan)
    assert plan["Actual Rows"] == limit + 1  # one more: there is a next page
    # The page is read from an index in id order, and each row looked up once.
    endpoint_reads = sum(rows_read(n) for n in scans(plan, "endpoints"))
    assert endpoint_reads == 2 * (limit + 1)
    # Waiting deliveries and dead letters: one probe per listed endpoint and kind, not a scan.
    probes = scans(plan, "deliveries")
    # Dead letters are counted from either index of them that leads with the endpoint (the
    # message log's, migrations/0022_message_log.sql, serves as well as the operator's).
    failed = {"deliveries_failed_idx", "deliveries_failed_log_idx"}
    kinds = {"failed" if n["Index Name"] in failed else n["Index Name"] for n in probes}
    assert kinds == {"deliveries_due_idx", "deliveries_held_idx", "failed"}
    for probe in probes:
        assert probe["Actual Loops"] == limit + 1
        assert "endpoint_id = " in probe["Index Cond"]


async def test_endpoint_list_counts_stop_at_the_cap(large: asyncpg.Connection) -> None:
    plan = await explain(
        large, "endpoint_list", tenant_id=None, after_id=None, limit=1, count_cap=PLAN_CAP
    )
    # BUSY holds far more than the cap of each: cap + 1 entries are read, not all (the other
    # endpoint on the page holds a few).
    for probe in scans(plan, "deliveries"):
        assert rows_read(probe) <= PLAN_CAP + 1 + 100


async def test_endpoint_list_shows_a_capped_count_as_at_least(large_cli: Cli) -> None:
    text, as_json = await asyncio.gather(
        large_cli("endpoint", "list", "--limit", "2"),
        large_cli("endpoint", "list", "--limit", "2", "--json"),
    )
    [header, busy, _other, next_page] = ok(text).out.splitlines()
    assert header.split()[:5] == ["ID", "TENANT", "STATE", "PENDING", "FAILED"]
    assert busy.split()[:5] == [BUSY, "t0", "enabled", f"{COUNT_CAP}+", f"{COUNT_CAP}+"]
    assert next_page == "next page: webhookd endpoint list --limit 2 --after ep_000001"
    page = ok(as_json).json()
    first = page["endpoints"][0]
    assert (first["pending"], first["failed"], first["capped"]) == (
        COUNT_CAP,
        COUNT_CAP,
        ["pending", "failed"],
    )
    assert "capped" not in page["endpoints"][1]
    assert page["next_after"] == "ep_000001"


async def test_endpoint_list_follows_the_cursor_through_every_page_once(
    cli: Cli, harness: Harness
) -> None:
    acme = [
        (await harness.endpoint(f"https://example.com/a{i}", tenant_id="acme"))[0] for i in range(5)
    ]
    other, _ = await harness.endpoint("https://example.com/other")
    gone, _ = await harness.endpoint("https://example.com/gone", tenant_id="acme")
    await harness.conn.execute(
        "UPDATE webhookd.endpoints SET deleted_at = now() WHERE id = $1", gone
    )
    # A delivery held behind its ordering key is waiting too.
    keyed = await harness.enqueue(endpoint_id=acme[0])
    await harness.enqueue(endpoint_id=acme[0])
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET status = 'held', ordering_key = 'k' WHERE message_id = $1",
        keyed,
    )

    seen: list[str] = []
    after: list[str] = []
    while True:
        listing = await cli(
            "endpoint", "list", "--tenant", "acme", "--limit", "2", "--json", *after
        )
        page = ok(listing).json()
        seen += [e["id"] for e in page["endpoints"]]
        if page["next_after"] is None:
            break
        assert len(page["endpoints"]) == 2
        after = ["--after", page["next_after"]]
    assert seen == sorted(acme)  # every live endpoint of the tenant, once, in id order

    everything, text, last, past_the_end, bad_limit = await asyncio.gather(
        cli("endpoint", "list", "--json"),
        cli("endpoint", "list", "--tenant", "acme", "--limit", "4"),
        cli("endpoint", "list", "--after", sorted([*acme, other])[-2]),
        cli("endpoint", "list", "--after", "zzz"),
        cli("endpoint", "list", "--limit", "0"),
    )
    listed = ok(everything).json()
    assert [e["id"] for e in listed["endpoints"]] == sorted([*acme, other])
    assert listed["next_after"] is None
    assert {e["id"]: e["pending"] for e in listed["endpoints"]}[acme[0]] == 2
    lines = ok(text).out.splitlines()
    assert len(lines) == 1 + 4 + 1
    next_page = f"webhookd endpoint list --tenant acme --limit 4 --after {sorted(acme)[3]}"
    assert lines[-1] == f"next page: {next_page}"
    assert "next page" not in ok(last).out and len(last.out.splitlines()) == 2
    assert ok(past_the_end).out.strip() == "no more endpoints"
    assert_one_line_error(bad_limit, 2, "--limit")


# -- dead-letters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "window", [{}, {"endpoint_id": BUSY}, {"since_days": 8, "until_days": 2}], ids=str
)
async def test_dead_letters_page_and_total_read_at_most_the_cap(
    large: asyncpg.Connection, window: dict[str, Any]
) -> None:
    now = await large.fetchval("SELECT now()")
    days = {
        k: now - timedelta(days=window[f"{k}_days"])
        for k in ("since", "until")
        if f"{k}_days" in window
    }
    selection = {"endpoint_id": window.get("endpoint_id"), "since": None, "until": None} | days
    listed = await explain(large, "dead_letters_list", **selection, limit=50)
    counted = await explain(large, "dead_letters_count", **selection, count_cap=PLAN_CAP)

    for plan in (listed, counted):
        assert_no_full_scan(plan)
    [page] = [n for n in scans(listed, "deliveries") if n["Index Name"] != "deliveries_pkey"]
    [count] = scans(counted, "deliveries")
    index = "deliveries_failed_idx" if window.get("endpoint_id") else "deliveries_failed_at_idx"
    assert page["Index Name"] == count["Index Name"] == index
    assert listed["Actual Rows"] == rows_read(page) == 50
    assert rows_read(count) == PLAN_CAP + 1


async def test_dead_letters_says_when_there_are_more_than_it_counts(
    large: asyncpg.Connection, large_cli: Cli
) -> None:
    quiet = await large.fetchval(
        "SELECT endpoint_id FROM webhookd.deliveries WHERE status = 'failed' AND endpoint_id <> $1"
        " LIMIT 1",
        BUSY,
    )
    text, as_json, few = await asyncio.gather(
        large_cli("dead-letters", "--limit", "3"),
        large_cli("dead-letters", "--limit", "3", "--json"),
        large_cli("dead-letters", "--endpoint", quiet, "--limit", "1000", "--json"),
    )
    assert f"(3 of more than {COUNT_CAP} shown: not counted further" in ok(text).out
    listed = ok(as_json).json()
    assert (listed["total"], listed["total_capped"]) == (COUNT_CAP, True)
    assert len(listed["dead_letters"]) == 3
    exact = ok(few).json()
    assert exact["total"] == len(exact["dead_letters"]) > 0
    assert exact["total_capped"] is False


async def test_requeue_batches_go_on_where_the_last_ended(large: asyncpg.Connection) -> None:
    cursor = await large.fetchrow(
        "SELECT updated_at, id FROM webhookd.deliveries WHERE status = 'failed'"
        " ORDER BY updated_at, id OFFSET 5000 LIMIT 1"
    )
    assert cursor is not None
    selection = {"endpoint_id": None, "message_ids": None, "since": None, "until": None}
    tx = large.transaction()
    await tx.start()
    try:  # an UPDATE: rolled back, the database stays as the other tests expect it
        plan = await explain(
            large, "dead_letters_requeue", **selection, limit=1000,
            after_failed_at=cursor["updated_at"], after_id=cursor["id"],
        )  # fmt: skip
    finally:
        await tx.rollback()

    assert_no_full_scan(plan)
    walks = scans(plan, "deliveries")
    [walk] = [n for n in walks if n.get("Index Name") not in (None, "deliveries_pkey")]
    assert walk["Index Name"] == "deliveries_failed_at_idx"
    # the rows of this batch, and those of disabled or deleted endpoints among them: not the
    # 5,000 walked by the batches before
    assert 1000 <= rows_read(walk) < 1100


async def test_requeue_takes_every_dead_letter_once_across_batches(harness: Harness) -> None:
    a, _ = await harness.endpoint("https://example.com/a")
    b, _ = await harness.endpoint("https://example.com/b")
    await harness.enqueue_many(a, 1500)
    await harness.enqueue_many(b, 1200)
    # failed at 900 distinct times, so batches end inside a run of equal times
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET status = 'failed', attempts = 1,"
        " updated_at = now() - (id % 900) * interval '1 second'"
    )

    report = await requeue_dead_letters(harness.store, DeadLetterFilter())

    assert (report.requeued, report.stuck) == (2700, 0)
    statuses = await harness.conn.fetch(
        "SELECT status, count(*) AS n FROM webhookd.deliveries GROUP BY status"
    )
    assert [(r["status"], r["n"]) for r in statuses] == [("pending", 2700)]


# -- stats --------------------------------------------------------------------------------------


async def test_stats_reads_only_endpoints_with_something_to_show(
    large: asyncpg.Connection,
) -> None:
    plan = await explain(large, "operator_stats", window_s=3600.0, endpoint_id=None)
    active = await large.fetchval(
        "SELECT count(*) FROM (SELECT endpoint_id FROM webhookd.deliveries"
        " WHERE status IN ('pending', 'held', 'delivering')"
        " UNION SELECT d.endpoint_id FROM webhookd.attempts a"
        " JOIN webhookd.deliveries d ON d.id = a.delivery_id"
        " WHERE a.started_at >= now() - interval '1 hour'"
        " UNION SELECT endpoint_id FROM webhookd.deliveries"
        " WHERE status = 'failed' AND updated_at >= now() - interval '1 hour') x"
    )

    assert_no_full_scan(plan)
    assert 0 < plan["Actual Rows"] == active < ENDPOINTS / 100
    # Endpoints are looked up for the rows shown, never walked.
    assert sum(rows_read(n) for n in scans(plan, "endpoints")) == active
    # Open deliveries are found one endpoint at a time, then counted with index probes.
    for scan in scans(plan, "deliveries"):
        assert scan["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan")


async def test_stats_of_one_endpoint_probes_its_own_rows(large: asyncpg.Connection) -> None:
    plan = await explain(large, "operator_stats", window_s=3600.0, endpoint_id=BUSY)

    assert_no_full_scan(plan)
    assert plan["Actual Rows"] == 1
    assert sum(rows_read(n) for n in scans(plan, "endpoints")) == 1


async def test_stats_lists_only_endpoints_with_something_to_show(
    cli: Cli, harness: Harness
) -> None:
    idle, _ = await harness.endpoint("https://example.com/idle")
    waiting, _ = await harness.endpoint("https://example.com/waiting")
    first = await harness.enqueue(endpoint_id=waiting)
    await harness.enqueue(endpoint_id=waiting)
    # held behind its ordering key: waiting, but not due
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET status = 'held', ordering_key = 'k' WHERE message_id = $1",
        first,
    )

    everything, only_idle, unknown = await asyncio.gather(
        cli("stats", "--json"),
        cli("stats", "--endpoint", idle, "--json"),
        cli("stats", "--endpoint", "ep_nope"),
    )
    [shown] = ok(everything).json()["endpoints"]
    assert shown["endpoint"] == waiting
    assert (shown["backlog"], shown["due"], shown["in_flight"]) == (2, 1, 0)
    [asked] = ok(only_idle).json()["endpoints"]
    assert asked["endpoint"] == idle and asked["backlog"] == asked["attempts"] == 0
    assert_one_line_error(unknown, 3, "ep_nope")
