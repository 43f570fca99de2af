"""Noisy neighbours: slow and hanging receivers beside healthy ones, a real `webhookd run`
(concurrency 10, timeout 5 s, the default slow lane).

- With 0, 3 and 20 endpoints that hang past the timeout (a backlog of 50 each): 30 healthy
  endpoints (answering at once) get 20 messages/s, one at a time; their insert-commit to
  arrival lag (p50, p99) and rate; how often each hanging endpoint was attempted (at least once
  per timeout period is the target); then a burst of 1,000 healthy messages whose receiver
  takes 50 ms: the slots they kept busy (rate x 50 ms; target >= 5).
- A slow but healthy endpoint (every answer after 1 s, a backlog of 100): its drain rate alone
  (target >= 4.5/s, i.e. its 5 slots; its first attempt runs alone, as every new endpoint's
  does until it answers), and beside 10 busy healthy endpoints (50 ms each).

    .venv/bin/python bench/noisy.py [--quick] [--hanging 0,3,20] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from typing import Any

import asyncpg
import common

TIMEOUT = "5s"
HEALTHY = 30
SLOW_BACKLOG = 100
SETTINGS = {"WEBHOOKD_DELIVERY_TIMEOUT": TIMEOUT, "WEBHOOKD_LOG_LEVEL": "warning"}
ONE = """
INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, msg_id)
VALUES ($1, 'bench.noisy', $2::jsonb, $3)
"""


def hook(env: common.Env, n: int, delay_ms: int = 0) -> str:
    return env.receiver.url(n) + (f"?delay_ms={delay_ms}" if delay_ms else "")


async def feed(dsn: str, endpoint_ids: list[str], per_s: float, seconds: float) -> dict[str, int]:
    """One message at a time, round-robin; msg_id -> ns its commit was acknowledged."""
    conn = await asyncpg.connect(dsn)
    stamps = {}
    try:
        start, n = time.monotonic(), 0
        while time.monotonic() - start < seconds:
            msg_id = f"msg_feed_{n:06d}"
            await conn.execute(ONE, endpoint_ids[n % len(endpoint_ids)], '{"n": 1}', msg_id)
            stamps[msg_id] = time.time_ns()
            n += 1
            await asyncio.sleep(max(0.0, start + n / per_s - time.monotonic()))
    finally:
        await conn.close()
    return stamps


async def hanging_scenario(env: common.Env, hanging: int, seconds: float) -> dict[str, Any]:
    async with env.postgres.fresh_database() as dsn:
        hung = await common.add_endpoints(
            dsn, [hook(env, 1000 + i, delay_ms=60_000) for i in range(hanging)]
        )
        store_ids = await _healthy(dsn, env, hanging)
        for i, ep_id in enumerate(hung):
            await common.enqueue(dsn, [ep_id], 50, first_seq=10**6 + i * 100)
        await env.receiver.reset()
        daemon = common.Daemon(dsn, env.workdir, SETTINGS)
        await daemon.start()
        try:
            await asyncio.sleep(1.0)  # the hanging ones are claimed first
            stamps = await feed(dsn, store_ids, 20.0, seconds)
            await asyncio.sleep(1.0)
            arrivals = await env.receiver.arrivals()
            # the healthy at work: 1,000 messages to receivers taking 50 ms
            slow_healthy = await _healthy(dsn, env, hanging, delay_ms=50, first=100)
            await env.receiver.reset()
            t0 = time.monotonic()
            await common.enqueue(dsn, slow_healthy, 1000, first_seq=10**8)
            burst = await env.receiver.wait_count(1000, 120, alive=daemon.check_alive)
            burst_s = (burst["last_ns"] - burst["first_ns"]) / 1e9
            common.note(f"burst of 1,000 at 50 ms each took {time.monotonic() - t0:.1f} s")
        finally:
            await daemon.stop()
    arrived = dict(zip(arrivals["msg_id"], arrivals["ns"], strict=True))
    lags = [(arrived[m] - ns) / 1e6 for m, ns in stamps.items() if m in arrived]
    hung_hits = Counter(h for h in arrivals["hook"] if h >= 1000)
    periods = seconds / 5.0
    return {
        "hanging": hanging,
        "healthy_sent": len(stamps),
        "healthy_arrived": len(lags),
        "healthy_p50_ms": common.percentile(lags, 50),
        "healthy_p99_ms": common.percentile(lags, 99),
        "healthy_rate_per_s": len(lags) / seconds,
        "healthy_slots_busy": (burst["count"] - 1) / burst_s * 0.050,
        "hanging_attempts_min": min(hung_hits.values(), default=0) if hanging else None,
        "hanging_attempts_per_timeout_min": (
            min(hung_hits.values(), default=0) / periods if hanging else None
        ),
    }


async def _healthy(
    dsn: str, env: common.Env, hanging: int, delay_ms: int = 0, first: int = 0
) -> list[str]:
    """Healthy endpoints (made after the hanging ones: `add_endpoints` numbers from 0)."""
    conn = await asyncpg.connect(dsn)
    try:
        ids = []
        for i in range(HEALTHY if delay_ms == 0 else 10):
            ep_id = f"ep_ok_{first + i}"
            await conn.execute(
                "INSERT INTO webhookd.endpoints (id, url, secret) VALUES ($1, $2, $3)",
                ep_id,
                hook(env, first + i, delay_ms),
                "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=",
            )
            ids.append(ep_id)
        return ids
    finally:
        await conn.close()


async def slow_but_healthy(env: common.Env, beside_others: bool) -> float:
    """Drain rate of 100 messages to an endpoint answering after 1 s."""
    async with env.postgres.fresh_database() as dsn:
        (slow,) = await common.add_endpoints(dsn, [hook(env, 500, delay_ms=1000)])
        busy = await _healthy(dsn, env, 0, delay_ms=50, first=600) if beside_others else []
        await env.receiver.reset()
        daemon = common.Daemon(dsn, env.workdir, SETTINGS)
        await daemon.start()
        try:
            if busy:
                await common.enqueue(dsn, busy, 3000, first_seq=10**7)
            await common.enqueue(dsn, [slow], SLOW_BACKLOG, first_seq=0)
            deadline = time.monotonic() + 180
            while True:
                arrivals = await env.receiver.arrivals()
                slow_ns = [
                    ns for ns, h in zip(arrivals["ns"], arrivals["hook"], strict=True) if h == 500
                ]
                if len(slow_ns) >= SLOW_BACKLOG or time.monotonic() > deadline:
                    break
                daemon.check_alive()
                await asyncio.sleep(0.5)
        finally:
            await daemon.stop()
    # first arrival to the last one's answer (1 s after it): every answer in that span
    return len(slow_ns) / ((max(slow_ns) - min(slow_ns)) / 1e9 + 1.0)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    seconds = 10.0 if args.quick else args.seconds
    hanging = [0, 3] if args.quick else [int(k) for k in args.hanging.split(",")]
    async with common.environment() as env:
        scenarios = []
        for k in hanging:
            await common.wait_quiet()
            result = await hanging_scenario(env, k, seconds)
            common.note(f"{k} hanging: {result}")
            scenarios.append(result)
        await common.wait_quiet()
        alone = await slow_but_healthy(env, beside_others=False)
        beside = await slow_but_healthy(env, beside_others=True)
        common.note(f"slow but healthy: alone {alone:.2f}/s, beside others {beside:.2f}/s")
    return {
        "bench": "noisy",
        "timeout": TIMEOUT,
        "seconds": seconds,
        "scenarios": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()}
            for s in scenarios
        ],
        "slow_healthy_alone_per_s": round(alone, 2),
        "slow_healthy_beside_per_s": round(beside, 2),
        "targets": {
            "healthy_p99_ms": 1000,
            "healthy_slots_busy": 5,
            "hanging_attempts_per_timeout_min": 1,
            "slow_healthy_alone_per_s": 4.5,
        },
    }


if __name__ == "__main__":
    parser = common.arguments(__doc__.splitlines()[0])
    parser.add_argument("--hanging", default="0,3,20")
    parser.add_argument("--seconds", type=float, default=60.0)
    parsed = parser.parse_args()
    if parsed.reps is None:
        parsed.reps = 1
    common.run(main, parsed)
