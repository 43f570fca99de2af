"""What renewed, fenced leases cost: throughput (20,000 messages over 100 endpoints, as
throughput.py) and wake-up (single inserts, as wakeup.py), with the daemon of the commit that
brought them and of the commit before it, alternating in the same run on the same schema.
Both with `outbox.lease_margin = 1s`, the shortest allowed: a renewal every third of a second,
the most the heartbeat can cost (at the default 30 s margin it runs every 10 s).

    .venv/bin/python bench/leases.py [--before DIR --after DIR] [--quick] [--reps N]

DIR: checkouts; by default the two commits are exported with `git archive` (6f2a113, the
last without renewed leases, and b6971f5, which brought them). The daemon runs from each
with PYTHONPATH=DIR.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import common
import throughput
import wakeup

SETTINGS = {"WEBHOOKD_OUTBOX_LEASE_MARGIN": "1s", "WEBHOOKD_LOG_LEVEL": "warning"}
BEFORE, AFTER = "6f2a113", "b6971f5"


def export(commit: str) -> str:
    """The daemon of `commit`, exported from this repository into a temporary directory."""
    target = Path(tempfile.mkdtemp(prefix=f"webhookd-{commit}-"))
    archive = subprocess.run(
        ["git", "archive", commit, "daemon"], cwd=common.REPO, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return str(target)


def daemon_of(tree: str) -> tuple[dict[str, str], list[str]]:
    return {**SETTINGS, "PYTHONPATH": tree}, [sys.executable, "-m", "daemon"]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    messages = 2_000 if args.quick else 20_000
    wakeups = 30 if args.quick else 300
    trees = {"before": args.before, "after": args.after}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    async with common.environment() as env:
        urls = [env.receiver.url(i) for i in range(throughput.ENDPOINTS)]
        await common.ceiling_run(env, urls, 500)  # warm-up, not counted
        for rep in range(args.reps):
            for name, tree in trees.items():
                extra, program = daemon_of(tree)
                await common.wait_quiet()
                run = await throughput.one_rep(env, messages, [extra], program)
                woke = await wakeup.one_rep(env, rep, wakeups, extra, program)
                run |= {"wakeup_p50_ms": woke["p50_ms"], "wakeup_p99_ms": woke["p99_ms"]}
                common.note(
                    f"rep {rep + 1} {name}: {run['rate_per_s']:.0f}/s "
                    f"({run['ratio_to_ceiling']:.3f} of ceiling), daemon "
                    f"{run['daemon_cpu_s_per_1k']:.3f} CPU s/1k, PostgreSQL "
                    f"{run['pg_cpu_s_per_1k'] or 0:.3f}, wake p50 {run['wakeup_p50_ms']:.2f} ms"
                )
                runs[name].append(run)
    figures = [
        "rate_per_s",
        "ratio_to_ceiling",
        "daemon_cpu_s_per_1k",
        "pg_cpu_s_per_1k",
        "wakeup_p50_ms",
        "wakeup_p99_ms",
        "foreign_cores",
    ]
    before, after = (common.medians(runs[n], figures) for n in ("before", "after"))
    return {
        "bench": "leases",
        "messages": messages,
        "lease_margin": "1s",
        "before": before,
        "after": after,
        "rate_after_vs_before": round(after["rate_per_s"] / before["rate_per_s"], 3),
        "daemon_cpu_after_vs_before": round(
            after["daemon_cpu_s_per_1k"] / before["daemon_cpu_s_per_1k"], 3
        ),
        "duplicates": sum(r["duplicates"] for rs in runs.values() for r in rs),
    }


if __name__ == "__main__":
    parser = common.arguments(__doc__.splitlines()[0])
    parser.add_argument("--before", help=f"checkout without renewed leases (default {BEFORE})")
    parser.add_argument("--after", help=f"checkout with them (default {AFTER})")
    parsed = parser.parse_args()
    parsed.before = str(Path(parsed.before).resolve()) if parsed.before else export(BEFORE)
    parsed.after = str(Path(parsed.after).resolve()) if parsed.after else export(AFTER)
    common.run(main, parsed)
