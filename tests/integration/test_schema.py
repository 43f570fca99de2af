"""The schema as applications and operators meet it: fan-out, idempotent enqueueing, refused
rows, migrations, storage parameters, the claim's index, and endpoint deletion."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest

from daemon import migrate, sql
from daemon.endpoints import delete_endpoint, set_enabled
from daemon.errors import MigrationsPending
from daemon.service import Service
from daemon.store import Store, StoreError
from tests.integration import conftest as harness_conf
from tests.integration.conftest import Harness, Receiver, wait_until

DEAD_URL = "http://127.0.0.1:9/never"


async def count(harness: Harness, table: str) -> int:
    return int(await harness.conn.fetchval(f"SELECT count(*) FROM webhookd.{table}"))


# -- fan-out -------------------------------------------------------------------------------


async def test_tenant_message_fans_out_to_subscribed_enabled_endpoints_only(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    paid, _ = await harness.endpoint(
        receiver.url("/paid"), tenant_id="acme", event_types=("invoice.paid",)
    )
    everything, _ = await harness.endpoint(receiver.url("/all"), tenant_id="acme")
    await harness.endpoint(receiver.url("/other"), tenant_id="acme", event_types=("other.event",))
    disabled, _ = await harness.endpoint(receiver.url("/disabled"), tenant_id="acme")
    await set_enabled(harness.store, disabled, False, "testing")
    await harness.endpoint(receiver.url("/globex"), tenant_id="globex")
    default_ep, _ = await harness.endpoint(receiver.url("/default"))

    paid_msg = await harness.enqueue(tenant_id="acme", event_type="invoice.paid")
    rows = await harness.deliveries()
    assert sorted(r["endpoint_id"] for r in rows) == sorted([paid, everything])
    assert {r["message_id"] for r in rows} == {paid_msg}

    await harness.enqueue(tenant_id=None, event_type="invoice.paid")
    rows = await harness.deliveries()
    assert [r["endpoint_id"] for r in rows if r["message_id"] != paid_msg] == [default_ep]

    async with run_daemon():
        await harness.wait_status("delivered", 3)
    assert sorted(h.path for h in receiver.hits) == ["/all", "/default", "/paid"]


# -- idempotency and refused rows ----------------------------------------------------------


async def test_msg_id_is_unique_per_endpoint_and_on_conflict_makes_enqueue_idempotent(
    harness: Harness,
) -> None:
    ep1, _ = await harness.endpoint(DEAD_URL, tenant_id="acme")
    ep2, _ = await harness.endpoint(DEAD_URL, tenant_id="acme")
    await harness.enqueue(endpoint_id=ep1, msg_id="msg_order_1")
    with pytest.raises(asyncpg.UniqueViolationError):
        await harness.enqueue(endpoint_id=ep1, msg_id="msg_order_1")

    status = await harness.conn.execute(
        "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, msg_id)"
        " VALUES ($1, 'test.event', '{}', 'msg_order_1') ON CONFLICT DO NOTHING",
        ep1,
    )
    assert status == "INSERT 0 0"
    assert [r["endpoint_id"] for r in await harness.deliveries()] == [ep1]

    # The same id for another endpoint, or fanned out to a tenant, is another message.
    await harness.enqueue(endpoint_id=ep2, msg_id="msg_order_1")
    await harness.enqueue(tenant_id="acme", msg_id="msg_order_1")
    await harness.enqueue(tenant_id="globex", msg_id="msg_order_1")
    with pytest.raises(asyncpg.UniqueViolationError):
        await harness.enqueue(tenant_id="acme", msg_id="msg_order_1")
    assert await count(harness, "outbox") == 4
    assert sorted(r["endpoint_id"] for r in await harness.deliveries()) == sorted(
        [ep1, ep2, ep1, ep2]
    )


async def test_msg_id_is_generated_when_omitted(harness: Harness) -> None:
    ep, _ = await harness.endpoint(DEAD_URL)
    ids = [
        await harness.conn.fetchval(
            "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload)"
            " VALUES ($1, 'test.event', '{}') RETURNING msg_id",
            ep,
        )
        for _ in range(2)
    ]
    assert all(i.startswith("msg_") and len(i) > 20 for i in ids)
    assert ids[0] != ids[1]


async def test_unknown_or_deleted_endpoint_is_refused_at_insert_naming_it(
    harness: Harness,
) -> None:
    good, _ = await harness.endpoint(DEAD_URL)
    gone, _ = await harness.endpoint(DEAD_URL)
    await delete_endpoint(harness.store, gone)
    for missing in ("ep_does_not_exist", gone):
        with pytest.raises(asyncpg.ForeignKeyViolationError, match=missing):
            # One statement, one good row and one bad: neither is kept.
            await harness.conn.execute(
                "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload)"
                " VALUES ($1, 'test.event', '{}'), ($2, 'test.event', '{}')",
                good,
                missing,
            )
    with pytest.raises(StoreError, match="ep_does_not_exist") as refused:
        await harness.store.execute_raw(
            "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload)"
            " VALUES ('ep_does_not_exist', 'test.event', '{}')"
        )
    assert refused.value.sqlstate == "23503"
    assert await count(harness, "outbox") == 0
    assert await count(harness, "deliveries") == 0


async def test_non_json_payload_and_empty_event_type_are_refused(harness: Harness) -> None:
    ep, _ = await harness.endpoint(DEAD_URL)
    insert = "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload) VALUES ($1, $2, $3)"
    with pytest.raises(asyncpg.InvalidTextRepresentationError):
        await harness.conn.execute(insert.replace("$3", "$3::jsonb"), ep, "test.event", "{nope")
    with pytest.raises(asyncpg.CheckViolationError):
        await harness.conn.execute(insert, ep, "", "{}")
    with pytest.raises(asyncpg.NotNullViolationError):
        await harness.conn.execute(insert, ep, "test.event", None)
    assert await count(harness, "outbox") == 0
    assert await count(harness, "deliveries") == 0


# -- migrations ----------------------------------------------------------------------------


async def test_migrate_is_idempotent(harness: Harness) -> None:
    assert await migrate.apply_migrations(harness.dsn) == []
    assert await migrate.apply_migrations(harness.dsn) == []
    versions = [v for v, _ in sql.migrations()]
    assert await migrate.applied_versions(harness.store) == versions


async def test_concurrent_migrations_on_a_fresh_database_apply_the_schema_once(
    bare_dsn: str,
) -> None:
    versions = [v for v, _ in sql.migrations()]
    results = await asyncio.gather(*(migrate.apply_migrations(bare_dsn) for _ in range(3)))
    assert sorted(results, key=len) == [[], [], versions]
    conn = await asyncpg.connect(bare_dsn)
    try:
        rows = await conn.fetch("SELECT version FROM webhookd.schema_migrations")
        assert sorted(r["version"] for r in rows) == versions
        assert await conn.fetchval("SELECT to_regclass('webhookd.deliveries') IS NOT NULL")
    finally:
        await conn.close()


async def test_service_refuses_a_bare_database_unless_asked_to_migrate(
    bare_dsn: str, pg_server_dsn: str
) -> None:
    service = Service(harness_conf.daemon_config(bare_dsn))
    with pytest.raises(MigrationsPending, match="webhookd migrate") as pending:
        await service.start()
    assert pending.value.pending == [v for v, _ in sql.migrations()]
    admin = await asyncpg.connect(pg_server_dsn)

    async def no_connections_left() -> bool:
        return not await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
            urlsplit(bare_dsn).path.lstrip("/"),
        )

    try:
        await wait_until(no_connections_left, 5, "a refused start to close its connections")
    finally:
        await admin.close()

    service = Service(harness_conf.daemon_config(bare_dsn), migrate_schema=True)
    await service.start()
    try:
        assert await service.readiness() == (True, "ready")
    finally:
        await service.stop()
    store = await Store.connect(bare_dsn)
    try:
        assert await migrate.pending_versions(store) == []
    finally:
        await store.close()


# -- storage and plans ---------------------------------------------------------------------


async def test_queue_tables_vacuum_early(harness: Harness) -> None:
    options = await harness.conn.fetchval(
        "SELECT reloptions FROM pg_class WHERE oid = 'webhookd.deliveries'::regclass"
    )
    assert "autovacuum_vacuum_scale_factor=0.01" in options
    assert "autovacuum_vacuum_threshold=1000" in options
    assert "autovacuum_analyze_scale_factor=0.02" in options
    for table in ("outbox", "attempts"):
        options = await harness.conn.fetchval(
            f"SELECT reloptions FROM pg_class WHERE oid = 'webhookd.{table}'::regclass"
        )
        assert "autovacuum_vacuum_scale_factor=0.02" in options


def scans(node: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(node type, relation, index) of every scan in a JSON plan."""
    found = []
    if "Scan" in node["Node Type"]:
        found.append((node["Node Type"], node.get("Relation Name"), node.get("Index Name")))
    for child in node.get("Plans", []):
        found += scans(child)
    return found


async def claim_probe_scans(harness: Harness, ids: list[str]) -> list[Any]:
    """The scans of deliveries in the claim's per-endpoint probe (the `cand` CTE)."""
    await harness.store.fetchval("absorb_wakes", limit=100_000)
    claim = sql.queries()["claim"]
    args = claim.args(
        {
            "limit": 100,
            "max_endpoints": 100,
            "default_quota": 0,
            "local_ids": ids,
            "local_quotas": [50] * len(ids),
            "default_rate_per_s": None,
            "default_burst": 0,
            "default_timeout_s": 30.0,
            "lease_margin_s": 30.0,
            "dead_letters_block": False,
            "instance": "inst-a",
            "max_payload_bytes": 1 << 20,
            "free_slots": 10,
            "hold_limit": 256,
            "only_endpoint_id": None,
        }
    )
    plan = await harness.conn.fetchval("EXPLAIN (FORMAT JSON) " + claim.text, *args)
    root = orjson.loads(plan)[0]["Plan"]
    [cand] = [p for p in subplans(root) if p.get("Subplan Name") == "CTE cand"]
    # The ordering-key checks (deliveries_ordering_idx, deliveries_keyed_due_idx) only
    # concern keyed rows.
    keyed = ("deliveries_ordering_idx", "deliveries_keyed_due_idx")
    return [s for s in scans(cand) if s[1] == "deliveries" and s[2] not in keyed]


def subplans(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", []):
        found += subplans(child)
    return found


async def test_claim_probes_the_partial_due_index_not_the_whole_backlog(
    harness: Harness,
) -> None:
    busy, _ = await harness.endpoint(DEAD_URL)
    quiet, _ = await harness.endpoint(DEAD_URL)
    await harness.enqueue_many(busy, 20_000)
    due_probe = [("Index Scan", "deliveries", "deliveries_due_idx")]
    assert await claim_probe_scans(harness, [busy]) == due_probe

    # Statistics as autovacuum leaves them, with one endpoint holding the whole backlog: the
    # other endpoints' probes must still be index lookups, not walks through that backlog.
    await harness.enqueue_many(quiet, 2_000)
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET status = 'delivered' WHERE endpoint_id = $1", quiet
    )
    await harness.conn.execute("ANALYZE webhookd.deliveries")
    assert await claim_probe_scans(harness, [quiet, busy]) == due_probe


# -- endpoint changes under a running daemon -----------------------------------------------


async def test_deleted_endpoint_dead_letters_its_deliveries_and_they_are_never_attempted(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    doomed, _ = await harness.endpoint(receiver.url("/doomed"))
    alive, _ = await harness.endpoint(receiver.url("/alive"))
    async with run_daemon() as svc:
        await harness.conn.execute(
            "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, deliver_after)"
            " SELECT $1, 'test.event', '{}', now() + interval '0.5 second'"
            " FROM generate_series(1, 3)",
            doomed,
        )
        assert await delete_endpoint(harness.store, doomed) == 3

        async def forgotten() -> bool:
            return svc.scheduler.endpoint(doomed) is None

        await wait_until(forgotten, 5, "the daemon to drop the deleted endpoint")
        await asyncio.sleep(0.7)  # past the deferred rows' due time
        await harness.enqueue(endpoint_id=alive)
        await receiver.wait_hits(1, "/alive")
        await harness.wait_status("delivered", 1)
    assert receiver.at("/doomed") == []
    rows = await harness.deliveries(doomed)
    assert [(r["status"], r["last_error"]) for r in rows] == [("failed", "endpoint deleted")] * 3
    assert all(r["finished_at"] is not None and r["attempts"] == 0 for r in rows)


async def test_disabled_endpoint_keeps_deliveries_pending_until_enabled(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    ep, _ = await harness.endpoint(receiver.url("/paused"))
    async with run_daemon() as svc:
        await set_enabled(harness.store, ep, False, "maintenance")

        async def disabled() -> bool:
            return svc.scheduler.endpoint(ep) is None

        await wait_until(disabled, 5, "the daemon to notice the endpoint is disabled")
        await harness.enqueue_many(ep, 3)
        await asyncio.sleep(0.8)  # several poll intervals (0.2 s)
        assert receiver.hits == []
        rows = await harness.deliveries(ep)
        assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 0)] * 3

        await set_enabled(harness.store, ep, True)
        await harness.wait_status("delivered", 3)
    assert len(receiver.at("/paused")) == 3
