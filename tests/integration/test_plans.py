"""Statements planned while the tables were small are planned again once they have grown
(daemon/plans.py), on real PostgreSQL: the plan a connection has cached for the claim is read
back with EXPLAIN EXECUTE on that connection."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio

from daemon import plans
from daemon.api.server import ApiServer
from daemon.store import Store
from tests.api_support import api_config
from tests.integration.conftest import claim, wait_until

BIG_TABLES = {"deliveries", "outbox", "endpoint_state", "endpoints"}

GROW = """
WITH e AS (
    INSERT INTO webhookd.endpoints (id, tenant_id, url, secret)
    SELECT 'ep_' || g, 't', 'http://127.0.0.1:9/' || g, 'whsec_' || md5(g::text)
    FROM generate_series(1, 2000) g
    RETURNING id
)
INSERT INTO webhookd.outbox (endpoint_id, event_type, payload)
SELECT e.id, 'grown', '{}'::jsonb FROM e CROSS JOIN generate_series(1, 5)
"""


@pytest_asyncio.fixture
async def generic_store(db_dsn: str) -> AsyncIterator[Store]:
    """One pooled connection that always uses the generic plan (what PostgreSQL settles on
    after five executions), on tables whose statistics say they are empty (a VACUUM of the
    fresh schema: what autovacuum leaves on a new install)."""
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
        database = await conn.fetchval("SELECT current_database()")
        await conn.execute(f'ALTER DATABASE "{database}" SET plan_cache_mode = force_generic_plan')
    finally:
        await conn.close()
    store = await Store.connect(db_dsn, min_size=1, max_size=1)
    try:
        yield store
    finally:
        await store.close()


async def cached_claim_plan(store: Store) -> list[str]:
    """The scans of the plan the store's one connection holds for the claim statement."""
    async with store.pool.acquire() as conn:
        name = await conn.fetchval(
            "SELECT name FROM pg_prepared_statements WHERE statement LIKE '-- Lease up to%'"
        )
        assert name is not None, "the claim is not prepared on this connection"
        params = await conn.fetchval(
            "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = $1",
            name,
        )
        plan = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON) EXECUTE {name}({', '.join(['NULL'] * params)})"
        )
    return scans(json.loads(plan)[0]["Plan"])


def scans(node: dict[str, Any]) -> list[str]:
    """'Seq Scan on t' for each whole-table scan of a large table in the plan tree."""
    found = []
    if node.get("Relation Name") in BIG_TABLES and node["Node Type"] == "Seq Scan":
        found.append(f"Seq Scan on {node['Relation Name']}")
    for child in node.get("Plans", []):
        found += scans(child)
    return found


async def test_a_claim_planned_on_empty_tables_is_planned_again_once_they_have_grown(
    generic_store: Store,
) -> None:
    growth = plans.TableGrowth()
    assert await plans.replan_if_grown(generic_store, growth) == []  # the sizes it starts from
    await claim(generic_store, [], [], limit=100, lease_s=30, instance="a", default_quota=10)
    # what goes wrong: planned while empty, the claim reads whole tables, once per endpoint
    assert "Seq Scan on deliveries" in await cached_claim_plan(generic_store)

    await generic_store.execute_raw(GROW)
    grown = await plans.replan_if_grown(generic_store, growth)
    assert {"deliveries", "outbox", "endpoints", "endpoint_state"} <= set(grown)
    claimed = await claim(
        generic_store, [], [], limit=100, lease_s=30, instance="a", default_quota=10
    )

    assert len(claimed) == 100
    assert await cached_claim_plan(generic_store) == []


async def test_tables_that_did_not_grow_keep_their_plans(generic_store: Store) -> None:
    growth = plans.TableGrowth()
    await plans.replan_if_grown(generic_store, growth)
    epoch = generic_store.plan_epoch
    await generic_store.execute_raw(
        "INSERT INTO webhookd.endpoints (id, tenant_id, url, secret)"
        " VALUES ('ep_one', 't', 'http://127.0.0.1:9/', 'whsec_x')"
    )

    assert await plans.replan_if_grown(generic_store, growth) == []
    assert generic_store.plan_epoch == epoch


async def test_the_api_server_plans_again_once_the_tables_have_grown(db_dsn: str) -> None:
    """`webhookd api` has no claim loop: it watches the tables' sizes itself."""
    server = ApiServer(api_config(db_dsn))
    await server.start()
    try:
        store = server.store
        assert store is not None
        conn = await asyncpg.connect(db_dsn)
        try:

            async def looked() -> bool:  # its first look: the sizes it starts from
                seen = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state = 'idle' AND query LIKE '-- The size in pages%'"
                )
                return bool(seen)

            await wait_until(looked, 10, "the API's first look at the tables' sizes")
            assert store.plan_epoch == 0
            await conn.execute(GROW)
        finally:
            await conn.close()

        async def replanned() -> bool:
            return store.plan_epoch > 0

        await wait_until(replanned, plans.CHECK_EVERY_S * 5, "the API's plans made again")
    finally:
        await server.stop()
