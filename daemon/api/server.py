"""`webhookd api` as a process: the pool, the API site, its metrics site, sd_notify, and an
orderly stop (SIGTERM: stop accepting, let requests in progress finish, close the pool).

Its own process, so API load never shares an event loop with deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import structlog
from aiohttp import web

from daemon import migrate, plans
from daemon.api.auth import Authenticator
from daemon.api.batch import MessageWriter
from daemon.api.cache import LookupCache
from daemon.api.http import Api
from daemon.api.metrics import ApiMetrics, MetricsServer, listen
from daemon.api.routes import build_app
from daemon.config import Config, redact_url
from daemon.console.sessions import Sessions
from daemon.errors import WebhookdError
from daemon.sdnotify import Notifier
from daemon.secretbox import PLAINTEXT, SecretBox
from daemon.store import Store

log = structlog.get_logger("webhookd.api")

SHUTDOWN_GRACE_S: Final = 10.0  # requests in progress may finish for this long on SIGTERM
MAX_LINE_BYTES: Final = 64 * 1024


def _plans_ended(task: asyncio.Task[None]) -> None:
    """The re-planning check ended by something else than a stop: a bug; the API serves on
    (with plans that may be made for smaller tables), and the log says why."""
    if not task.cancelled() and task.exception() is not None:
        log.error("api.plans_failed", error=repr(task.exception()))


class ApiServer:
    """One running API: `await start()`, then `await wait()` or `await stop()`."""

    def __init__(
        self,
        config: Config,
        *,
        migrate_schema: bool = False,
        secret_box: SecretBox = PLAINTEXT,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.box = secret_box
        self.notifier = notifier or Notifier()
        self.metrics = ApiMetrics()
        self._migrate = migrate_schema
        self._stopped = asyncio.Event()
        self.store: Store | None = None
        self.runner: web.AppRunner | None = None
        self.metrics_server: MetricsServer | None = None
        self.api: Api | None = None  # what the handlers share, once started
        self._plans: asyncio.Task[None] | None = None  # daemon/plans.py's watch
        self.port = config.api.listen_port
        self.metrics_port = config.api.metrics_port

    async def start(self) -> None:
        db = self.config.database
        self.store = await Store.connect(
            db.url, min_size=db.pool_min_size, max_size=db.pool_max_size,
            timeout_s=db.connect_timeout_s,
        )  # fmt: skip
        try:
            if self._migrate:
                await migrate.migrate(self.store)
            await migrate.require_current(self.store)
            await self._serve(self.store)
        except BaseException:
            await self._close()
            raise
        self.notifier.ready(f"listening on port {self.port}")
        log.info(
            "api.started",
            database=redact_url(self.store.dsn),
            listen=f"{self.config.api.listen_host}:{self.port}",
            metrics_port=self.metrics_port,
        )

    async def _serve(self, store: Store) -> None:
        cfg = self.config.api
        auth = Authenticator(
            store,
            cache_s=cfg.token_cache_s,
            failures=cfg.auth_failures,
            on_failure=lambda reason: self.metrics.auth_failures.labels(reason).inc(),
        )
        writer = MessageWriter(store)
        lookups = LookupCache()
        sessions = Sessions(store, self.config.console.session_ttl_s)
        self.api = api = Api(
            store, self.config, self.box, auth, self.metrics, writer, lookups, sessions
        )
        self.runner = web.AppRunner(
            build_app(api), access_log=None, handle_signals=False,
            shutdown_timeout=SHUTDOWN_GRACE_S,
            # A request line past aiohttp's 8 KiB is refused by its parser, in plain text,
            # before any handler; this far, a bad query gets the API's own 422 instead.
            max_line_size=MAX_LINE_BYTES, max_field_size=MAX_LINE_BYTES,
        )  # fmt: skip
        await self.runner.setup()
        self.port = await listen(self.runner, cfg.listen_host, cfg.listen_port, "api.listen")
        self.metrics_server = MetricsServer(
            self.metrics, self.readiness, cfg.metrics_host, cfg.metrics_port
        )
        await self.metrics_server.start()
        self.metrics_port = self.metrics_server.port
        self._plans = asyncio.create_task(plans.watch(store), name="api.plans")
        self._plans.add_done_callback(_plans_ended)

    async def readiness(self) -> tuple[bool, str]:
        if self.store is None or not await self.store.ping():
            return False, "database unreachable"
        try:
            pending = await migrate.pending_versions(self.store)
        except WebhookdError:
            return False, "database unreachable"
        return (False, "migrations pending: " + ", ".join(pending)) if pending else (True, "ready")

    def request_stop(self) -> None:
        self._stopped.set()

    async def wait(self) -> None:
        await self._stopped.wait()
        await self.stop()

    async def stop(self) -> None:
        self._stopped.set()
        self.notifier.stopping()
        log.info("api.stopping")
        await self._close()
        log.info("api.stopped")

    async def _close(self) -> None:
        if self._plans is not None:
            self._plans.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # _plans_ended logs it
                await self._plans
            self._plans = None
        # The API site first: it stops accepting, then waits for requests in progress.
        if self.runner is not None:
            with contextlib.suppress(Exception):
                await self.runner.cleanup()
            self.runner = None
        if self.metrics_server is not None:
            await self.metrics_server.stop()
            self.metrics_server = None
        if self.store is not None:
            await self.store.close()
            self.store = None
