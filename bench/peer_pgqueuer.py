"""The same workload through pgqueuer: 50,000 messages over 100 endpoints, signed (Standard
Webhooks) and POSTed with aiohttp, 10 in flight, pgqueuer's own job log as the attempt record.
Both run in each repetition, on the same database server and receiver; the figure is the
webhookd / pgqueuer ratio of deliveries per second (first to last arrival).

pgqueuer settings (`bench/pgqueuer_worker.py`, the fastest of `--sweep`): one asyncpg
connection, batch_size 50, max_concurrent_tasks 100 (so at most 100 jobs are picked, as
webhookd leases at most a batch of 100), in flight capped at 10 by a semaphore in the handler
(the entrypoint's concurrency_limit=10, enforced in SQL, was slower), durability `durable`
like webhookd's tables.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from typing import Any

import asyncpg
import common
import throughput
from pgqueuer import AsyncpgDriver, Queries

BEST = ["--batch-size", "50", "--max-tasks", "100", "--limit", "semaphore"]
# Every candidate holds at most ~100 jobs picked, as webhookd holds at most a batch (100)
# claimed; without --max-tasks pgqueuer would pick the whole queue into waiting tasks.
SWEEP = [
    ["--batch-size", "10", "--limit", "entrypoint"],
    ["--batch-size", "10", "--max-tasks", "20", "--limit", "semaphore"],
    ["--batch-size", "25", "--max-tasks", "50", "--limit", "semaphore"],
    BEST,
    [*BEST, "--pool"],
    ["--batch-size", "100", "--max-tasks", "200", "--limit", "semaphore"],
]
ENQUEUE_CHUNK = 5_000


async def install_and_enqueue(dsn: str, messages: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        for start in range(0, messages, ENQUEUE_CHUNK):
            n = min(ENQUEUE_CHUNK, messages - start)
            bodies: list[bytes | None] = [common.sample_body(start + i) for i in range(n)]
            await queries.enqueue(["webhook"] * n, bodies, [0] * n)
        await conn.execute("VACUUM ANALYZE pgqueuer")
    finally:
        await conn.close()


async def queue_left(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM pgqueuer"))
    finally:
        await conn.close()


async def pgqueuer_run(
    env: common.Env, dsn: str, messages: int, settings: list[str], timeout_s: float
) -> dict[str, Any]:
    await env.receiver.reset()
    cmd = [sys.executable, str(common.BENCH_DIR / "pgqueuer_worker.py"), "--dsn", dsn,
           "--receiver", env.receiver.base, *settings]  # fmt: skip
    log = env.workdir / "pgqueuer.log"
    proc = common.spawn(cmd, env=None, log=log, stdout=subprocess.PIPE)
    loop = asyncio.get_running_loop()
    try:
        line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), 30)
        if line.strip() != b"ready":
            raise RuntimeError(f"pgqueuer worker did not start:\n{common.tail(log)}")
        cpu0 = common.process_cpu_s(proc.pid)
        pg_cpu0 = env.postgres.cpu_s()
        busy = common.Busy(lambda: [proc.pid, env.receiver.pid], env.pg)
        completed = True
        try:
            await env.receiver.wait_count(messages, timeout_s)
            for _ in range(600):  # outcomes are logged a little after the last arrival
                if not await queue_left(dsn):
                    break
                await asyncio.sleep(0.1)
        except TimeoutError:
            completed = False  # bounded: the rate is what arrived in the time allowed
        stats = await env.receiver.stats()
        cpu = common.process_cpu_s(proc.pid) - cpu0
        pg_cpu1 = env.postgres.cpu_s()
        foreign = busy.foreign_cores()
    finally:
        await common.terminate(proc, 30)
    count = stats["count"]
    span_s = (stats["last_ns"] - stats["first_ns"]) / 1e9
    return {
        "rate_per_s": (count - 1) / span_s,
        "worker_cpu_s_per_1k": cpu / count * 1000,
        "pg_cpu_s_per_1k": None if pg_cpu0 is None else (pg_cpu1 - pg_cpu0) / count * 1000,
        "completed": completed,
        "delivered": count,
        "foreign_cores": foreign,
    }


async def one_rep(
    env: common.Env, messages: int, settings: list[str], timeout_s: float
) -> dict[str, Any]:
    urls = [env.receiver.url(i) for i in range(throughput.ENDPOINTS)]
    async with env.postgres.fresh_database() as dsn:
        await throughput.load(dsn, urls, messages)
        await install_and_enqueue(dsn, messages)
        await common.wait_quiet()
        ours = await throughput.deliver_all(env, dsn, messages)
        peer = await pgqueuer_run(env, dsn, messages, settings, timeout_s)
    return {
        "webhookd_rate_per_s": ours["rate_per_s"],
        "pgqueuer_rate_per_s": peer["rate_per_s"],
        "ratio": ours["rate_per_s"] / peer["rate_per_s"],
        "webhookd_cpu_s_per_1k": ours["daemon_cpu_s_per_1k"],
        "pgqueuer_cpu_s_per_1k": peer["worker_cpu_s_per_1k"],
        "webhookd_pg_cpu_s_per_1k": ours["pg_cpu_s_per_1k"],
        "pgqueuer_pg_cpu_s_per_1k": peer["pg_cpu_s_per_1k"],
        "pgqueuer_completed": peer["completed"],
        "foreign_cores": max(ours["foreign_cores"], peer["foreign_cores"]),
    }


FIGURES = [
    "webhookd_rate_per_s",
    "pgqueuer_rate_per_s",
    "ratio",
    "webhookd_cpu_s_per_1k",
    "pgqueuer_cpu_s_per_1k",
    "webhookd_pg_cpu_s_per_1k",
    "pgqueuer_pg_cpu_s_per_1k",
    "foreign_cores",
]


async def sweep(env: common.Env, messages: int) -> list[dict[str, Any]]:
    """pgqueuer alone under each candidate setting, to pick BEST."""
    out = []
    for settings in SWEEP:
        async with env.postgres.fresh_database() as dsn:
            await install_and_enqueue(dsn, messages)
            await common.wait_quiet()
            run = await pgqueuer_run(env, dsn, messages, settings, 120)
        common.note(f"{' '.join(settings)}: {run['rate_per_s']:.0f}/s")
        out.append({"settings": " ".join(settings), **common.medians([run], ["rate_per_s"])})
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    messages = 1_000 if args.quick else args.messages
    timeout_s = 60 if args.quick else 480
    async with common.environment() as env:
        await common.ceiling_run(env, [env.receiver.url(0)], 300)  # warm-up
        if args.sweep:
            return {"bench": "peer_pgqueuer_sweep", "messages": messages,
                    "runs": await sweep(env, messages)}  # fmt: skip
        runs = []
        for rep in range(args.reps):
            run = await one_rep(env, messages, BEST, timeout_s)
            common.note(
                f"rep {rep + 1}: webhookd {run['webhookd_rate_per_s']:.0f}/s, pgqueuer "
                f"{run['pgqueuer_rate_per_s']:.0f}/s, ratio {run['ratio']:.2f}"
            )
            runs.append(run)
    return {
        "bench": "peer_pgqueuer",
        "messages": messages,
        "endpoints": throughput.ENDPOINTS,
        "concurrency": common.CONCURRENCY,
        "pgqueuer_settings": " ".join(BEST),
        **common.medians(runs, FIGURES),
        "target_ratio": 5.0,
        "pgqueuer_completed": all(r["pgqueuer_completed"] for r in runs),
        "runs": [common.medians([r], FIGURES[:3]) for r in runs],
    }


if __name__ == "__main__":
    parser = common.arguments(__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--sweep", action="store_true", help="try pgqueuer settings, no ratio")
    common.run(main, parser.parse_args())
