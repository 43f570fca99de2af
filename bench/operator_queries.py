"""The operator commands' queries at scale: 1,000,000 endpoints (2,000 of them busy, 1 %
disabled, 1 % deleted), 1,000,000 messages over 30 days with one delivery each (85 % delivered,
7 % dead letters, 5 % pending, 1 % in flight, 2 % held behind an ordering key) and an attempt
for each finished or retried one. Built with INSERT ... SELECT generate_series with triggers
off (the rows are consistent by construction; endpoint_state, which these queries do not read,
is left empty), then VACUUM ANALYZE. Each named query runs as the CLI runs it, once per
repetition; figures are its time (median), the rows it returns, the buffers it touches and any
sequential scan in its plan (EXPLAIN ANALYZE).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import asyncpg
import common
import orjson

from daemon import sql
from daemon.endpoints import COUNT_CAP

BUILD = [
    "SET session_replication_role = replica",
    """
    INSERT INTO webhookd.endpoints (id, tenant_id, url, secret, enabled, deleted_at)
    SELECT 'ep_' || md5(g::text), 't' || (g % 2000), 'https://example.com/h/' || g, 'whsec_x',
           g % 100 <> 7, CASE WHEN g % 100 = 9 THEN now() END
    FROM generate_series(1, $1::int) g
    """,
    """
    INSERT INTO webhookd.outbox (id, msg_id, endpoint_id, event_type, payload, created_at)
    SELECT g, 'm' || g, 'ep_' || md5((1 + abs(hashtext(g::text)) % 2000)::text), 'e',
           '{"n": 1}'::jsonb, now() - (g % 2592000) * interval '1 second'
    FROM generate_series(1, $1::int) g
    """,
    """
    INSERT INTO webhookd.deliveries (id, message_id, endpoint_id, status, ordering_key,
                                     next_attempt_at, created_at, updated_at, finished_at,
                                     attempts)
    SELECT o.id, o.id, o.endpoint_id, s.status, CASE WHEN s.status = 'held' THEN 'k' END,
           o.created_at + CASE WHEN s.status = 'pending' AND o.id % 2 = 0
                               THEN interval '40 days' ELSE interval '0' END,
           o.created_at, o.created_at + interval '5 seconds',
           CASE WHEN s.status IN ('delivered', 'failed')
                THEN o.created_at + interval '5 seconds' END,
           CASE WHEN s.status IN ('delivered', 'failed') THEN 1 ELSE 0 END
    FROM webhookd.outbox o
    CROSS JOIN LATERAL (
        SELECT CASE WHEN o.id % 100 < 85 THEN 'delivered' WHEN o.id % 100 < 92 THEN 'failed'
                    WHEN o.id % 100 < 97 THEN 'pending' WHEN o.id % 100 < 98 THEN 'delivering'
                    ELSE 'held' END AS status
    ) s
    """,
    """
    INSERT INTO webhookd.attempts (delivery_id, attempt, started_at, duration_ms, status_code,
                                   instance)
    SELECT d.id, 1, d.created_at + interval '1 second', (d.id % 500)::float8,
           CASE WHEN d.status = 'delivered' THEN 200 ELSE 500 END, 'bench'
    FROM webhookd.deliveries d
    WHERE d.status IN ('delivered', 'failed') OR (d.status = 'pending' AND d.id % 3 = 0)
    """,
    "VACUUM ANALYZE webhookd.endpoints, webhookd.outbox, webhookd.deliveries, webhookd.attempts",
]
BUSY = "ep_" + "c4ca4238a0b923820dcc509a6f75849b"  # md5('1'): one of the busy endpoints


def queries(middle_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """What each command runs: label -> (named query, parameters)."""
    page = {"tenant_id": None, "after_id": None, "limit": 100, "count_cap": COUNT_CAP}
    dead = {"endpoint_id": None, "since": None, "until": None}
    return {
        "endpoint_list_first_page": ("endpoint_list", page),
        "endpoint_list_middle_page": ("endpoint_list", page | {"after_id": middle_id}),
        "endpoint_list_tenant_page": ("endpoint_list", page | {"tenant_id": "t17"}),
        "stats_1h": ("operator_stats", {"window_s": 3600.0, "endpoint_id": None}),
        "stats_1d": ("operator_stats", {"window_s": 86400.0, "endpoint_id": None}),
        "stats_one_endpoint_1h": ("operator_stats", {"window_s": 3600.0, "endpoint_id": BUSY}),
        "dead_letters_latest_50": ("dead_letters_list", dead | {"limit": 50}),
        "dead_letters_total": ("dead_letters_count", dead | {"count_cap": COUNT_CAP}),
        "dead_letters_of_one_endpoint": (
            "dead_letters_list",
            dead | {"endpoint_id": BUSY, "limit": 50},
        ),
    }


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in plan_nodes(child))]


async def measure(
    conn: asyncpg.Connection, query: sql.Query, params: dict[str, Any], reps: int
) -> dict[str, Any]:
    # another queries.sql (--queries) may name fewer parameters
    args = query.args({k: v for k, v in params.items() if k in query.params})
    times_ms, rows = [], 0
    for _ in range(reps):
        # a new statement each time: the CLI runs each query once per process (a custom plan)
        started = time.perf_counter()
        rows = len(await conn.fetch(query.text + "\n-- " + str(time.perf_counter_ns()), *args))
        times_ms.append((time.perf_counter() - started) * 1000)
    text = await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)\n" + query.text, *args)
    plan = orjson.loads(text)[0]["Plan"]
    return {
        "ms": round(statistics.median(times_ms), 2),
        "rows": rows,
        "blocks": plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0),
        "seq_scans": sorted(
            {n["Relation Name"] for n in plan_nodes(plan) if n["Node Type"] == "Seq Scan"}
        ),
    }


async def build(dsn: str, endpoints: int, messages: int) -> dict[str, int]:
    conn = await asyncpg.connect(dsn, command_timeout=1800)
    try:
        for statement in BUILD:
            size = endpoints if "webhookd.endpoints (" in statement else messages
            started = time.monotonic()
            await (conn.execute(statement, size) if "$1" in statement else conn.execute(statement))
            common.note(f"{time.monotonic() - started:6.1f}s {statement.split()[0:3]}")
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM webhookd.endpoints) AS endpoints,"
            " (SELECT count(*) FROM webhookd.deliveries) AS deliveries,"
            " (SELECT count(*) FROM webhookd.deliveries WHERE status = 'failed') AS dead_letters,"
            " (SELECT count(*) FROM webhookd.attempts) AS attempts"
        )
        assert row is not None
        return dict(row)
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    endpoints, messages = (20_000, 20_000) if args.quick else (1_000_000, 1_000_000)
    async with common.environment() as env, env.postgres.fresh_database() as dsn:
        sizes = await build(dsn, endpoints, messages)
        conn = await asyncpg.connect(dsn)
        try:
            middle = await conn.fetchval(
                "SELECT id FROM webhookd.endpoints ORDER BY id OFFSET $1 LIMIT 1", endpoints // 2
            )
            await common.wait_quiet()
            named = sql.parse_queries(args.queries.read_text()) if args.queries else sql.queries()
            figures = {
                label: await measure(conn, named[name], params, max(args.reps, 5))
                for label, (name, params) in queries(middle).items()
                if name in named
            }
        finally:
            await conn.close()
    for label, f in figures.items():
        common.note(f"{label:30} {f['ms']:8.2f} ms {f['rows']:6} rows {f['blocks']:7} blocks")
    return {"bench": "operator_queries", **sizes, "queries": figures}


if __name__ == "__main__":
    parser = common.arguments(__doc__.splitlines()[0])
    parser.add_argument(
        "--queries",
        type=Path,
        help="another queries.sql to measure, e.g. git show COMMIT:daemon/sql/queries.sql > f",
    )
    common.run(main, parser.parse_args())
