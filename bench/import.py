"""Bulk import: `webhookd endpoint import FILE --json` of 100,000 endpoints into a fresh
database, the real executable, with WEBHOOKD_SECRET_KEYS set (every secret and header value
sealed). The file mixes the fields: tenants, event types, rates and bursts, headers, hex-HMAC
secrets given, retry schedules and timeouts, ids given; the rest generated. Wall time from
starting the process to its exit (the transaction committed, the JSON printed); target: under
60 s for 100,000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import common

from daemon.secretbox import generate_key

TARGET_S = 60.0


def line(i: int) -> dict[str, Any]:
    """Endpoint `i`: about what an operator moving from another system would give."""
    endpoint: dict[str, Any] = {
        "url": f"https://hooks-{i % 977}.example.com/webhooks/{i}",
        "tenant": f"tenant-{i % 1000}",
        "event_types": ["invoice.paid", "invoice.created"] if i % 2 else [],
    }
    if i % 10 == 0:
        endpoint |= {"rate": "10/s", "burst": 20}
    if i % 7 == 0:
        endpoint["headers"] = {"Authorization": f"Bearer token-{i:08d}"}
    if i % 13 == 0:
        endpoint |= {"signature": "hmac-sha256-hex:X-Signature:sha256=", "secret": f"s-{i:08d}"}
    if i % 17 == 0:
        endpoint |= {"timeout": "10s", "retry_schedule": "5s,1m,10m,1h"}
    if i % 50 == 0:
        endpoint["id"] = f"ep_imported_{i:08d}"
    return endpoint


def write_file(path: Path, count: int) -> None:
    with path.open("w") as out:
        for i in range(count):
            out.write(json.dumps(line(i), separators=(",", ":")) + "\n")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def import_once(pg: common.Postgres, dsn: str, path: Path, workdir: Path) -> dict[str, Any]:
    """One `webhookd endpoint import`, timed from start to exit, with the CPU it and
    PostgreSQL used, and what else kept the machine busy meanwhile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
    env |= {"WEBHOOKD_DATABASE_URL": dsn, "WEBHOOKD_SECRET_KEYS": generate_key()}
    script = common.BIN / "webhookd"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "daemon"]
    out_path = workdir / "import.json"
    busy0, pg0, cli0, own0 = common.machine_busy_s(), pg.cpu_s(), children_cpu_s(), own_cpu_s()
    started = time.monotonic()
    with out_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            *("endpoint", "import", str(path), "--json"),
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
    wall_s = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"endpoint import failed: {err.decode(errors='replace')[-2000:]}")
    cli_cpu_s = children_cpu_s() - cli0
    pg1 = pg.cpu_s()
    pg_cpu_s = None if pg1 is None or pg0 is None else pg1 - pg0
    ours = cli_cpu_s + (pg_cpu_s or 0.0) + own_cpu_s() - own0
    return {
        "import_s": wall_s,
        "cli_cpu_s": cli_cpu_s,
        "pg_cpu_s": pg_cpu_s,
        "foreign_cores": max(0.0, (common.machine_busy_s() - busy0 - ours) / wall_s),
        "printed": len(json.loads(out_path.read_bytes())),
    }


def own_cpu_s() -> float:
    return time.process_time()


async def counts(dsn: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM webhookd.endpoints) AS endpoints,"
            " (SELECT count(*) FROM webhookd.endpoint_state) AS states,"
            " (SELECT count(*) FROM webhookd.endpoints WHERE secret LIKE 'enc:v1:%') AS sealed"
        )
        assert row is not None
        return int(row["endpoints"]), int(row["states"]), int(row["sealed"])
    finally:
        await conn.close()


async def one_rep(env: common.Env, path: Path, count: int) -> dict[str, Any]:
    async with env.postgres.fresh_database() as dsn:
        await common.wait_quiet()
        run = await import_once(env.postgres, dsn, path, env.workdir)
        endpoints, states, sealed = await counts(dsn)
    if not endpoints == states == sealed == run["printed"] == count:
        raise RuntimeError(f"imported {endpoints}/{states}/{sealed}/{run['printed']} of {count}")
    run["endpoints_per_s"] = count / run["import_s"]
    return run


FIGURES = ["import_s", "endpoints_per_s", "cli_cpu_s", "pg_cpu_s", "foreign_cores"]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    count = 2_000 if args.quick else 100_000
    async with common.environment() as env:
        path = env.workdir / "endpoints.jsonl"
        write_file(path, count)
        runs = []
        for rep in range(args.reps):
            run = await one_rep(env, path, count)
            common.note(
                f"rep {rep + 1}: {count} endpoints in {run['import_s']:.1f}s"
                f" ({run['endpoints_per_s']:.0f}/s), CLI CPU {run['cli_cpu_s']:.1f}s"
            )
            runs.append(run)
    return {
        "bench": "import",
        "endpoints": count,
        **common.medians(runs, FIGURES),
        "target_s": TARGET_S if count == 100_000 else None,
        "runs": [common.medians([r], ["import_s", "cli_cpu_s", "pg_cpu_s"]) for r in runs],
    }


if __name__ == "__main__":
    common.run(main, common.arguments(__doc__.splitlines()[0]).parse_args())
