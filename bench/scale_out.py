"""Scale-out: the throughput workload (50,000 messages, 100 endpoints, signing on, attempts
recorded) through one `webhookd run` with concurrency 10, then through two sharing the
database with concurrency 5 each (10 in flight in all), each against the bare client's ceiling
measured in the same repetition. Not a target of its own: how far a second process goes where
one process is bound by its single core.
"""

from __future__ import annotations

import argparse
from typing import Any

import common
import throughput

HALF = {"WEBHOOKD_DELIVERY_CONCURRENCY": str(common.CONCURRENCY // 2)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    messages = 2_000 if args.quick else 50_000
    async with common.environment() as env:
        urls = [env.receiver.url(i) for i in range(throughput.ENDPOINTS)]
        await common.ceiling_run(env, urls, 500)  # warm-up, not counted
        runs = []
        for rep in range(args.reps):
            one = await throughput.one_rep(env, messages, [{}])
            two = await throughput.one_rep(env, messages, [HALF, HALF])
            run = {
                "one_rate_per_s": one["rate_per_s"],
                "one_ratio_to_ceiling": one["ratio_to_ceiling"],
                "two_rate_per_s": two["rate_per_s"],
                "two_ratio_to_ceiling": two["ratio_to_ceiling"],
                "two_vs_one": two["rate_per_s"] / one["rate_per_s"],
                "two_daemon_cpu_s_per_1k": two["daemon_cpu_s_per_1k"],
                "two_pg_cpu_s_per_1k": two["pg_cpu_s_per_1k"],
                "foreign_cores": max(one["foreign_cores"], two["foreign_cores"]),
                "duplicates": one["duplicates"] + two["duplicates"],
            }
            common.note(
                f"rep {rep + 1}: one {run['one_rate_per_s']:.0f}/s "
                f"({run['one_ratio_to_ceiling']:.3f}), two {run['two_rate_per_s']:.0f}/s "
                f"({run['two_ratio_to_ceiling']:.3f})"
            )
            runs.append(run)
    figures = [k for k in runs[0] if k != "duplicates"]
    return {
        "bench": "scale_out",
        "messages": messages,
        "endpoints": throughput.ENDPOINTS,
        "concurrency_total": common.CONCURRENCY,
        **common.medians(runs, figures),
        "duplicates": sum(r["duplicates"] for r in runs),
        "runs": [common.medians([r], figures) for r in runs],
    }


if __name__ == "__main__":
    common.run(main, common.arguments(__doc__.splitlines()[0]).parse_args())
