"""Composition root: builds the pipeline, supervises its tasks, and shuts it down in order.

claim (outbox) -> schedule (scheduler) -> deliver (worker/delivery) -> record (recorder).
What start() opens goes on one AsyncExitStack; the parts it builds are one Pipeline and their
tasks one ServiceTasks, with explicit handles. If any side task dies, the service stops loudly
rather than limping on. Shutdown: stop claiming, give back leases of claimed-but-unstarted
deliveries, let attempts finish up to the drain timeout, then write every outcome before
closing the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import structlog
from aiohttp.abc import AbstractResolver

from daemon import migrate, reload
from daemon.breaker import BreakerSettings
from daemon.config import Config, redact_url
from daemon.delivery import Deliverer
from daemon.endpoint_health import HealthMonitor
from daemon.endpoints import check_secrets_readable, fetch_endpoints
from daemon.errors import DatabaseUnavailable, WebhookdError
from daemon.leases import LeaseKeeper, Leases, heartbeat_s
from daemon.logs import configure_logging
from daemon.loops import every
from daemon.metrics import HealthServer, Metrics
from daemon.models import Delivery, Outcome
from daemon.outbox import Claimer
from daemon.recorder import Recorder
from daemon.reload import LiveConfig
from daemon.retention import Pruner
from daemon.scheduler import Limits, Scheduler
from daemon.sdnotify import Notifier
from daemon.secretbox import PLAINTEXT, SecretBox
from daemon.store import Store
from daemon.worker import Worker

log = structlog.get_logger("webhookd.service")

BACKLOG_REFRESH_S = 5.0
PACE_CHECK_S = 0.1  # how often running attempts are checked against their slow threshold


def limits_from(config: Config) -> Limits:
    return Limits(
        concurrency=config.delivery.concurrency,
        endpoint_max_in_flight=config.delivery.effective_endpoint_max_in_flight,
        default_rate_per_s=config.ratelimit.default_rate_per_s,
        default_burst=config.ratelimit.default_burst,
        batch_size=config.outbox.batch_size,
        slow_lane=config.delivery.slow_lane,
        slow_after_s=config.delivery.slow_after_s,
        breaker=BreakerSettings(
            enabled=config.breaker.enabled,
            window=config.breaker.window,
            failure_ratio=config.breaker.failure_ratio,
            cooldown_s=config.breaker.cooldown_s,
        ),
    )


@dataclass(frozen=True)
class Pipeline:
    """The parts a started service runs, built together by `Service.start`."""

    store: Store
    deliverer: Deliverer
    recorder: Recorder
    claimer: Claimer
    worker: Worker
    lease_keeper: LeaseKeeper
    endpoint_health: HealthMonitor
    pruner: Pruner


@dataclass(frozen=True)
class ServiceTasks:
    """The supervised tasks of a started service. Shutdown treats the claimer (a claim in
    progress finishes) and the recorder (its write in progress finishes) apart."""

    claimer: asyncio.Task[None]
    recorder: asyncio.Task[None]
    side: list[asyncio.Task[None]]

    def __iter__(self) -> Iterator[asyncio.Task[None]]:
        return iter([self.claimer, self.recorder, *self.side])


class Service:
    """One running daemon: `await start()`, then `await wait()` or `await stop()`."""

    def __init__(
        self,
        config: Config,
        *,
        migrate_schema: bool = False,
        resolver: AbstractResolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
        notifier: Notifier | None = None,
        secret_box: SecretBox = PLAINTEXT,
        log_stream: TextIO | None = None,
    ) -> None:
        self._live = LiveConfig(config)
        self._log_stream = log_stream  # where a reload re-applies log.level and log.format
        self.notifier = notifier or Notifier()
        self.secret_box = secret_box  # opens endpoint secrets stored encrypted
        self._migrate = migrate_schema
        self._resolver = resolver
        self._ssl = ssl_context
        self.metrics = Metrics(per_endpoint=config.metrics.per_endpoint_labels)
        self.scheduler = Scheduler(limits_from(config))
        self._live.on_change(lambda old, new: self.scheduler.set_limits(limits_from(new)))
        self.leases = Leases()
        self.instance = config.outbox.instance_id
        self._stopped = asyncio.Event()
        self._failure: BaseException | None = None
        self.backlog_due = 0
        # What start() opens (the pool, the HTTP client, the /metrics /healthz /readyz server),
        # closed in reverse by stop() or by a refused start; then the parts it built and their
        # tasks, set together once it has succeeded. `health` is None when metrics are off.
        self._resources = contextlib.AsyncExitStack()
        self._pipeline: Pipeline | None = None
        self._tasks: ServiceTasks | None = None
        self.health: HealthServer | None = None
        self._written = True  # what "service.stopped" reports: every outcome was written

    @property
    def config(self) -> Config:
        """The configuration running now (the last reload's)."""
        return self._live()

    # -- start -----------------------------------------------------------------------
    async def start(self) -> None:
        store = await self._connect()
        resources = self._resources
        resources.callback(lambda: log.info("service.stopped", outcomes_written=self._written))
        resources.push_async_callback(store.close)
        try:
            await self._check_schema(store)
            # refuse to start without the keys stored secrets need, not at the first delivery
            await check_secrets_readable(store, self.secret_box)
            pipeline = self._build(store)
            resources.push_async_callback(pipeline.deliverer.close)
            await pipeline.deliverer.start()
            self._pipeline = pipeline
            if self.config.metrics.enabled:
                await self._start_health(resources)
        except BaseException:
            self._pipeline = None
            await resources.aclose()  # a refused start leaves nothing open behind
            raise
        self._tasks = self._spawn_all(pipeline)
        # Only now: the database answers, the schema is current and /metrics listens.
        self.notifier.ready(self.status_line())
        log.info(
            "service.started",
            instance=self.instance,
            database=redact_url(store.dsn),
            concurrency=self.config.delivery.concurrency,
            metrics_port=self.health.port if self.health else None,
        )

    def _running(self) -> Pipeline:
        if self._pipeline is None:
            raise RuntimeError("the service has not started")
        return self._pipeline

    @property
    def recorder(self) -> Recorder:
        return self._running().recorder

    async def _check_schema(self, store: Store) -> None:
        if self._migrate:
            applied = await migrate.migrate(store)
            if applied:
                log.info("schema.migrated", applied=applied)
        await migrate.require_current(store)

    async def _connect(self) -> Store:
        db = self.config.database
        return await Store.connect(
            db.url,
            min_size=db.pool_min_size,
            max_size=db.pool_max_size,
            timeout_s=db.connect_timeout_s,
        )

    def _build(self, store: Store) -> Pipeline:
        cfg, live = self.config, self._live
        deliverer = Deliverer(
            user_agent=cfg.delivery.user_agent,
            max_response_bytes=cfg.delivery.max_response_body_bytes,
            stored_response_bytes=cfg.delivery.stored_response_body_bytes,
            allow_http=cfg.delivery.allow_insecure_http,
            allow_private=cfg.delivery.allow_private_networks,
            resolver=self._resolver,
            ssl_context=self._ssl,
            proxy=cfg.delivery.proxy,
            no_proxy=cfg.delivery.no_proxy,
        )
        recorder = Recorder(
            store,
            self.instance,
            busy=lambda: self.scheduler.in_flight > 0,
            on_written=self._on_written,
            on_released=self._on_released,
            dead_letters_block=lambda: live().outbox.ordering_on_dead_letter == "block",
            on_db_error=lambda op: self.metrics.db_errors.labels(op).inc(),
        )
        claimer = Claimer(
            store,
            self.scheduler,
            instance=self.instance,
            config=live,
            fetch_endpoints=lambda ids: fetch_endpoints(store, self.secret_box, ids),
            leases=self.leases,
            on_orphans=recorder.release,
            on_claim=self.metrics.claim_batch.observe,
            on_db_error=lambda op: self.metrics.db_errors.labels(op).inc(),
        )
        endpoint_health = HealthMonitor(store, self.metrics, lambda: live().health)
        worker = Worker(
            live,
            self.scheduler,
            deliverer,
            recorder,
            self.metrics,
            leases=self.leases,
            gone_write=endpoint_health.gone_write,
        )
        lease_keeper = LeaseKeeper(
            store,
            self.leases,
            interval_s=lambda: heartbeat_s(live().outbox.lease_margin_s),
            on_lost=self._leases_lost,
        )
        pruner = Pruner(store, self.metrics, lambda: live().retention)
        live.on_change(self._reconfigure)
        return Pipeline(
            store, deliverer, recorder, claimer, worker, lease_keeper, endpoint_health, pruner
        )

    def _reconfigure(self, old: Config, new: Config) -> None:
        """What a reload changes in the pipeline beyond what its parts read at each use."""
        if (p := self._pipeline) is None:
            return
        p.claimer.reconfigured()  # more slots may be free now
        if old.health != new.health:
            p.endpoint_health.wake()
        if old.retention != new.retention:
            p.pruner.wake()

    async def _start_health(self, resources: contextlib.AsyncExitStack) -> None:
        m = self.config.metrics
        self.health = HealthServer(
            self.metrics, self.readiness, m.listen_host, m.listen_port, refresh=self._gauges
        )
        resources.push_async_callback(self.health.stop)
        await self.health.start()

    def _spawn_all(self, p: Pipeline) -> ServiceTasks:
        side: list[tuple[str, Coroutine[Any, Any, None]]] = [
            ("worker", p.worker.run()),
            ("leases", p.lease_keeper.run()),
            ("pace", every(lambda: PACE_CHECK_S, self._check_pace)),
            (
                "backlog",
                every(
                    lambda: BACKLOG_REFRESH_S,
                    self._refresh_backlog,
                    survive=(DatabaseUnavailable,),
                ),
            ),
            ("health", p.endpoint_health.run()),
            ("retention", p.pruner.run()),
        ]
        if self.config.outbox.listen:
            side.append(("listener", p.claimer.listen()))
        if self.health is not None:
            side.append(("heartbeat", self.health.heartbeat()))
        if self.notifier.enabled:
            side.append(("watchdog", self.notifier.watchdog(self.status_line)))
        return ServiceTasks(
            claimer=self._spawn("claimer", p.claimer.run()),
            recorder=self._spawn("recorder", p.recorder.run()),
            side=[self._spawn(name, coro) for name, coro in side],
        )

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=f"webhookd.{name}")
        task.add_done_callback(self._supervise)
        return task

    def _supervise(self, task: asyncio.Task[None]) -> None:
        """A side task that ends on its own is a bug or a fatal error: stop loudly."""
        if task.cancelled() or self._stopped.is_set():
            return
        exc = task.exception()
        self._failure = exc or RuntimeError(f"{task.get_name()} exited")
        log.error("service.task_died", task=task.get_name(), error=repr(self._failure))
        self._stopped.set()

    # -- callbacks from the pipeline -------------------------------------------------
    def _on_written(self, batch: Sequence[Outcome]) -> None:
        """Outcomes are in the table: their leases need no more renewal, and retries must
        wake the claimer when they fall due."""
        self.leases.drop(o.delivery for o in batch)
        delays = [o.decision.delay_s for o in batch if o.decision and o.decision.retry]
        claimer = self._running().claimer
        if delays:
            claimer.wake_in(min(delays))
        if delays or any(self._wakes_written(o.delivery) for o in batch):
            claimer.note_wakes()

    def _wakes_written(self, delivery: Delivery) -> bool:
        """Whether writing this outcome woke its endpoint in the database: the next delivery
        of its ordering key released, or a slot of its shared max in flight freed."""
        endpoint = self.scheduler.endpoint(delivery.endpoint_id)
        return delivery.ordering_key is not None or (
            endpoint is not None and endpoint.max_in_flight is not None
        )

    def _on_released(self, deliveries: Sequence[Delivery]) -> None:
        """Leases given back are pending again: no more renewal; their wakes to fold in."""
        self.leases.drop(deliveries)
        self._running().claimer.note_wakes()

    def _leases_lost(self, delivery_ids: list[int]) -> None:
        """Another daemon rescued these (this one lost the database for longer than a
        lease): those still queued here are dropped, never attempted."""
        dropped = self.scheduler.forget(delivery_ids)
        others = len(delivery_ids) - len(dropped)
        log.warning("outbox.lost_leases_dropped", queued=len(dropped), other=others)

    async def readiness(self) -> tuple[bool, str]:
        p = self._pipeline
        if p is None or not await p.store.ping():
            return False, "database unreachable"
        if not (p.claimer.healthy and p.recorder.healthy and p.lease_keeper.healthy):
            return False, "database errors, retrying"
        try:
            pending = await migrate.pending_versions(p.store)
        except WebhookdError:
            return False, "database unreachable"
        if pending:
            return False, "migrations pending: " + ", ".join(pending)
        return True, "ready"

    async def _gauges(self) -> None:
        self.metrics.queued.set(self.scheduler.queued)
        self.metrics.unwritten.set(self.recorder.pending)
        self.metrics.rate_limited.inc(self.scheduler.take_rate_limited_waits())
        states = self.scheduler.breaker_states()
        self.metrics.breakers_open.set(sum(1 for s in states.values() if s))
        if self.metrics.endpoint_breaker is not None:
            for endpoint_id, state in states.items():
                self.metrics.endpoint_breaker.labels(endpoint_id).set(int(state))
        self.metrics.slow_lane.set(self.scheduler.slow_lane_in_use)
        self.metrics.demoted.set(self.scheduler.demoted)
        self.metrics.slow_waits.inc(self.scheduler.take_slow_waits())
        if self.metrics.endpoint_limit is not None:
            for endpoint_id, limit in self.scheduler.endpoint_limits().items():
                self.metrics.endpoint_limit.labels(endpoint_id).set(limit)

    async def _check_pace(self) -> None:
        """Moves attempts that run past their endpoint's slow threshold to the slow lane, and
        says which endpoints were demoted or restored (isolation.py)."""
        self.scheduler.check_slow()
        for change in self.scheduler.take_changes():
            if change.demoted:
                log.warning(
                    "endpoint.demoted",
                    endpoint=change.endpoint_id,
                    after_s=round(change.after_s, 3),
                    threshold_s=round(change.threshold_s, 3),
                )
                self.metrics.demotions.labels("demoted").inc()
            else:
                log.info("endpoint.restored", endpoint=change.endpoint_id)
                self.metrics.demotions.labels("restored").inc()

    async def _refresh_backlog(self) -> None:
        row = await self._running().store.fetchrow("backlog")
        if row is not None:
            self.backlog_due = int(row["due"])
            self.metrics.backlog.set(row["due"])
            self.metrics.oldest_due.set(row["oldest_s"])

    def status_line(self) -> str:
        return (
            f"in flight {self.scheduler.in_flight}, waiting {self.scheduler.queued}, "
            f"backlog {self.backlog_due}, "
            f"unwritten {self.recorder.pending}"
        )

    # -- reload (SIGHUP) --------------------------------------------------------------
    def reload(self, loaded: Config) -> None:
        """Apply a newly loaded configuration. Attempts in flight are not touched: a lower
        concurrency only holds back new starts until enough have finished. Settings fixed at
        start (database, metrics listener, instance id, HTTP client) keep their running value
        and are logged as needing a restart."""
        change = reload.plan(self.config, loaded)
        if change.needs_restart:
            log.warning("config.reload_needs_restart", keys=change.needs_restart)
        self._live.set(change.config)
        # Said before the new log level applies, so a reload to a quieter level is still seen.
        log.info("config.reloaded", changed=change.applied)
        if self._log_stream is not None:
            configure_logging(self.config.log.level, self.config.log.format, self._log_stream)

    # -- stop ------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stopped.set()

    async def wait(self) -> None:
        """Until a stop is requested or a task dies; then shut down. Raises the failure."""
        await self._stopped.wait()
        await self.stop()
        if self._failure is not None:
            raise WebhookdError(f"stopped after an internal failure: {self._failure!r}")

    async def stop(self) -> None:
        self._stopped.set()
        self.notifier.stopping()
        log.info("service.stopping", in_flight=self.scheduler.in_flight)
        p, tasks = self._pipeline, self._tasks
        if p is None or tasks is None:  # never started, or its start was refused
            return
        await self._stop_claiming(p.claimer, tasks.claimer)
        p.recorder.release(self.scheduler.drain_queued())
        # the lease keeper runs on while attempts finish: a drain longer than a lease margin
        # must not let another daemon rescue and send them too
        cut = await p.worker.drain(self.config.delivery.drain_timeout_s)
        if cut:
            log.warning("service.attempts_cut_off", count=cut)
        p.recorder.stop()
        await self._cancel_rest(tasks)
        self._written = await p.recorder.drain(timeout_s=10.0)
        await self._resources.aclose()  # the HTTP server, the HTTP client, the pool; logged

    @staticmethod
    async def _stop_claiming(claimer: Claimer, task: asyncio.Task[None]) -> None:
        """Let a claim in progress finish, so no lease is taken and then forgotten."""
        claimer.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), timeout=5.0)

    @staticmethod
    async def _cancel_rest(tasks: ServiceTasks) -> None:
        """Cancel the side tasks; the recorder is not cancelled but allowed to finish the
        write it is in (after `recorder.stop()`), so `drain` never writes a batch twice."""
        for task in tasks:
            if task is not tasks.recorder:
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
