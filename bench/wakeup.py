"""Wake-up latency: an idle daemon, then single-row inserts into webhookd.outbox spaced 20 ms
apart, each its own transaction. For each message: commit (the inserter's clock when the
COMMIT was acknowledged) to arrival at the receiver (its handler's first line, same host
clock, `time.time_ns()`). p50 / p99 per repetition; medians over repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg
import common

SPACING_S = 0.020
WARM_UP = 10  # first inserts open the pools and the keep-alive connection; not counted
INSERT = """
INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, msg_id)
VALUES ($1, 'bench.wakeup', $2::jsonb, $3)
"""


async def insert_spaced(
    dsn: str, endpoint_id: str, count: int, prefix: str
) -> dict[str, tuple[int, int]]:
    """msg_id -> (ns before sending the INSERT, ns when its commit was acknowledged)."""
    conn = await asyncpg.connect(dsn)
    stamps: dict[str, tuple[int, int]] = {}
    try:
        start = time.monotonic()
        for i in range(count):
            msg_id = f"{prefix}{i:05d}"
            body = common.sample_body(i).decode()
            sent = time.time_ns()
            await conn.execute(INSERT, endpoint_id, body, msg_id)  # autocommit: one transaction
            stamps[msg_id] = (sent, time.time_ns())
            await asyncio.sleep(max(0.0, start + (i + 1) * SPACING_S - time.monotonic()))
    finally:
        await conn.close()
    return stamps


async def one_rep(
    env: common.Env,
    rep: int,
    count: int,
    extra: dict[str, str] | None = None,
    program: list[str] | None = None,
) -> dict[str, Any]:
    """`extra` WEBHOOKD_* settings; `program`: what stands for `webhookd`."""
    async with env.postgres.fresh_database() as dsn:
        (endpoint_id,) = await common.add_endpoints(dsn, [env.receiver.url(0)])
        await env.receiver.reset()
        daemon = common.Daemon(dsn, env.workdir, extra, program or ())
        await daemon.start()
        try:
            await insert_spaced(dsn, endpoint_id, WARM_UP, f"msg_warm_{rep}_")
            await env.receiver.wait_count(WARM_UP, 30, alive=daemon.check_alive)
            await common.wait_quiet()
            busy = common.Busy(lambda: [daemon.pid, env.receiver.pid], env.pg)
            stamps = await insert_spaced(dsn, endpoint_id, count, f"msg_wake_{rep}_")
            await env.receiver.wait_count(WARM_UP + count, 30, alive=daemon.check_alive)
            foreign = busy.foreign_cores()
        finally:
            await daemon.stop()
        arrivals = await env.receiver.arrivals()
    arrived = dict(zip(arrivals["msg_id"], arrivals["ns"], strict=True))
    from_commit = [(arrived[m] - committed) / 1e6 for m, (_, committed) in stamps.items()]
    from_send = [(arrived[m] - sent) / 1e6 for m, (sent, _) in stamps.items()]
    return {
        "p50_ms": common.percentile(from_commit, 50),
        "p90_ms": common.percentile(from_commit, 90),
        "p99_ms": common.percentile(from_commit, 99),
        "max_ms": max(from_commit),
        "p50_from_insert_sent_ms": common.percentile(from_send, 50),
        "p99_from_insert_sent_ms": common.percentile(from_send, 99),
        "foreign_cores": foreign,
    }


FIGURES = [
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "p50_from_insert_sent_ms",
    "p99_from_insert_sent_ms",
    "foreign_cores",
]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    count = 50 if args.quick else 1_000
    async with common.environment() as env:
        runs = []
        for rep in range(args.reps):
            run = await one_rep(env, rep, count)
            common.note(
                f"rep {rep + 1}: p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms, "
                f"max {run['max_ms']:.2f} ms"
            )
            runs.append(run)
    return {
        "bench": "wakeup",
        "inserts": count,
        "spacing_ms": SPACING_S * 1000,
        **common.medians(runs, FIGURES),
        "target_p50_ms": 5.0,
        "target_p99_ms": 25.0,
        "runs": [common.medians([r], ["p50_ms", "p99_ms", "max_ms"]) for r in runs],
    }


if __name__ == "__main__":
    common.run(main, common.arguments(__doc__.splitlines()[0]).parse_args())
