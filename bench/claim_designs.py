"""The two claim designs considered for scale with endpoints, on the same data: the one chosen
(walk the endpoints whose `due_at` has come, least recently served first: the `claim` named
query) and a claim straight from the due index of deliveries with the per-endpoint limit
applied by a window function (a prototype: the SELECT that picks, without the UPDATE that
leases, so it is a lower bound of its cost). Each statement's time (median of 30, rolled back)
with 1,000,000 endpoints registered and:

- `busy`: 20 endpoints with 5,000 due deliveries each (a backlog);
- `distinct`: 10,000 endpoints with one due delivery each.

    .venv/bin/python bench/claim_designs.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import asyncpg
import common

from daemon import sql

REGISTER = """
INSERT INTO webhookd.endpoints (id, url, secret)
SELECT 'ep_' || g, 'https://x.example.com/' || g,
       'whsec_' || encode(sha256(g::text::bytea), 'base64')
FROM generate_series(1, $1::int) g
"""
ENQUEUE = """
INSERT INTO webhookd.outbox (endpoint_id, event_type, payload)
SELECT 'ep_' || (1 + g % $1::int), 'bench.claim', jsonb_build_object('seq', g)
FROM generate_series(0, $2::int - 1) g
"""
# The alternative: number every due delivery per endpoint, keep the first `quota` of each, in
# the order they fell due, and take `limit`. (Round robin would need more still.)
WINDOW = """
WITH due AS (
    SELECT d.id, d.endpoint_id, d.next_attempt_at,
           row_number() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at) AS n
    FROM webhookd.deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at <= now()
)
SELECT d.id, d.endpoint_id
FROM webhookd.deliveries d
WHERE d.id IN (SELECT id FROM due WHERE n <= $1 ORDER BY next_attempt_at LIMIT $2)
FOR UPDATE SKIP LOCKED
"""


async def timed(conn: asyncpg.Connection, statement: str, args: list[Any], n: int) -> float:
    times = []
    for _ in range(n):
        transaction = conn.transaction()
        await transaction.start()
        t0 = time.perf_counter()
        await conn.fetch(statement, *args)
        times.append((time.perf_counter() - t0) * 1000)
        await transaction.rollback()
    return statistics.median(times)


def due_claim_args() -> list[Any]:
    return common.claim_args()


async def scenario(
    env: common.Env, registered: int, endpoints: int, rows: int, samples: int
) -> dict[str, Any]:
    async with env.postgres.fresh_database() as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(REGISTER, registered)
            await conn.execute(ENQUEUE, endpoints, rows)
            await conn.execute("VACUUM ANALYZE")
            await conn.fetchval(
                sql.queries()["absorb_wakes"].text,
                *sql.queries()["absorb_wakes"].args({"limit": 1_000_000}),
            )
            await conn.execute("VACUUM ANALYZE webhookd.endpoint_state")
            due_ms = await timed(conn, sql.queries()["claim"].text, due_claim_args(), samples)
            window_ms = await timed(conn, WINDOW, [10, 100], samples)
        finally:
            await conn.close()
    result = {
        "registered": registered,
        "endpoints_with_work": endpoints,
        "due_rows": rows,
        "due_index_claim_ms": due_ms,
        "window_function_select_ms": window_ms,
    }
    common.note(str(result))
    return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    registered = 20_000 if args.quick else 1_000_000
    samples = 5 if args.quick else 30
    async with common.environment() as env:
        busy = await scenario(env, registered, 20, 2_000 if args.quick else 100_000, samples)
        distinct = await scenario(env, registered, 10_000, 10_000, samples)
    return {"bench": "claim_designs", "busy": busy, "distinct": distinct}


if __name__ == "__main__":
    parsed = common.arguments(__doc__.splitlines()[0]).parse_args()
    if parsed.reps is None:
        parsed.reps = 1
    common.run(main, parsed)
