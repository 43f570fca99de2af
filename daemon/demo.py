"""`webhookd demo`: the whole pipeline on one machine in well under 30 seconds.

A throwaway embedded PostgreSQL in a temporary directory, a loopback receiver standing in for
four customers' endpoints (fast, slow, down for a moment, rate-limited) that checks every
signature, an in-process `Service`, and a burst of messages. `run_demo` hands a `Snapshot` to a
callback several times a second; daemon/demo_view.py draws them and daemon/cli/demo_cmds.py
prints. Nothing here prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from daemon import migrate
from daemon.config import Config
from daemon.demo_receiver import SCENARIO, DemoEndpoint, DemoReceiver
from daemon.endpoints import EndpointSpec, add_endpoint
from daemon.models import SignatureSpec
from daemon.service import Service
from daemon.signing import ED25519, public_key
from daemon.store import Store

RETRY_SCHEDULE_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # the daemon's default starts at 5 s, then 5 min
BREAKER_COOLDOWN_S = 1.0


@dataclass(frozen=True)
class EndpointProgress:
    """One endpoint's line of the live view."""

    endpoint: DemoEndpoint
    total: int = 0
    delivered: int = 0
    waiting: int = 0  # pending, never attempted
    retrying: int = 0  # pending after a failed attempt
    delivering: int = 0  # leased: in flight, or waiting for a slot or a token
    failed: int = 0  # dead letters
    attempts: int = 0
    requests: int = 0  # at the receiver, signatures checked
    in_flight: int = 0  # at the receiver now
    max_in_flight: int = 0  # at the receiver, ever
    rate_per_s: float = 0.0  # requests at the receiver in the last second
    answered_5xx: int = 0
    bad_signatures: int = 0
    breaker: str = "closed"  # closed | open | probing
    average_rate_per_s: float | None = None  # over the whole run, once delivered


@dataclass(frozen=True)
class Snapshot:
    """The state of the demo at one moment."""

    elapsed_s: float
    messages: int
    endpoints: tuple[EndpointProgress, ...]
    metrics_url: str
    endpoint_cap: int  # delivery.endpoint_max_in_flight in effect
    # webhookd's /metrics: `name` (labelled families summed) and `name{label="value"}`
    metrics: Mapping[str, float] = field(default_factory=dict)
    finished: bool = False  # every delivery delivered or dead-lettered
    timed_out: bool = False

    @property
    def delivered(self) -> int:
        return sum(e.delivered for e in self.endpoints)

    @property
    def failed(self) -> int:
        return sum(e.failed for e in self.endpoints)

    @property
    def all_delivered(self) -> bool:
        return self.delivered == self.messages

    def metric(self, name: str) -> float:
        return self.metrics.get(name, 0.0)


@dataclass(frozen=True)
class DemoOptions:
    messages: int = 200
    duration_s: float = 30.0  # deliveries get this long once the burst is enqueued
    refresh_s: float = 0.1


def demo_config(dsn: str) -> Config:
    """Loopback and plain http allowed (the receiver is local), retries and the breaker's
    cool-down in seconds rather than minutes, per-endpoint metrics, /metrics on a free port."""
    return Config().with_overrides(
        database={"url": dsn, "pool_max_size": 4},
        outbox={"poll_interval_s": 0.2, "lease_margin_s": 5.0, "instance_id": "demo"},
        delivery={
            "allow_insecure_http": True,
            "allow_private_networks": True,
            "timeout_s": 5.0,
            "retry_schedule_s": RETRY_SCHEDULE_S,
            "drain_timeout_s": 2.0,
        },
        breaker={"cooldown_s": BREAKER_COOLDOWN_S},
        metrics={"listen_host": "127.0.0.1", "listen_port": 0, "per_endpoint_labels": True},
    )


@asynccontextmanager
async def throwaway_postgres() -> AsyncIterator[str]:
    """An embedded server in a temporary directory, stopped and removed afterwards."""
    from daemon.embedded import EmbeddedPostgres

    base = Path(tempfile.mkdtemp(prefix="webhookd-demo-"))
    server = EmbeddedPostgres(base / "data", fast=True)
    try:
        yield await asyncio.to_thread(server.start)
    finally:
        try:
            await asyncio.to_thread(server.stop, mode="immediate")
        finally:
            shutil.rmtree(base, ignore_errors=True)


async def add_endpoints(store: Store, receiver: DemoReceiver) -> None:
    for ep in receiver.endpoints.values():
        spec = EndpointSpec(
            url=f"{receiver.base_url}/{ep.name}",
            id=ep.id,
            description=ep.behaviour,
            rate_per_s=ep.rate_per_s,
            burst=1 if ep.rate_per_s else None,
            signature=SignatureSpec(scheme=ep.signature),
        )
        _, secret = await add_endpoint(store, spec, allow_http=True)
        receiver.keys[ep.name] = public_key(secret) if ep.signature == ED25519 else secret


async def run_demo(
    options: DemoOptions,
    on_snapshot: Callable[[Snapshot], None],
    on_stage: Callable[[str], None] = lambda _stage: None,
) -> Snapshot:
    """Run the scenario until every delivery is final or the time is up; returns the last
    snapshot (also passed to `on_snapshot`)."""
    async with AsyncExitStack() as stack:
        on_stage("starting a throwaway PostgreSQL")
        dsn = await stack.enter_async_context(throwaway_postgres())
        on_stage("creating the webhookd schema")
        await migrate.apply_migrations(dsn)
        receiver = await stack.enter_async_context(DemoReceiver(SCENARIO).running())
        store = await Store.connect(dsn, min_size=1, max_size=2)
        stack.push_async_callback(store.close)
        await add_endpoints(store, receiver)
        service = Service(demo_config(dsn))
        on_stage("starting the daemon")
        await service.start()
        stack.push_async_callback(service.stop)
        assert service.health is not None
        url = f"http://127.0.0.1:{service.health.port}/metrics"
        watch = Watch(store, receiver, options, url, service.config)
        session = await stack.enter_async_context(aiohttp.ClientSession())
        await store.execute(
            "demo_enqueue",
            endpoint_ids=[ep.id for ep in SCENARIO],
            message_count=options.messages,
        )
        return await watch.until_done(session, on_snapshot)
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the with block returns)


class Watch:
    """Builds snapshots from the database, the receiver and webhookd's own /metrics."""

    def __init__(
        self,
        store: Store,
        receiver: DemoReceiver,
        options: DemoOptions,
        metrics_url: str,
        config: Config,
    ) -> None:
        self._store, self._receiver, self._options = store, receiver, options
        self.metrics_url = metrics_url
        self._cap = config.delivery.effective_endpoint_max_in_flight
        self._metrics: Samples = {}
        self._started = time.monotonic()

    async def until_done(
        self, session: aiohttp.ClientSession, on_snapshot: Callable[[Snapshot], None]
    ) -> Snapshot:
        deadline = self._started + self._options.duration_s
        while True:
            snap = await self.snapshot(session, timed_out=time.monotonic() >= deadline)
            on_snapshot(snap)
            if snap.finished or snap.timed_out:
                return snap
            await asyncio.sleep(self._options.refresh_s)

    async def snapshot(self, session: aiohttp.ClientSession, *, timed_out: bool) -> Snapshot:
        rows = {
            r["endpoint_id"]: r
            for r in await self._store.fetch(
                "demo_progress", endpoint_ids=[ep.id for ep in SCENARIO]
            )
        }
        # On a failed scrape the last numbers stand; the database and the receiver tell progress.
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            self._metrics = await scrape(session, self.metrics_url)
        metrics = self._metrics
        now = time.monotonic()
        endpoints = tuple(self._progress(ep, rows.get(ep.id), metrics, now) for ep in SCENARIO)
        final = sum(e.delivered + e.failed for e in endpoints)
        return Snapshot(
            elapsed_s=now - self._started,
            messages=self._options.messages,
            endpoints=endpoints,
            metrics_url=self.metrics_url,
            endpoint_cap=self._cap,
            metrics={_series(name, labels): value for (name, labels), value in metrics.items()},
            finished=final >= self._options.messages,
            timed_out=timed_out and final < self._options.messages,
        )

    def _progress(
        self, ep: DemoEndpoint, row: Mapping[str, int] | None, metrics: Samples, now: float
    ) -> EndpointProgress:
        seen = self._receiver.traffic[ep.name]
        state = metrics.get(("webhookd_endpoint_circuit_state", (("endpoint", ep.id),)), 0.0)
        average = None
        if seen.first_at is not None and seen.last_ok_at is not None and seen.answered_2xx > 1:
            average = (seen.answered_2xx - 1) / max(seen.last_ok_at - seen.first_at, 1e-3)
        counts = {k: 0 if row is None else int(row[k]) for k in _COUNTS}
        return EndpointProgress(
            endpoint=ep,
            total=counts["total"],
            delivered=counts["delivered"],
            waiting=counts["waiting"],
            retrying=counts["retrying"],
            delivering=counts["delivering"],
            failed=counts["failed"],
            attempts=counts["attempts"],
            requests=seen.requests,
            in_flight=seen.in_flight,
            max_in_flight=seen.max_in_flight,
            rate_per_s=seen.rate_per_s(now),
            answered_5xx=seen.answered_5xx,
            bad_signatures=seen.bad_signatures,
            breaker=_BREAKER_STATES.get(int(state), "closed"),
            average_rate_per_s=average,
        )


_COUNTS = ("total", "delivered", "waiting", "retrying", "delivering", "failed", "attempts")


def _series(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    return name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else "")


_BREAKER_STATES = {0: "closed", 1: "open", 2: "probing"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(session: aiohttp.ClientSession, url: str) -> Samples:
    """webhookd's /metrics as Prometheus would read it: {(sample name, labels): value}, plus
    each labelled family summed under its name with no labels."""
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
            if s.labels:
                samples[(s.name, ())] = samples.get((s.name, ()), 0.0) + s.value
    return samples
