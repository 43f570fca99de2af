"""Backlog: does claiming slow down as rows pile up? The claim+deliver rate over a bounded
window (the first 5,000 deliveries after start) with 10k, 100k and 1M due rows waiting over
100 endpoints, and with 10k due plus 1M scheduled in the future plus 1M already delivered
(with their attempts). The daemon's peak RSS with 1M waiting.

Rows are loaded with INSERT ... SELECT generate_series into webhookd.outbox (the statement
trigger fans them out), or, for the delivered history, straight into the tables with triggers
off. Between repetitions the daemon is stopped and the due backlog topped up to its level.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import asyncpg
import common

ENDPOINTS = 100
FUTURE_S = 86_400.0
FUTURE_SEQ = 10**9  # seq numbers in payloads, apart from the due rows'
HISTORY_SEQ = 2 * 10**9

HISTORY = """
WITH m AS (
    INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, created_at)
    SELECT ($1::text[])[1 + (g % cardinality($1::text[]))], 'bench.history',
           jsonb_build_object('seq', g, 'pad', $2::text), now() - interval '1 hour'
    FROM generate_series($3::bigint, $4::bigint) AS g
    RETURNING id, endpoint_id, created_at
), d AS (
    INSERT INTO webhookd.deliveries (message_id, endpoint_id, status, attempts,
                                     next_attempt_at, last_status_code, created_at,
                                     updated_at, finished_at)
    SELECT id, endpoint_id, 'delivered', 1, created_at, 200, created_at, now(), now()
    FROM m
    RETURNING id
)
INSERT INTO webhookd.attempts (delivery_id, attempt, started_at, duration_ms, status_code,
                               response_body, instance)
SELECT id, 1, now() - interval '1 hour', 1.5, 200, ''::bytea, 'bench:history' FROM d
"""


async def load_history(dsn: str, endpoint_ids: list[str], count: int) -> None:
    """`count` delivered messages with their delivery and attempt rows, as a daemon leaves
    them, written directly (session_replication_role=replica skips the fan-out trigger)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        for start in range(0, count, 100_000):
            end = min(start + 100_000, count) - 1
            await conn.execute(
                HISTORY, endpoint_ids, common.PAD, HISTORY_SEQ + start, HISTORY_SEQ + end
            )
    finally:
        await conn.close()


async def pending(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value = await conn.fetchval(
            "SELECT count(*) FROM webhookd.deliveries"
            " WHERE status = 'pending' AND next_attempt_at <= now()"
        )
        return int(value)
    finally:
        await conn.close()


class Backlog:
    """One database whose due backlog is held at a level between windows."""

    def __init__(self, env: common.Env, dsn: str, endpoint_ids: list[str]) -> None:
        self.env = env
        self.dsn = dsn
        self.ids = endpoint_ids
        self._seq = 0

    async def fill_to(self, level: int) -> None:
        missing = level - await pending(self.dsn)
        if missing > 0:
            t0 = time.monotonic()
            await common.enqueue(self.dsn, self.ids, missing, first_seq=self._seq)
            self._seq += missing
            if missing > 50_000:
                common.note(f"loaded {missing} due rows in {time.monotonic() - t0:.0f}s")

    async def window(self, deliveries: int) -> dict[str, Any]:
        """Start the daemon, wait for `deliveries` arrivals, stop it. Figures of that window."""
        env = self.env
        await env.receiver.reset()
        daemon = common.Daemon(self.dsn, env.workdir)
        await daemon.start()
        try:
            cpu0 = daemon.cpu_s()
            busy = common.Busy(lambda: [daemon.pid, env.receiver.pid], env.pg)
            await env.receiver.wait_count(deliveries, 300, alive=daemon.check_alive)
            cpu = daemon.cpu_s() - cpu0
            rss = daemon.peak_rss_bytes()
            foreign = busy.foreign_cores()
        finally:
            await daemon.stop()
        stamps = sorted((await env.receiver.arrivals())["ns"])[:deliveries]
        return {
            "rate_per_s": common.rate_per_s(stamps),
            "daemon_cpu_s_per_1k": cpu / deliveries * 1000,
            "daemon_peak_rss_mb": rss / 2**20,
            "foreign_cores": foreign,
        }

    async def measure(self, label: str, level: int, window: int, reps: int) -> dict[str, Any]:
        runs = []
        for _ in range(reps):
            await self.fill_to(level)
            await common.wait_quiet()
            runs.append(await self.window(window))
        result = {"scenario": label, **common.medians(runs, FIGURES)}
        result["runs_rate_per_s"] = [round(r["rate_per_s"], 1) for r in runs]
        common.note(f"{label}: {result['rate_per_s']}/s, RSS {result['daemon_peak_rss_mb']} MB")
        return result


FIGURES = ["rate_per_s", "daemon_cpu_s_per_1k", "daemon_peak_rss_mb", "foreign_cores"]


async def due_levels(
    env: common.Env, levels: list[int], window: int, reps: int
) -> list[dict[str, Any]]:
    urls = [env.receiver.url(i) for i in range(ENDPOINTS)]
    async with env.postgres.fresh_database() as dsn:
        backlog = Backlog(env, dsn, await common.add_endpoints(dsn, urls))
        out = []
        for level in levels:
            await backlog.fill_to(level)
            await common.vacuum_analyze(dsn)
            out.append(await backlog.measure(f"due_{level}", level, window, reps))
        return out


async def mixed(env: common.Env, due: int, other: int, window: int, reps: int) -> dict[str, Any]:
    urls = [env.receiver.url(i) for i in range(ENDPOINTS)]
    async with env.postgres.fresh_database() as dsn:
        ids = await common.add_endpoints(dsn, urls)
        t0 = time.monotonic()
        await load_history(dsn, ids, other)
        await common.enqueue(dsn, ids, other, first_seq=FUTURE_SEQ, deliver_in_s=FUTURE_S)
        common.note(f"loaded {other} delivered + {other} future in {time.monotonic() - t0:.0f}s")
        backlog = Backlog(env, dsn, ids)
        await backlog.fill_to(due)
        await common.vacuum_analyze(dsn)
        label = f"due_{due}+future_{other}+delivered_{other}"
        return await backlog.measure(label, due, window, reps)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        levels, window, other = [1_000, 4_000], 300, 4_000
    else:
        levels, window, other = [10_000, 100_000, 1_000_000], 5_000, 1_000_000
    async with common.environment() as env:
        scenarios = await due_levels(env, levels, window, args.reps)
        scenarios.append(await mixed(env, levels[0], other, window, args.reps))
    first, last = scenarios[0], scenarios[len(levels) - 1]
    return {
        "bench": "backlog",
        "window_deliveries": window,
        "endpoints": ENDPOINTS,
        "slowdown_largest_vs_smallest": round(first["rate_per_s"] / last["rate_per_s"], 3),
        "target_slowdown_max": 1.5,
        "rss_mb_largest": last["daemon_peak_rss_mb"],
        "target_rss_mb_max": 200,
        "scenarios": scenarios,
    }


if __name__ == "__main__":
    common.run(main, common.arguments(__doc__.splitlines()[0]).parse_args())
