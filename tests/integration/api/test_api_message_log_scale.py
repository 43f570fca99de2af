"""What a page of the message log costs in a tenant of many messages, read from EXPLAIN ANALYZE
of its queries: filtering by status or endpoint reads at most pages.MAX_SCAN messages (each
one's deliveries by index), however few match and however many the tenant has; failed
messages are read from failed deliveries only, never another tenant's; nothing is a pass over
a table. docs/api.md ("Message log") quotes these figures.

The database is built once for the module with INSERT ... SELECT generate_series, triggers off
(`session_replication_role = replica`): rows written consistently by hand, as the fan-out
trigger would (a delivery's created_at is its message's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from daemon.api.pages import MAX_SCAN
from tests.plan_support import assert_no_full_scan, built_database, explain, rows_read, scans

MESSAGES = 40_000  # of tenant "big": two deliveries each, almost all delivered
NOISY = 20_000  # of tenant "noisy": every one failed, interleaved with big's
LIMIT = 50
BIG_ENDPOINTS = ["ep_big_a", "ep_big_b"]
BIG_TABLES = ("outbox", "deliveries")  # endpoints and applications are a few rows here

BUILD = [
    "SET session_replication_role = replica",
    """
    INSERT INTO webhookd.api_apps (id, uid, tenant_id, name)
    VALUES ('app_big', 'big', 'big', 'Big'), ('app_noisy', 'noisy', 'noisy', 'Noisy')
    """,
    """
    INSERT INTO webhookd.endpoints (id, tenant_id, url, secret)
    VALUES ('ep_big_a', 'big', 'https://big.example.com/a', 'whsec_x'),
           ('ep_big_b', 'big', 'https://big.example.com/b', 'whsec_x'),
           ('ep_noisy', 'noisy', 'https://noisy.example.com/', 'whsec_x')
    """,
    f"""
    INSERT INTO webhookd.outbox (id, msg_id, tenant_id, event_type, payload, created_at)
    SELECT g, 'm' || g, 'big', CASE WHEN g % 2 = 0 THEN 'even' ELSE 'odd' END, '{{}}'::jsonb,
           now() - ({MESSAGES} - g) * interval '10 seconds'
    FROM generate_series(1, {MESSAGES}) g
    UNION ALL
    SELECT {MESSAGES} + g, 'n' || g, 'noisy', 'odd', '{{}}'::jsonb,
           now() - ({NOISY} - g) * interval '20 seconds' - interval '5 seconds'
    FROM generate_series(1, {NOISY}) g
    """,
    # big: every 5,000th message failed to endpoint a; the 3 oldest still pending to b.
    """
    INSERT INTO webhookd.deliveries (message_id, endpoint_id, status, next_attempt_at,
                                     created_at, updated_at)
    SELECT o.id, e.id,
           CASE WHEN o.tenant_id = 'noisy' THEN 'failed'
                WHEN e.id = 'ep_big_a' AND o.id % 5000 = 0 THEN 'failed'
                WHEN e.id = 'ep_big_b' AND o.id <= 3 THEN 'pending'
                ELSE 'delivered' END,
           o.created_at, o.created_at, o.created_at
    FROM webhookd.outbox o
    JOIN webhookd.endpoints e ON e.tenant_id = o.tenant_id
    """,
    "SELECT setval('webhookd.outbox_id_seq', (SELECT max(id) FROM webhookd.outbox))",
    "VACUUM ANALYZE webhookd.endpoints, webhookd.outbox, webhookd.deliveries, webhookd.api_apps",
]


@pytest.fixture(scope="module")
def log_dsn(pg_server_dsn: str, template_db: str) -> Iterator[str]:
    with built_database(pg_server_dsn, template_db, "webhookd_log", BUILD) as dsn:
        yield dsn


@pytest_asyncio.fixture
async def log_db(log_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(log_dsn)
    try:
        yield conn
    finally:
        await conn.close()


def _log(tenant: str | None, **filters: Any) -> dict[str, Any]:
    """api_message_list's parameters for a first page (as message_log.log_page passes them)."""
    filtered = filters.get("status") is not None or filters.get("endpoint_id") is not None
    return {
        "tenant_id": tenant,
        "before_at": None,
        "before_id": None,
        "event_types": None,
        "after": None,
        "before": None,
        "endpoint_id": None,
        "status": None,
        "scan": MAX_SCAN if filtered else LIMIT + 1,
        "limit": LIMIT + 1,
    } | filters


def _matched(plan: dict[str, Any]) -> int:
    return int(plan["Actual Rows"])


@pytest.mark.parametrize("tenant", ["big", None])
@pytest.mark.parametrize("status", [0, 1, 3])
async def test_a_status_page_reads_at_most_the_scan_bound_of_messages(
    log_db: asyncpg.Connection, tenant: str | None, status: int
) -> None:
    plan = await explain(log_db, "api_message_list", **_log(tenant, status=status))
    assert_no_full_scan(plan, BIG_TABLES)
    outbox = sum(rows_read(n) for n in scans(plan, "outbox") if n["Actual Loops"] == 1)
    assert outbox <= MAX_SCAN * 2  # a walk per branch of the union, each bounded
    probes = scans(plan, "deliveries")
    assert {n["Index Name"] for n in probes} == {"deliveries_message_idx"}
    assert sum(n["Actual Loops"] for n in probes) <= MAX_SCAN  # one probe per message read
    assert sum(rows_read(n) for n in probes) <= 2 * MAX_SCAN  # of two deliveries each
    if status == 0:  # almost all succeeded: a full page, and the last message read
        assert _matched(plan) == LIMIT + 2


async def test_a_rare_status_is_a_short_page_not_a_pass_over_the_tenant(
    log_db: asyncpg.Connection,
) -> None:
    """Three pending messages, the oldest of 40,000: the first page finds none of them and
    says where the next goes on from (the one row not matched)."""
    plan = await explain(log_db, "api_message_list", **_log("big", status=1))
    assert _matched(plan) == 1  # the boundary only
    rows = await log_db.fetch(
        "SELECT matched FROM (" + _sql("api_message_list").rstrip().rstrip(";") + ") p",
        *_args("api_message_list", _log("big", status=1)),
    )
    assert [r["matched"] for r in rows] == [False]


async def test_an_unfiltered_page_reads_only_what_it_shows(log_db: asyncpg.Connection) -> None:
    plan = await explain(log_db, "api_message_list", **_log("big"))
    assert_no_full_scan(plan, BIG_TABLES)
    outbox = sum(rows_read(n) for n in scans(plan, "outbox") if n["Actual Loops"] == 1)
    assert outbox <= 2 * (LIMIT + 1)
    assert sum(n["Actual Loops"] for n in scans(plan, "deliveries")) <= LIMIT + 1


def _failed(tenant: str | None, endpoint_ids: list[str] | None) -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "endpoint_ids": endpoint_ids,
        "before_at": None,
        "before_id": None,
        "event_types": None,
        "after": None,
        "before": None,
        "scan": MAX_SCAN,
        "limit": LIMIT + 1,
    }


async def test_failed_messages_are_read_from_the_tenant_s_failed_deliveries_only(
    log_db: asyncpg.Connection,
) -> None:
    plan = await explain(log_db, "api_message_list_failed", **_failed("big", BIG_ENDPOINTS))
    assert_no_full_scan(plan, BIG_TABLES)
    assert _matched(plan) == MESSAGES // 5000  # all eight, among 20,000 failed of another
    walks = [n for n in scans(plan, "deliveries") if n["Actual Loops"] > 0]
    assert {n["Index Name"] for n in walks} == {"deliveries_failed_log_idx"}
    assert sum(rows_read(n) for n in walks) == MESSAGES // 5000  # not one of noisy's


async def test_every_application_s_failed_messages_are_a_bounded_walk(
    log_db: asyncpg.Connection,
) -> None:
    plan = await explain(log_db, "api_message_list_failed", **_failed(None, None))
    assert_no_full_scan(plan, BIG_TABLES)
    assert _matched(plan) == LIMIT + 2  # a full page, and where the next goes on from
    walks = [n for n in scans(plan, "deliveries") if n["Actual Loops"] > 0]
    assert {n["Index Name"] for n in walks} == {"deliveries_failed_log_all_idx"}
    assert sum(rows_read(n) for n in walks) <= MAX_SCAN


def _sql(name: str) -> str:
    from daemon import sql

    return sql.queries()[name].text


def _args(name: str, params: dict[str, Any]) -> list[Any]:
    from daemon import sql

    return sql.queries()[name].args(params)
