"""Every Prometheus object in one registry, and the /metrics /healthz /readyz server."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from daemon import logs
from daemon.errors import ConfigError
from daemon.models import AttemptResult

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def result_class(result: AttemptResult) -> str:
    """Low-cardinality label for an attempt: 2xx..5xx or the error class."""
    if result.status_code is not None:
        return f"{result.status_code // 100}xx"
    return result.error_class or "unknown"


class DroppedLogLines(Collector):
    """Log lines dropped since the log stream failed: counted in daemon/logs.py, which is set
    up before any Metrics exists, and read at each scrape."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "webhookd_log_lines_dropped",
            "Log lines not written because the log stream failed (a closed pipe, a full disk)",
            value=logs.dropped_lines(),
        )


class Metrics:
    """The daemon's metrics; per-endpoint series only when enabled in config."""

    def __init__(self, per_endpoint: bool = False) -> None:
        self.registry = r = CollectorRegistry()
        self._children: dict[tuple[int, str], Counter] = {}
        self.per_endpoint = per_endpoint
        self.deliveries = Counter(
            "webhookd_deliveries_total",
            "Finished attempts by what happened to the delivery",
            ["outcome"],  # delivered | retry_scheduled | dead_lettered
            registry=r,
        )
        self.attempts = Counter(
            "webhookd_attempts_total", "HTTP attempts by result class", ["result"], registry=r
        )
        self.attempt_seconds = Histogram(
            "webhookd_attempt_duration_seconds",
            "Duration of HTTP attempts",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("webhookd_in_flight", "Attempts in progress", registry=r)
        self.queued = Gauge(
            "webhookd_claimed_waiting", "Claimed deliveries waiting for a slot or token", registry=r
        )
        self.backlog = Gauge("webhookd_backlog_due", "Pending deliveries that are due", registry=r)
        self.oldest_due = Gauge(
            "webhookd_oldest_due_age_seconds", "Age of the oldest due pending delivery", registry=r
        )
        self.rate_limited = Counter(
            "webhookd_rate_limited_waits_total",
            "Times an endpoint's rate limit held back its due deliveries",
            registry=r,
        )
        self.paused = Counter(
            "webhookd_endpoint_pauses_total",
            "Endpoint pauses caused by 429/503 Retry-After",
            registry=r,
        )
        self.breaker_transitions = Counter(
            "webhookd_circuit_breaker_transitions_total",
            "Endpoint circuit breakers opening (cool-down) and closing (probe succeeded)",
            ["state"],
            registry=r,
        )
        self.breakers_open = Gauge(
            "webhookd_circuit_breakers_open",
            "Endpoints whose circuit breaker is open or probing",
            registry=r,
        )
        self.endpoint_breaker = (
            Gauge(
                "webhookd_endpoint_circuit_state",
                "Circuit breaker per endpoint: 0 closed, 1 open, 2 half-open (probing)",
                ["endpoint"],
                registry=r,
            )
            if per_endpoint
            else None
        )
        self.slow_lane = Gauge(
            "webhookd_slow_lane_in_use",
            "Attempts running in the slow lane (past their endpoint's slow threshold)",
            registry=r,
        )
        self.demoted = Gauge(
            "webhookd_endpoints_demoted",
            "Endpoints demoted to the slow lane for answering slowly or not at all",
            registry=r,
        )
        self.demotions = Counter(
            "webhookd_endpoint_demotions_total",
            "Endpoints demoted to the slow lane, and restored",
            ["change"],  # demoted | restored
            registry=r,
        )
        self.slow_waits = Counter(
            "webhookd_slow_lane_waits_total",
            "Times a demoted endpoint's due delivery waited for a slow-lane slot",
            registry=r,
        )
        self.endpoint_limit = (
            Gauge(
                "webhookd_endpoint_concurrency_limit",
                "Attempts at once this process allows an endpoint busy here now",
                ["endpoint"],
                registry=r,
            )
            if per_endpoint
            else None
        )
        self.dead_letters = Counter(
            "webhookd_dead_letters_total", "Deliveries moved to the dead-letter state", registry=r
        )
        self.template_missing = Counter(
            "webhookd_template_missing_total",
            "Placeholders of chat templates whose payload path was missing (rendered empty)",
            registry=r,
        )
        self.claim_batch = Histogram(
            "webhookd_claim_batch_size",
            "Deliveries leased per claim",
            buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.db_errors = Counter(
            "webhookd_database_errors_total", "Database operations that failed", ["op"], registry=r
        )
        self.unwritten = Gauge(
            "webhookd_outcomes_unwritten", "Outcomes waiting to be written back", registry=r
        )
        self.lag = Gauge(
            "webhookd_event_loop_lag_seconds", "Event loop scheduling lag (last sample)", registry=r
        )
        self.endpoint_attempts = (
            Counter(
                "webhookd_endpoint_attempts_total",
                "HTTP attempts per endpoint and result class",
                ["endpoint", "result"],
                registry=r,
            )
            if per_endpoint
            else None
        )
        self.auto_disabled = Counter(
            "webhookd_endpoints_auto_disabled_total",
            "Endpoints disabled by the daemon: failing too long, or a 410 Gone",
            ["reason"],  # failing | gone
            registry=r,
        )
        self.pruned = Counter(
            "webhookd_pruned_rows_total",
            "Rows deleted by the periodic prune (retention.prune_after)",
            ["table"],  # outbox | deliveries | attempts
            registry=r,
        )
        r.register(DroppedLogLines())
        # Series whose label values are known up front exist from the start, at 0: a series
        # that first appears at 1 hides that first event from increase() and rate().
        for metric, values in (
            (self.deliveries, ("delivered", "retry_scheduled", "dead_lettered")),
            (self.breaker_transitions, ("open", "closed")),
            (self.db_errors, ("claim", "record", "release", "pause", "disable")),
            (self.auto_disabled, ("failing", "gone")),
            (self.pruned, ("outbox", "deliveries", "attempts")),
            (self.demotions, ("demoted", "restored")),
        ):
            for value in values:
                metric.labels(value)

    def observe_attempt(self, endpoint_id: str, result: AttemptResult) -> None:
        label = result_class(result)
        self._child(self.attempts, label).inc()
        self.attempt_seconds.observe(result.duration_s)
        if self.endpoint_attempts is not None:
            self.endpoint_attempts.labels(endpoint_id, label).inc()

    def count_delivery(self, outcome: str) -> None:
        self._child(self.deliveries, outcome).inc()

    def _child(self, metric: Counter, label: str) -> Counter:
        """A labelled child, looked up once: `labels()` takes a lock and builds a key on
        every call, which showed in per-attempt profiles."""
        key = (id(metric), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(label)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """Serves /metrics, /healthz (the loop answers promptly), /readyz (database ok)."""

    def __init__(
        self,
        metrics: Metrics,
        ready: Callable[[], Awaitable[tuple[bool, str]]],
        host: str,
        port: int,
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._metrics = metrics
        self._ready = ready
        self._refresh = refresh
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._last_beat = time.monotonic()
        self.port = port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._get_metrics)
        app.router.add_get("/healthz", self._get_healthz)
        app.router.add_get("/readyz", self._get_readyz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:  # port taken (a second daemon?), or no such address here
            await self._runner.cleanup()
            host = f"[{self._host}]" if ":" in self._host else self._host
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            message = f"cannot listen on {host}:{self._port}: {why}"
            raise ConfigError("metrics.listen", message) from exc
        sockets = getattr(site._server, "sockets", None)
        if sockets:  # port 0 in config: report the one the OS chose
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def heartbeat(self, every_s: float = 0.5) -> None:
        """Measure loop lag; /healthz fails when the loop stops turning."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(every_s)
            now = time.monotonic()
            self._metrics.lag.set(max(0.0, now - before - every_s))
            self._last_beat = now

    async def _get_metrics(self, _req: web.Request) -> web.Response:
        if self._refresh is not None:
            await self._refresh()
        return web.Response(
            body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _get_healthz(self, _req: web.Request) -> web.Response:
        stale_s = time.monotonic() - self._last_beat
        if stale_s > 5.0:
            return web.Response(status=503, text=f"event loop stalled for {stale_s:.1f}s\n")
        return web.Response(text="ok\n")

    async def _get_readyz(self, _req: web.Request) -> web.Response:
        ok, why = await self._ready()
        return web.Response(status=200 if ok else 503, text=why + "\n")
