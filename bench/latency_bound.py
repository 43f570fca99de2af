"""Latency-bound: the receiver takes 50 ms to answer and the cap is 10 in flight, so at best
10 / 0.05 s = 200 deliveries/s. The daemon's rate against the bare client's at the same
delay, same receiver, same repetition: what the claim/record pipeline costs when the
network, not the CPU, is the limit.
"""

from __future__ import annotations

import argparse
from typing import Any

import common
import throughput

DELAY_MS = 50.0


async def one_rep(env: common.Env, messages: int) -> dict[str, Any]:
    urls = [env.receiver.url(i) for i in range(throughput.ENDPOINTS)]
    async with env.postgres.fresh_database() as dsn:
        await throughput.load(dsn, urls, messages)
        await common.wait_quiet()
        bare = await common.ceiling_run(env, urls, messages)
        run = await throughput.deliver_all(env, dsn, messages)
    return {
        "rate_per_s": run["rate_per_s"],
        "bare_rate_per_s": bare["rate_per_s"],
        "ratio": run["rate_per_s"] / bare["rate_per_s"],
        "ideal_rate_per_s": common.CONCURRENCY / (DELAY_MS / 1000),
        "daemon_cpu_s_per_1k": run["daemon_cpu_s_per_1k"],
        "foreign_cores": max(run["foreign_cores"], bare["foreign_cores"]),
    }


FIGURES = ["rate_per_s", "bare_rate_per_s", "ratio", "daemon_cpu_s_per_1k", "foreign_cores"]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    messages = 200 if args.quick else 2_000
    async with common.environment(delay_ms=DELAY_MS) as env:
        runs = []
        for rep in range(args.reps):
            run = await one_rep(env, messages)
            common.note(
                f"rep {rep + 1}: {run['rate_per_s']:.1f}/s vs bare "
                f"{run['bare_rate_per_s']:.1f}/s, ratio {run['ratio']:.4f}"
            )
            runs.append(run)
    return {
        "bench": "latency_bound",
        "messages": messages,
        "delay_ms": DELAY_MS,
        "concurrency": common.CONCURRENCY,
        "ideal_rate_per_s": common.CONCURRENCY / (DELAY_MS / 1000),
        **common.medians(runs, FIGURES),
        "target_ratio": 0.99,
        "runs": [common.medians([r], FIGURES[:3]) for r in runs],
    }


if __name__ == "__main__":
    common.run(main, common.arguments(__doc__.splitlines()[0]).parse_args())
