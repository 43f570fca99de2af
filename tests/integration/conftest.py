"""Real parts for integration tests: loopback receivers, endpoints, and an in-process daemon."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import pytest_asyncio
import trustme
from aiohttp import web

from daemon.config import Config
from daemon.endpoints import EndpointSpec, add_endpoint
from daemon.service import Service
from daemon.store import Store
from tests.cli_support import Cli


@dataclass
class Hit:
    """One request as the receiver saw it."""

    path: str
    at: float  # time.monotonic() on arrival
    headers: dict[str, str]
    body: bytes


Responder = Callable[["Hit", int], Awaitable[web.StreamResponse] | web.StreamResponse]


@dataclass
class Receiver:
    """An aiohttp server on 127.0.0.1 that records every request and answers per path."""

    base_url: str = ""
    hits: list[Hit] = field(default_factory=list)
    responders: dict[str, Responder] = field(default_factory=dict)
    delays_s: dict[str, float] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return self.base_url + path

    def on(self, path: str, responder: Responder) -> None:
        self.responders[path] = responder

    def slow(self, path: str, delay_s: float) -> None:
        self.delays_s[path] = delay_s

    def at(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]

    async def wait_hits(self, count: int, path: str | None = None, timeout_s: float = 10) -> None:
        async def enough() -> bool:
            return len(self.at(path) if path else self.hits) >= count

        await wait_until(enough, timeout_s, f"{count} hits on {path or 'any path'}")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        hit = Hit(request.path, time.monotonic(), dict(request.headers), await request.read())
        self.hits.append(hit)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = self.delays_s.get(request.path, 0.0)
            if delay:
                await asyncio.sleep(delay)
            responder = self.responders.get(request.path)
            if responder is None:
                return web.Response(text="ok")
            reply = responder(hit, len(self.at(request.path)))
            return await reply if asyncio.iscoroutine(reply) else reply  # type: ignore[return-value]
        finally:
            self.in_flight -= 1
            self.changed.set()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.base_url = f"http://127.0.0.1:{port}"
    yield rec
    await runner.cleanup()


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 10, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


def daemon_config(dsn: str, **sections: dict[str, Any]) -> Config:
    """Defaults tuned for tests: loopback allowed, short timeouts, no jitter, metrics on port 0."""
    base: dict[str, dict[str, Any]] = {
        "database": {"url": dsn, "pool_max_size": 5},
        "outbox": {
            "poll_interval_s": 0.2,
            "lease_margin_s": 2.0,
            "instance_id": f"test-{secrets.token_hex(3)}",
        },
        "delivery": {
            "allow_insecure_http": True,
            "allow_private_networks": True,
            "timeout_s": 2.0,
            "retry_jitter": 0.0,
            "retry_schedule_s": (0.2, 0.2),
            "drain_timeout_s": 2.0,
        },
        "metrics": {"listen_port": 0},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return Config().with_overrides(**base)


async def claim(
    store: Store,
    ids: list[str],
    counts: list[int],
    limit: int,
    lease_s: float,
    instance: str,
    **params: Any,
) -> list[asyncpg.Record]:
    """The claim statement, as a daemon of `instance` with quotas `counts` for endpoints `ids`
    and none for any other, leasing for `lease_s`; wakes are folded in first. `params`
    override the claim's other parameters."""
    await store.fetchval("absorb_wakes", limit=100_000)
    args: dict[str, Any] = {
        "limit": limit,
        "max_endpoints": max(limit, len(ids)),
        "default_quota": 0,
        "local_ids": ids,
        "local_quotas": counts,
        "default_rate_per_s": None,
        "default_burst": 0,
        "default_timeout_s": lease_s,
        "lease_margin_s": 0.0,
        "dead_letters_block": False,
        "instance": instance,
        "max_payload_bytes": 1 << 20,
        "free_slots": limit,
        "hold_limit": 256,
        "only_endpoint_id": None,
    } | params
    rows: list[asyncpg.Record] = await store.fetch("claim", **args)
    return [r for r in rows if r["id"] is not None]  # not the statistics row


@dataclass
class Harness:
    """Database access for a test: endpoints, enqueueing, reading delivery state."""

    dsn: str
    store: Store
    conn: asyncpg.Connection

    async def endpoint(self, url: str, **spec: Any) -> tuple[str, str]:
        return await add_endpoint(self.store, EndpointSpec(url=url, **spec), allow_http=True)

    async def enqueue(
        self,
        payload: Any = None,
        *,
        endpoint_id: str | None = None,
        event_type: str = "test.event",
        tenant_id: str | None = None,
        msg_id: str | None = None,
    ) -> int:
        body = orjson.dumps(payload if payload is not None else {"n": 1}).decode()
        return int(
            await self.conn.fetchval(
                "INSERT INTO webhookd.outbox (endpoint_id, tenant_id, event_type, payload, msg_id)"
                " VALUES ($1, $2, $3, $4::jsonb, coalesce($5, 'msg_' || md5(random()::text)))"
                " RETURNING id",
                endpoint_id,
                tenant_id,
                event_type,
                body,
                msg_id,
            )
        )

    async def enqueue_many(self, endpoint_id: str, count: int) -> None:
        await self.conn.execute(
            "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload)"
            " SELECT $1, 'test.event', jsonb_build_object('n', g) FROM generate_series(1, $2) g",
            endpoint_id,
            count,
        )

    async def deliveries(self, endpoint_id: str | None = None) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT d.*, o.msg_id FROM webhookd.deliveries d"
            " JOIN webhookd.outbox o ON o.id = d.message_id"
            " WHERE $1::text IS NULL OR d.endpoint_id = $1 ORDER BY d.id",
            endpoint_id,
        )

    async def attempts(self, delivery_id: int | None = None) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT * FROM webhookd.attempts WHERE $1::bigint IS NULL OR delivery_id = $1"
            " ORDER BY id",
            delivery_id,
        )

    async def wait_none_leased(self, endpoint_id: str | None = None, timeout_s: float = 10) -> None:
        """Until no delivery is leased: attempts in flight have finished and their outcomes are
        written, and what was queued has been given back."""

        async def settled() -> bool:
            return all(r["status"] != "delivering" for r in await self.deliveries(endpoint_id))

        await wait_until(settled, timeout_s, "no delivery leased")

    async def sleep_past_grace(self, endpoint_id: str) -> None:
        """Until the endpoint's previous secrets have expired (the grace is wall-clock time,
        stored with the secrets, and checked when an attempt is signed)."""
        grace_end_s = await self.conn.fetchval(
            "SELECT max((p->>'expires_at')::float8) FROM webhookd.endpoints e,"
            " jsonb_array_elements(e.previous_secrets) p WHERE e.id = $1",
            endpoint_id,
        )
        assert grace_end_s is not None, f"endpoint {endpoint_id} has no previous secret"
        await asyncio.sleep(max(0.0, grace_end_s - time.time()) + 0.05)

    async def wait_status(
        self, status: str, count: int, endpoint_id: str | None = None, timeout_s: float = 10
    ) -> list[asyncpg.Record]:
        async def enough() -> bool:
            rows = await self.deliveries(endpoint_id)
            return sum(r["status"] == status for r in rows) >= count

        await wait_until(enough, timeout_s, f"{count} deliveries {status}")
        return [r for r in await self.deliveries(endpoint_id) if r["status"] == status]


@pytest.fixture
def cli(db_dsn: str, tmp_path: Path) -> Cli:
    """The `webhookd` executable against this test's database, with a minimal config file."""
    return Cli(db_dsn, tmp_path)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A certificate authority of the tests' own, for receivers served over TLS."""
    return trustme.CA()


@pytest_asyncio.fixture
async def harness(db_dsn: str) -> AsyncIterator[Harness]:
    store = await Store.connect(db_dsn, max_size=3)
    conn = await asyncpg.connect(db_dsn)
    try:
        yield Harness(db_dsn, store, conn)
    finally:
        await conn.close()
        await store.close()


DaemonFactory = Callable[..., Any]


@pytest_asyncio.fixture
async def run_daemon(db_dsn: str) -> AsyncIterator[DaemonFactory]:
    """`async with run_daemon(delivery={...}) as svc:` runs a daemon for the block."""
    running: list[Service] = []

    @asynccontextmanager
    async def factory(**sections: dict[str, Any]) -> AsyncIterator[Service]:
        service = Service(daemon_config(db_dsn, **sections))
        await service.start()
        running.append(service)
        try:
            yield service
        finally:
            if service in running:
                running.remove(service)
                await service.stop()

    yield factory
    for service in running:
        await service.stop()
