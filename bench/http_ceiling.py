"""Reference: the bare aiohttp client (uvloop, one session, exactly 10 in flight) POSTing the
same ~1 KiB body with signature-sized headers to the receiver. No database, no daemon: the
most this machine's client + receiver pair can do, the ceiling the daemon is measured against.
"""

from __future__ import annotations

import argparse
from typing import Any

import common

HOOKS = 100
FIGURES = ["rate_per_s", "client_cpu_s_per_1k", "receiver_cpu_s_per_1k", "foreign_cores"]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    requests = 2_000 if args.quick else 50_000
    async with common.environment(database=False) as env:
        urls = [env.receiver.url(i) for i in range(HOOKS)]
        await common.ceiling_run(env, urls, min(requests, 500))  # warm-up, not counted
        runs = []
        for rep in range(args.reps):
            await common.wait_quiet()
            run = await common.ceiling_run(env, urls, requests)
            common.note(f"rep {rep + 1}: {run['rate_per_s']:.0f} req/s")
            runs.append(run)
    return {
        "bench": "http_ceiling",
        "requests": requests,
        "concurrency": common.CONCURRENCY,
        **common.medians(runs, FIGURES),
        "body_bytes": runs[0]["body_bytes"],
        "errors": sum(r["errors"] for r in runs),
        "runs": [common.medians([r], ["rate_per_s", "foreign_cores"]) for r in runs],
    }


if __name__ == "__main__":
    common.run(main, common.arguments(__doc__.splitlines()[0]).parse_args())
