"""The API's own metrics (request count and latency by route template and status, failed
authentications), served with /healthz and /readyz on `api.metrics_listen`, apart from the API
port so a reverse proxy in front of the API never exposes them."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from daemon.api.auth import FAILURE_REASONS
from daemon.errors import ConfigError

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class ApiMetrics:
    """Every series of `webhookd api`, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "webhookd_api_requests_total",
            "API requests by method, route template and status code",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "webhookd_api_request_duration_seconds",
            "API request latency by method and route template",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.auth_failures = Counter(
            "webhookd_api_auth_failures_total",
            "Requests refused for want of a valid token (rate_limited: refused unchecked)",
            ["reason"],
            registry=r,
        )
        for reason in FAILURE_REASONS:
            self.auth_failures.labels(reason)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """/metrics, /healthz (the loop answers) and /readyz (the database answers)."""

    def __init__(
        self,
        metrics: ApiMetrics,
        ready: Callable[[], Awaitable[tuple[bool, str]]],
        host: str,
        port: int,
    ) -> None:
        self._metrics, self._ready = metrics, ready
        self._host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._get_metrics)
        app.router.add_get("/healthz", self._get_healthz)
        app.router.add_get("/readyz", self._get_readyz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self.port = await listen(self._runner, self._host, self.port, "api.metrics_listen")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _get_metrics(self, _req: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _get_healthz(self, _req: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _get_readyz(self, _req: web.Request) -> web.Response:
        ok, why = await self._ready()
        return web.Response(status=200 if ok else 503, text=why + "\n")


async def listen(runner: web.AppRunner, host: str, port: int, key: str) -> int:
    """Start a TCP site; the port the OS chose (port 0), or ConfigError naming `key`."""
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        shown = f"[{host}]" if ":" in host else host
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(key, f"cannot listen on {shown}:{port}: {why}") from exc
    sockets = getattr(site._server, "sockets", None)
    return int(sockets[0].getsockname()[1]) if sockets else port
