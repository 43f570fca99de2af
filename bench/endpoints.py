"""Endpoints at scale: a real `webhookd run` with 21, 100,000 and 1,000,000 endpoints registered
(all but the busy ones idle). For each registry size: the daemon's start-up to READY, the
wake-up of single inserts (insert commit to arrival, p50/p99), a burst of 10,000 messages over
20 busy endpoints, a burst of 10,000 messages over 10,000 distinct endpoints (one each), a
fan-out of one outbox row to a tenant of those 10,000 endpoints (its commit time and delivery
rate), and the daemon's peak RSS. Ratios are to the busy burst with 21 registered, measured in
the same run.

    .venv/bin/python bench/endpoints.py [--quick] [--reps N] [--sizes 21,100000,1000000]
                                        [--daemon-tree DIR]

--daemon-tree runs the daemon from another checkout (e.g. a worktree of an earlier commit),
on a schema migrated by this one: how the figures were compared across designs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import common

BUSY = 20
DISTINCT = 10_000
BURST = 10_000
WAKEUPS = 200
SPACING_S = 0.020

REGISTER_IDLE = """
INSERT INTO webhookd.endpoints (id, tenant_id, url, secret)
SELECT 'ep_idle_' || g, 'idle', 'https://idle.example.com/' || g,
       'whsec_' || encode(sha256(g::text::bytea), 'base64')
FROM generate_series($1::int, $2::int) g
"""
REGISTER_DISTINCT = """
INSERT INTO webhookd.endpoints (id, tenant_id, url, secret)
SELECT 'ep_d_' || g, 'fanout', $1 || (1000 + g),
       'whsec_' || encode(sha256(('d' || g)::bytea), 'base64')
FROM generate_series(0, $2::int - 1) g
"""
ONE_EACH = """
INSERT INTO webhookd.outbox (endpoint_id, event_type, payload)
SELECT 'ep_d_' || g, 'bench.event', jsonb_build_object('seq', g, 'pad', $1::text)
FROM generate_series(0, $2::int - 1) g
"""
FAN_OUT = """
INSERT INTO webhookd.outbox (tenant_id, event_type, payload)
VALUES ('fanout', 'bench.fanout', jsonb_build_object('pad', $1::text))
"""
WAKE = """
INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, msg_id)
VALUES ($1, 'bench.wakeup', $2::jsonb, $3)
"""


async def execute(dsn: str, statement: str, *args: Any) -> float:
    """Run one statement (its own transaction); seconds from sending to the commit's ack."""
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        await conn.execute(statement, *args)
        return time.perf_counter() - t0
    finally:
        await conn.close()


async def register(dsn: str, idle: int, chunk: int = 200_000) -> None:
    for start in range(1, idle + 1, chunk):
        await execute(dsn, REGISTER_IDLE, start, min(start + chunk - 1, idle))
    await execute(dsn, "VACUUM ANALYZE webhookd.endpoints, webhookd.endpoint_state")


async def burst_rate(env: common.Env, daemon: common.Daemon, count: int) -> float:
    stats = await env.receiver.wait_count(count, 60 + count / 100, alive=daemon.check_alive)
    span_s = (stats["last_ns"] - stats["first_ns"]) / 1e9
    return (stats["count"] - 1) / span_s


async def wakeups(dsn: str, endpoint_id: str, count: int, prefix: str) -> dict[str, int]:
    """msg_id -> ns when its single-row insert's commit was acknowledged."""
    conn = await asyncpg.connect(dsn)
    stamps = {}
    try:
        start = time.monotonic()
        for i in range(count):
            msg_id = f"{prefix}{i:05d}"
            await conn.execute(WAKE, endpoint_id, common.sample_body(i).decode(), msg_id)
            stamps[msg_id] = time.time_ns()
            await asyncio.sleep(max(0.0, start + (i + 1) * SPACING_S - time.monotonic()))
    finally:
        await conn.close()
    return stamps


async def measure(
    env: common.Env, dsn: str, busy_ids: list[str], args: argparse.Namespace, rep: int
) -> dict[str, Any]:
    """One repetition on a loaded database: start the daemon, then each workload."""
    env_extra = {"WEBHOOKD_LOG_LEVEL": "warning"}
    program: list[str] = []
    if args.daemon_tree:
        env_extra["PYTHONPATH"] = args.daemon_tree  # resolved when parsed
        program = [sys.executable, "-m", "daemon"]
    daemon = common.Daemon(dsn, env.workdir, env_extra, program)
    await env.receiver.reset()
    t0 = time.monotonic()
    await daemon.start(timeout_s=120)
    run: dict[str, Any] = {"startup_s": time.monotonic() - t0}
    try:
        burst = args.burst
        # wake-up of an idle daemon, one insert at a time
        stamps = await wakeups(dsn, busy_ids[0], args.wakeups, f"msg_w{rep}_")
        await env.receiver.wait_count(args.wakeups, 60, alive=daemon.check_alive)
        arrivals = await env.receiver.arrivals()
        arrived = dict(zip(arrivals["msg_id"], arrivals["ns"], strict=True))
        lags = [(arrived[m] - ns) / 1e6 for m, ns in stamps.items()]
        run["wakeup_p50_ms"] = common.percentile(lags, 50)
        run["wakeup_p99_ms"] = common.percentile(lags, 99)
        # a burst over the busy endpoints
        await env.receiver.reset()
        await common.enqueue(dsn, busy_ids, burst, first_seq=rep * 10 * burst)
        run["busy_rate_per_s"] = await burst_rate(env, daemon, burst)
        # one message to each of the distinct endpoints
        await env.receiver.reset()
        await execute(dsn, ONE_EACH, common.PAD, args.distinct)
        run["distinct_rate_per_s"] = await burst_rate(env, daemon, args.distinct)
        # one row fanned out to all of them
        await env.receiver.reset()
        run["fanout_commit_s"] = await execute(dsn, FAN_OUT, common.PAD)
        run["fanout_rate_per_s"] = await burst_rate(env, daemon, args.distinct)
        run["daemon_peak_rss_mb"] = daemon.peak_rss_bytes() / 2**20
    finally:
        await daemon.stop()
    return run


async def one_size(env: common.Env, idle: int, args: argparse.Namespace) -> dict[str, Any]:
    async with env.postgres.fresh_database() as dsn:
        t0 = time.monotonic()
        await register(dsn, idle)
        busy_ids = await common.add_endpoints(dsn, [env.receiver.url(i) for i in range(BUSY)])
        await execute(dsn, REGISTER_DISTINCT, env.receiver.url(0)[: -len("0")], args.distinct)
        await execute(dsn, "VACUUM ANALYZE")
        common.note(
            f"{idle + BUSY + args.distinct:,} endpoints registered in {time.monotonic() - t0:.0f} s"
        )
        runs = []
        for rep in range(args.reps):
            await common.wait_quiet()
            run = await measure(env, dsn, busy_ids, args, rep)
            common.note(
                f"{idle + BUSY:,} + {args.distinct:,}: rep {rep + 1}: start {run['startup_s']:.2f}"
                f" s, wake p50 {run['wakeup_p50_ms']:.1f} ms, busy {run['busy_rate_per_s']:.0f}/s,"
                f" distinct {run['distinct_rate_per_s']:.0f}/s, fan-out commit "
                f"{run['fanout_commit_s']:.2f} s, {run['fanout_rate_per_s']:.0f}/s,"
                f" RSS {run['daemon_peak_rss_mb']:.0f} MB"
            )
            runs.append(run)
    return {"registered": idle + BUSY, **common.medians(runs, FIGURES)}


FIGURES = [
    "startup_s",
    "wakeup_p50_ms",
    "wakeup_p99_ms",
    "busy_rate_per_s",
    "distinct_rate_per_s",
    "fanout_commit_s",
    "fanout_rate_per_s",
    "daemon_peak_rss_mb",
]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.sizes, args.burst, args.distinct, args.wakeups = "1,2000", 1000, 500, 30
    sizes = [max(0, int(s) - BUSY) for s in args.sizes.split(",")]
    async with common.environment() as env:
        results = [await one_size(env, idle, args) for idle in sizes]
    base = results[0]["busy_rate_per_s"]
    for result in results:
        result["busy_ratio_to_smallest"] = round(result["busy_rate_per_s"] / base, 3)
        result["distinct_ratio_to_busy"] = round(
            result["distinct_rate_per_s"] / result["busy_rate_per_s"], 3
        )
    return {
        "bench": "endpoints",
        "busy_endpoints": BUSY,
        "burst": args.burst,
        "distinct_endpoints": args.distinct,
        "daemon_tree": args.daemon_tree,
        "sizes": results,
        "targets": {
            "busy_ratio_at_1m": 0.9,
            "distinct_ratio_to_busy": 0.6,
            "wakeup_p50_ms": 10,
            "wakeup_p99_ms": 50,
            "daemon_peak_rss_mb": 200,
            "startup_s": 5,
            "fanout_commit_s": 1,
        },
    }


if __name__ == "__main__":
    parser = common.arguments(__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="21,100000,1000000", help="endpoints registered")
    parser.add_argument("--burst", type=int, default=BURST)
    parser.add_argument("--distinct", type=int, default=DISTINCT)
    parser.add_argument("--wakeups", type=int, default=WAKEUPS)
    parser.add_argument("--daemon-tree", help="run the daemon from this checkout instead")
    parsed = parser.parse_args()
    if parsed.reps is None:
        parsed.reps = 1
    if parsed.daemon_tree:
        parsed.daemon_tree = str(Path(parsed.daemon_tree).resolve())
    common.run(main, parsed)
