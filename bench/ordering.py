"""A blocked ordering key: 10,000 and 1,000,000 ordered rows behind a dead letter of their key
(`outbox.ordering_on_dead_letter = "block"`). With the daemon running: how long until they are
all held (out of the due index), then the claim statement's time (no due work left) and another
endpoint's wake-up (single inserts, insert commit to arrival), which must not depend on how many
rows wait behind the blocked key (flat within 1.5x from 10k to 1M).

    .venv/bin/python bench/ordering.py [--quick] [--reps N] [--sizes 10000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import asyncpg
import common
import wakeup

from daemon import sql

BLOCKED = """
INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, ordering_key)
SELECT $1, 'bench.ordered', jsonb_build_object('seq', g), 'k'
FROM generate_series($2::bigint, $3::bigint) g
"""


async def count_held(conn: asyncpg.Connection, endpoint_id: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM webhookd.deliveries WHERE endpoint_id = $1 AND status = 'held'",
            endpoint_id,
        )
    )


async def claim_ms(dsn: str, samples: int) -> float:
    """The claim statement as a daemon sends it, rolled back each time; median ms."""
    query = sql.queries()["claim"]
    args = common.claim_args(dead_letters_block=True, instance="bench-probe")
    conn = await asyncpg.connect(dsn)
    times = []
    try:
        for _ in range(samples):
            transaction = conn.transaction()
            await transaction.start()
            t0 = time.perf_counter()
            await conn.fetch(query.text, *args)
            times.append((time.perf_counter() - t0) * 1000)
            await transaction.rollback()  # leave nothing claimed
    finally:
        await conn.close()
    return statistics.median(times)


async def one_size(env: common.Env, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    async with env.postgres.fresh_database() as dsn:
        blocked, other = await common.add_endpoints(dsn, [env.receiver.url(0), env.receiver.url(1)])
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(BLOCKED, blocked, 0, 0)  # the head of the key ...
            await conn.execute(
                "UPDATE webhookd.deliveries SET status = 'failed', last_error = 'bench'"
                " WHERE endpoint_id = $1",
                blocked,
            )  # ... dead-lettered: the key is blocked
            for start in range(1, rows + 1, 200_000):
                await conn.execute(BLOCKED, blocked, start, min(start + 199_999, rows))
            await conn.execute("VACUUM ANALYZE webhookd.outbox, webhookd.deliveries")
            daemon = common.Daemon(
                dsn,
                env.workdir,
                {
                    "WEBHOOKD_OUTBOX_ORDERING_ON_DEAD_LETTER": "block",
                    "WEBHOOKD_LOG_LEVEL": "warning",
                },
            )
            await daemon.start(timeout_s=120)
            try:
                t0 = time.monotonic()
                while await count_held(conn, blocked) < rows:
                    daemon.check_alive()
                    await asyncio.sleep(0.5)
                held_s = time.monotonic() - t0
                await conn.execute("VACUUM ANALYZE webhookd.deliveries, webhookd.endpoint_state")
                await common.wait_quiet()
                stamps = await wakeup.insert_spaced(dsn, other, args.wakeups, "msg_w_")
                await env.receiver.wait_count(args.wakeups, 60, alive=daemon.check_alive)
                rss_mb = daemon.peak_rss_bytes() / 2**20
            finally:
                await daemon.stop()
            probe_ms = await claim_ms(dsn, 30)
        finally:
            await conn.close()
        arrivals = await env.receiver.arrivals()
        await env.receiver.reset()
    arrived = dict(zip(arrivals["msg_id"], arrivals["ns"], strict=True))
    lags = [(arrived[m] - committed) / 1e6 for m, (_, committed) in stamps.items()]
    result = {
        "rows_behind": rows,
        "held_s": round(held_s, 1),
        "claim_ms": probe_ms,
        "wakeup_p50_ms": common.percentile(lags, 50),
        "wakeup_p99_ms": common.percentile(lags, 99),
        "daemon_peak_rss_mb": rss_mb,
    }
    common.note(f"{rows:,} behind the key: {result}")
    return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in ("1000,10000" if args.quick else args.sizes).split(",")]
    if args.quick:
        args.wakeups = 30
    async with common.environment() as env:
        results = [await one_size(env, rows, args) for rows in sizes]
    first, last = results[0], results[-1]
    return {
        "bench": "ordering",
        "sizes": results,
        "claim_ratio_largest_vs_smallest": round(last["claim_ms"] / first["claim_ms"], 2),
        "wakeup_p50_ratio_largest_vs_smallest": round(
            last["wakeup_p50_ms"] / first["wakeup_p50_ms"], 2
        ),
        "target_ratio": 1.5,
    }


if __name__ == "__main__":
    parser = common.arguments(__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--wakeups", type=int, default=200)
    parsed = parser.parse_args()
    if parsed.reps is None:
        parsed.reps = 1
    common.run(main, parsed)
