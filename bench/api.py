"""The management API (`webhookd api`): POST /msg with 10 and 100 concurrent clients while a
daemon delivers what they create, and listing an endpoint's attempts with 1M of them stored.

POST /msg: each client posts ~1 KiB messages back to back over one keep-alive connection for
a fixed time (the app has one endpoint, on the receiver; a `webhookd run` delivers meanwhile).
Figures per concurrency: messages/s accepted (202) and request latency p50/p99 (client clock,
request sent to response read), then that every one of them was delivered.

Attempts: 1,000,000 attempts of one endpoint loaded with INSERT ... SELECT generate_series
(10,000 deliveries, 100 attempts each), VACUUM ANALYZE, then GET
/api/v1/app/{app}/attempt/endpoint/{ep}?limit=50 for 200 pages following the iterator from
the newest, and 200 pages starting at random depths: per-page latency p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import time
from typing import Any

import aiohttp
import asyncpg
import common
import orjson

from daemon.api import pages

TARGET_RATE = 1500.0
TARGET_POST_P99_MS = 50.0
TARGET_PAGE_P99_MS = 20.0
LOAD_ATTEMPTS = """
WITH msgs AS (
    INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, created_at)
    SELECT $1, 'bench.event', '{}'::jsonb, now() - make_interval(secs => $2 - g)
    FROM generate_series(1, $2::int) g
    RETURNING id, created_at
)
SELECT count(*) FROM msgs
"""
ATTEMPTS = """
INSERT INTO webhookd.attempts (delivery_id, endpoint_id, attempt, started_at, duration_ms,
                               status_code, error_class, response_body, instance)
SELECT d.id, $1, a, d.created_at + make_interval(secs => a), 12.5,
       CASE WHEN a % 10 = 0 THEN 500 ELSE 200 END,
       CASE WHEN a % 10 = 0 THEN 'http_500' END, 'ok'::bytea, 'bench'
FROM webhookd.deliveries d, generate_series(1, $2::int) a
WHERE d.endpoint_id = $1
"""


class ApiProcess(common.Daemon):
    """A real `webhookd api --migrate` process, ready at READY=1 (it listens by then)."""

    def __init__(self, dsn: str, env: common.Env, port: int) -> None:
        listen = {
            "WEBHOOKD_API_LISTEN": f"127.0.0.1:{port}",
            "WEBHOOKD_API_METRICS_LISTEN": "127.0.0.1:0",
        }
        super().__init__(dsn, env.workdir, listen)

    def command(self) -> list[str]:
        return [*super().command()[:-2], "api", "--migrate"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _token(dsn: str) -> str:
    from daemon.api import tokens
    from daemon.store import Store

    store = await Store.connect(dsn, max_size=1)
    try:
        return (await tokens.create_token(store, "admin")).token
    finally:
        await store.close()


async def _post_load(
    url: str, token: str, clients: int, duration_s: float, seq: list[int]
) -> tuple[int, list[float]]:
    """`clients` loops posting messages until `duration_s` is up: (accepted, latencies ms)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    accepted = 0
    deadline = time.monotonic() + duration_s
    connector = aiohttp.TCPConnector(limit=clients)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        while time.monotonic() < deadline:
            seq[0] += 1
            payload = {"pad": common.PAD, "seq": seq[0]}
            body = orjson.dumps({"eventType": "bench.event", "payload": payload})
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 202:
                    raise RuntimeError(f"POST /msg answered {resp.status}")
            latencies.append((time.perf_counter() - started) * 1000)
            accepted += 1

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return accepted, latencies


async def _post_phase(
    env: common.Env, dsn: str, base: str, token: str, levels: list[int], duration_s: float
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {token}"}
        for path, body in (
            ("/api/v1/app", {"name": "bench", "uid": "bench"}),
            ("/api/v1/app/bench/endpoint", {"url": env.receiver.url(0)}),
        ):
            async with session.post(base + path, json=body, headers=headers) as resp:
                assert resp.status == 201, await resp.text()
    await env.receiver.reset()
    daemon = common.Daemon(dsn, env.workdir)
    await daemon.start()
    seq = [0]
    total = 0
    try:
        url = base + "/api/v1/app/bench/msg"
        await _post_load(url, token, 10, 1.0, seq)  # warm up: pools, caches, connections
        total = seq[0]
        for clients in levels:
            await common.wait_quiet(10)
            started = time.monotonic()
            accepted, latencies = await _post_load(url, token, clients, duration_s, seq)
            elapsed = time.monotonic() - started
            total += accepted
            out[f"msg_rate_c{clients}"] = accepted / elapsed
            out[f"msg_p50_ms_c{clients}"] = common.percentile(latencies, 50)
            out[f"msg_p99_ms_c{clients}"] = common.percentile(latencies, 99)
            p50, p99 = out[f"msg_p50_ms_c{clients}"], out[f"msg_p99_ms_c{clients}"]
            common.note(
                f"{clients} clients: {accepted / elapsed:.0f} msg/s, p50 {p50:.1f} ms,"
                f" p99 {p99:.1f} ms"
            )
        started = time.monotonic()
        await env.receiver.wait_count(total, 300, alive=daemon.check_alive)
        out["delivered_all"] = True
        out["delivery_drain_s"] = time.monotonic() - started
    finally:
        await daemon.stop()
    return out


async def _load_attempts(dsn: str, endpoint_id: str, attempts: int) -> None:
    per_delivery = 100
    conn = await asyncpg.connect(dsn)
    try:
        await conn.fetchval(LOAD_ATTEMPTS, endpoint_id, max(1, attempts // per_delivery))
        await conn.execute(
            "UPDATE webhookd.deliveries SET status = 'delivered' WHERE endpoint_id = $1",
            endpoint_id,
        )
        await conn.execute(ATTEMPTS, endpoint_id, per_delivery)
        await conn.execute("VACUUM ANALYZE webhookd.attempts, webhookd.deliveries")
    finally:
        await conn.close()


async def _page_phase(
    dsn: str, base: str, token: str, attempts: int, pages_n: int
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(base + "/api/v1/app", json={"name": "big", "uid": "big"}) as r:
            assert r.status == 201
        async with session.post(base + "/api/v1/app/big/endpoint",
                                json={"url": "https://example.com/big"}) as r:  # fmt: skip
            endpoint_id = (await r.json())["id"]
        started = time.monotonic()
        await _load_attempts(dsn, endpoint_id, attempts)
        common.note(f"{attempts} attempts loaded in {time.monotonic() - started:.1f}s")
        url = f"{base}/api/v1/app/big/attempt/endpoint/{endpoint_id}?limit=50"

        async def timed(query: str) -> tuple[float, Any]:
            began = time.perf_counter()
            async with session.get(url + query) as resp:
                body = await resp.json()
                assert resp.status == 200, body
            return (time.perf_counter() - began) * 1000, body

        await timed("")  # warm up
        sequential: list[float] = []
        iterator = ""
        for _ in range(pages_n):
            ms, body = await timed(f"&iterator={iterator}" if iterator else "")
            sequential.append(ms)
            assert len(body["data"]) == 50
            iterator = body["iterator"]
        conn = await asyncpg.connect(dsn)
        try:
            lo, hi = await conn.fetchrow(
                "SELECT min(started_at), max(started_at) FROM webhookd.attempts"
                " WHERE endpoint_id = $1", endpoint_id)  # fmt: skip
        finally:
            await conn.close()
        rng = random.Random(7)
        randomly: list[float] = []
        span = (hi - lo).total_seconds()
        for _ in range(pages_n):
            at = lo + (hi - lo) * rng.random() if span else hi
            ms, _ = await timed(f"&iterator={pages.encode_time(at, 10**17)}")
            randomly.append(ms)
    return {
        "attempts_stored": attempts,
        "page_p50_ms": common.percentile(sequential, 50),
        "page_p99_ms": common.percentile(sequential, 99),
        "random_page_p50_ms": common.percentile(randomly, 50),
        "random_page_p99_ms": common.percentile(randomly, 99),
    }


async def one_rep(env: common.Env, args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    async with env.postgres.fresh_database() as dsn:
        token = await _token(dsn)
        port = _free_port()
        api = ApiProcess(dsn, env, port)
        await api.start()
        base = f"http://127.0.0.1:{port}"
        try:
            busy = common.Busy(lambda: [api.pid, env.receiver.pid], env.pg)
            post = await _post_phase(env, dsn, base, token, [10, 100], 1.0 if quick else 10.0)
            listed = await _page_phase(
                dsn, base, token, 20_000 if quick else 1_000_000, 20 if quick else 200
            )
            foreign = busy.foreign_cores()
        finally:
            await api.stop()
    return {**post, **listed, "foreign_cores": foreign}


FIGURES = [
    "msg_rate_c10", "msg_p50_ms_c10", "msg_p99_ms_c10",
    "msg_rate_c100", "msg_p50_ms_c100", "msg_p99_ms_c100",
    "delivery_drain_s", "page_p50_ms", "page_p99_ms", "random_page_p50_ms",
    "random_page_p99_ms", "foreign_cores",
]  # fmt: skip


async def main(args: argparse.Namespace) -> dict[str, Any]:
    async with common.environment() as env:
        runs = [await one_rep(env, args) for _ in range(args.reps)]
    return {
        "bench": "api",
        **common.medians(runs, FIGURES),
        "attempts_stored": runs[0]["attempts_stored"],
        "delivered_all": all(r["delivered_all"] for r in runs),
        "target_msg_rate": TARGET_RATE,
        "target_msg_p99_ms": TARGET_POST_P99_MS,
        "target_page_p99_ms": TARGET_PAGE_P99_MS,
        "runs": [
            common.medians([r], ["msg_rate_c10", "msg_rate_c100", "page_p99_ms"]) for r in runs
        ],
    }


if __name__ == "__main__":
    common.run(main, common.arguments(__doc__.splitlines()[0]).parse_args())
