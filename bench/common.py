"""Shared machinery for the benchmarks: the command line, the workload (endpoints, messages),
the bare aiohttp client, and the one JSON line each script prints on stdout (progress goes to
stderr). The processes (PostgreSQL, receiver, daemon) live in `procs` and are re-exported.

PostgreSQL is `WEBHOOKD_BENCH_DATABASE_URL` (a role that may CREATE DATABASE) or a throwaway
server from the embedded wheel with durability off (`fsync=off`, `synchronous_commit=off`,
as in the test suite), so figures measure webhookd rather than this machine's disk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import procs
import uvloop
from procs import (
    BENCH_DIR,
    BIN,
    CONCURRENCY,
    DATABASE_URL_ENV,
    REPO,
    Busy,
    Daemon,
    Env,
    Postgres,
    Receiver,
    admin,
    dsn_with_database,
    environment,
    machine_busy_s,
    note,
    peak_rss_bytes,
    process_cpu_s,
    spawn,
    tail,
    terminate,
    wait_quiet,
)

from daemon import __version__, sql
from daemon.endpoints import EndpointSpec, add_endpoint
from daemon.logs import configure_logging
from daemon.signing import StandardSigner, generate_secret
from daemon.store import Store

__all__ = [
    "BENCH_DIR",
    "BIN",
    "CONCURRENCY",
    "DATABASE_URL_ENV",
    "REPO",
    "Busy",
    "Daemon",
    "Env",
    "Postgres",
    "Receiver",
    "admin",
    "dsn_with_database",
    "environment",
    "machine_busy_s",
    "note",
    "peak_rss_bytes",
    "process_cpu_s",
    "spawn",
    "tail",
    "terminate",
    "wait_quiet",
]

PAYLOAD_BYTES = 1024
# `{"pad": "<pad>", "seq": N}` is how PostgreSQL prints the jsonb we insert; the pad makes
# the body ~1 KiB whatever N is (to within its digits).
PAD = secrets.token_hex(PAYLOAD_BYTES)[: PAYLOAD_BYTES - len('{"pad": "", "seq": 00000}')]


# -- output -------------------------------------------------------------------------------------


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def medians(runs: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """The median of each figure over the repetitions, rounded for reading."""
    return {k: _round(median([r.get(k) for r in runs])) for k in keys}


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    if abs(value) >= 100:
        return round(value, 1)
    return round(value, 4)


def rate_per_s(stamps_ns: Sequence[int]) -> float | None:
    """Arrivals per second from the first to the last arrival."""
    if len(stamps_ns) < 2:
        return None
    span_ns = max(stamps_ns) - min(stamps_ns)
    return (len(stamps_ns) - 1) * 1e9 / span_ns if span_ns > 0 else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- command line -------------------------------------------------------------------------------


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny workload, a few seconds")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, 1 with --quick)")
    return parser


def run(main: Callable[[argparse.Namespace], Awaitable[dict[str, Any]]], args: Any) -> None:
    """Parse, run `main` under uvloop, print its figures as one JSON line."""
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.quick:
        procs.QUIET_MAX_S = 0.0
    configure_logging("warning", "console", sys.stderr)  # the embedded server logs at info

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        # SIGTERM (a smoke-test timeout) unwinds like Ctrl-C, so the servers are stopped.
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await main(args)

    started = time.monotonic()
    result = uvloop.run(guarded())
    result.setdefault("quick", args.quick)
    result.setdefault("reps", args.reps)
    result["wall_s"] = round(time.monotonic() - started, 1)
    emit(result)


# -- workload -----------------------------------------------------------------------------------


async def add_endpoints(dsn: str, urls: Sequence[str], **spec: Any) -> list[str]:
    """Endpoints `ep_0000`, `ep_0001`, ... (index = the receiver's hook number), made with
    the same code as `webhookd endpoint add`."""
    store = await Store.connect(dsn, min_size=1, max_size=1)
    try:
        ids = []
        for i, url in enumerate(urls):
            endpoint_id, _ = await add_endpoint(
                store, EndpointSpec(url=url, id=f"ep_{i:04d}", **spec), allow_http=True
            )
            ids.append(endpoint_id)
        return ids
    finally:
        await store.close()


ENQUEUE = """
INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, deliver_after)
SELECT ($1::text[])[1 + (g % cardinality($1::text[]))], 'bench.event',
       jsonb_build_object('seq', g, 'pad', $2::text),
       CASE WHEN $5::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $5) END
FROM generate_series($3::bigint, $4::bigint) AS g
"""


async def enqueue(
    dsn: str,
    endpoint_ids: Sequence[str],
    count: int,
    *,
    first_seq: int = 0,
    deliver_in_s: float | None = None,
    chunk: int = 100_000,
) -> None:
    """`count` messages, round-robin over the endpoints, each ~1 KiB, with one
    INSERT ... SELECT generate_series per chunk (the statement trigger fans them out)."""
    conn = await asyncpg.connect(dsn)
    try:
        for start in range(first_seq, first_seq + count, chunk):
            end = min(start + chunk, first_seq + count) - 1
            await conn.execute(ENQUEUE, list(endpoint_ids), PAD, start, end, deliver_in_s)
    finally:
        await conn.close()


async def vacuum_analyze(dsn: str) -> None:
    """After a bulk load, as autovacuum would have done by the time such a backlog built up."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE webhookd.outbox, webhookd.deliveries")
    finally:
        await conn.close()


async def count_status(dsn: str, status: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value = await conn.fetchval(
            "SELECT count(*) FROM webhookd.deliveries WHERE status = $1", status
        )
        return int(value)
    finally:
        await conn.close()


async def wait_status(dsn: str, status: str, count: int, timeout_s: float) -> None:
    """Until `count` deliveries have `status` (outcomes are written in batches, a little
    after the last arrival)."""
    deadline = time.monotonic() + timeout_s
    while (n := await count_status(dsn, status)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} of {count} deliveries {status} after {timeout_s:.0f}s")
        await asyncio.sleep(0.05)


def sample_body(seq: int = 0) -> bytes:
    """A body exactly as the daemon sends one (PostgreSQL's jsonb text form)."""
    return json.dumps({"pad": PAD, "seq": seq}).encode()


def signed_headers(body: bytes) -> dict[str, str]:
    """The headers of a signed delivery, computed once: the ceiling client sends the same
    bytes the daemon does, without doing the daemon's work."""
    signer = StandardSigner([generate_secret()])
    headers = {"Content-Type": "application/json", "User-Agent": f"webhookd/{__version__}"}
    headers.update(signer.headers("msg_" + secrets.token_hex(16), int(time.time()), body))
    return headers


async def bare_client(
    urls: Sequence[str],
    requests: int,
    *,
    concurrency: int = CONCURRENCY,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """One aiohttp session, exactly `concurrency` requests in flight, the same signed-size
    body and headers each time, to `urls` round-robin. Runs in this process (uvloop)."""
    body = sample_body()
    headers = signed_headers(body)
    errors = 0
    work = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=0)
    cpu0, t0 = time.process_time(), time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            for i in work:  # shared: each coroutine takes the next request number
                async with session.post(urls[i % len(urls)], data=body, headers=headers) as r:
                    await r.read()
                    errors += r.status != 200

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout_s)
    return {
        "client_s": time.perf_counter() - t0,
        "client_cpu_s": time.process_time() - cpu0,
        "errors": errors,
        "body_bytes": len(body),
    }


async def ceiling_run(env: Env, urls: Sequence[str], requests: int) -> dict[str, Any]:
    """The bare client against the receiver; rate from first to last arrival."""
    await env.receiver.reset()
    receiver_cpu0 = process_cpu_s(env.receiver.pid)
    busy = Busy(lambda: [env.receiver.pid], env.pg)
    client = await bare_client(urls, requests)
    stats = await env.receiver.wait_count(requests, 30)
    receiver_cpu = process_cpu_s(env.receiver.pid) - receiver_cpu0
    foreign = busy.foreign_cores()
    span_s = (stats["last_ns"] - stats["first_ns"]) / 1e9
    return {
        "rate_per_s": (stats["count"] - 1) / span_s,
        "client_cpu_s_per_1k": client["client_cpu_s"] / requests * 1000,
        "receiver_cpu_s_per_1k": receiver_cpu / requests * 1000,
        "foreign_cores": foreign,
        "errors": client["errors"],
        "body_bytes": client["body_bytes"],
    }


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "webhookd": __version__,
    }


def claim_args(**overrides: Any) -> list[Any]:
    """The claim statement's arguments as a daemon with nothing in flight sends them (100 at
    most, 10 per endpoint), with `overrides` by parameter name."""
    params: dict[str, Any] = {
        "limit": 100,
        "max_endpoints": 100,
        "default_quota": 10,
        "local_ids": [],
        "local_quotas": [],
        "default_rate_per_s": None,
        "default_burst": 0,
        "default_timeout_s": 30.0,
        "lease_margin_s": 30.0,
        "dead_letters_block": False,
        "instance": "bench",
        "max_payload_bytes": 1 << 20,
        "free_slots": 10,
        "hold_limit": 256,
        "only_endpoint_id": None,
    }
    return sql.queries()["claim"].args(params | overrides)
