"""Runs attempts: takes the scheduler's next delivery, signs and POSTs it, decides what
happens next and hands the outcome to the recorder. One log event per attempt."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

import structlog

from daemon import logs
from daemon.breaker import State
from daemon.config import Config
from daemon.delivery import Deliverer
from daemon.metrics import Metrics
from daemon.models import AttemptResult, Delivery, Endpoint, Outcome, RetryDecision
from daemon.recorder import Recorder
from daemon.retry import decide
from daemon.scheduler import Scheduler
from daemon.signing import Signer, make_signer

log = structlog.get_logger("webhookd.worker")

GONE_DEAD_LETTER = "http 410: the receiver says the endpoint is gone; endpoint disabled"


class SignerCache:
    """One signer per endpoint and set of live secrets (HMAC state built once, not per
    message); a previous secret drops out the moment its rotation grace ends."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._signers: dict[str, tuple[Endpoint, tuple[str, ...], Signer]] = {}

    def get(self, endpoint: Endpoint) -> Signer:
        now_s = self._clock()
        secrets = (endpoint.secret, *(s for s, until in endpoint.previous_secrets if until > now_s))
        cached = self._signers.get(endpoint.id)
        # `is` first: the same Endpoint object until a reload, and comparing every field
        # of it per attempt showed in profiles.
        if cached is not None and cached[1] == secrets:
            if cached[0] is endpoint:
                return cached[2]
            if cached[0] == endpoint:
                self._signers[endpoint.id] = (endpoint, secrets, cached[2])
                return cached[2]
        signer = make_signer(endpoint.signature, secrets)
        self._signers[endpoint.id] = (endpoint, secrets, signer)
        return signer


class Worker:
    """The dispatch loop and the life of one attempt."""

    def __init__(
        self,
        config: Config,
        scheduler: Scheduler,
        deliverer: Deliverer,
        recorder: Recorder,
        metrics: Metrics,
        *,
        release: Callable[[list[Delivery]], None],
        share_pause: Callable[[str, float], None] = lambda _ep, _s: None,
        on_gone: Callable[[str], None] = lambda _ep: None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._scheduler = scheduler
        self._deliverer = deliverer
        self._recorder = recorder
        self._metrics = metrics
        self._release = release
        self._share_pause = share_pause
        self._on_gone = on_gone
        self._rng = rng or random.Random()
        self._signers = SignerCache()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Start each delivery the scheduler hands out, until cancelled."""
        while True:
            endpoint, delivery = await self._scheduler.next()
            self._metrics.in_flight.inc()
            task = asyncio.create_task(self._attempts(endpoint, delivery))
            self._tasks.add(task)
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        """Drop a finished task, and report what killed it (never left unretrieved)."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("worker.attempt_crashed", error=f"{type(exc).__name__}: {exc}")

    async def _attempts(self, endpoint: Endpoint, delivery: Delivery) -> None:
        """Run an attempt, then go on with whatever may start in the slot it freed. Under
        load a slot passes from one attempt to the next inside one task, without a new task
        and a hop through `run` each time (both showed in profiles, and added latency)."""
        picked: tuple[Endpoint, Delivery] | None = (endpoint, delivery)
        while picked is not None:
            await self._attempt(*picked)
            picked = self._scheduler.take_now()
            if picked is not None:
                self._metrics.in_flight.inc()

    @property
    def active(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float) -> int:
        """Let running attempts finish up to the deadline; returns how many were cut off."""
        if not self._tasks:
            return 0
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return len(pending)

    async def _attempt(self, endpoint: Endpoint, delivery: Delivery) -> None:
        try:
            result = await self._send(endpoint, delivery)
        except asyncio.CancelledError:
            # Cut off by shutdown: the receiver may or may not have it. The lease is
            # released so another run delivers it again (at-least-once).
            self._release([delivery])
            self._finish(endpoint.id, wake=True)
            raise
        try:
            self._conclude(endpoint, delivery, result)
        except BaseException:
            # Whatever failed (a bug; a log write once did), the slot is not lost; no
            # `take_now` follows, so `run` is woken to hand it out.
            self._finish(endpoint.id, wake=True)
            raise
        self._finish(endpoint.id, wake=False)  # the caller takes the slot on, or wakes `run`

    def _conclude(self, endpoint: Endpoint, delivery: Delivery, result: AttemptResult) -> None:
        decision = self._decide(endpoint, delivery, result)
        self._recorder.put(Outcome(delivery, result, decision))
        try:
            self._observe(endpoint, delivery, result, decision)
        finally:  # what the result says about the endpoint counts even if observing failed
            self._react(endpoint, result)

    def _react(self, endpoint: Endpoint, result: AttemptResult) -> None:
        if result.retry_after_s is not None:
            self._pause(endpoint, result.retry_after_s)
        if result.about_endpoint:
            self._feed_breaker(endpoint, result.ok)
        else:
            self._scheduler.no_verdict(endpoint.id)
        if self._is_gone(result):
            self._gone(endpoint)

    async def _send(self, endpoint: Endpoint, delivery: Delivery) -> AttemptResult:
        limit = self.config.delivery.max_payload_bytes
        if len(delivery.payload) > limit:
            return AttemptResult(
                time.time(),
                0.0,
                error_class="payload_too_large",
                error=f"payload is {len(delivery.payload)} bytes, limit {limit}",
            )
        timeout_s = endpoint.timeout_s or self.config.delivery.timeout_s
        try:
            signer = self._signers.get(endpoint)
        except ValueError as exc:
            # A secret or signature header written by SQL, past the checks of `endpoint add`:
            # a failed attempt like any other (the row may yet be fixed), never a lost slot.
            return AttemptResult(
                time.time(), 0.0, error_class="invalid_endpoint", error=f"cannot sign: {exc}"
            )
        return await self._deliverer.attempt(endpoint, delivery, signer, timeout_s)

    def _decide(
        self, endpoint: Endpoint, delivery: Delivery, result: AttemptResult
    ) -> RetryDecision | None:
        if self._is_gone(result):
            return RetryDecision(retry=False, delay_s=0.0, reason=GONE_DEAD_LETTER)
        schedule = endpoint.retry_schedule_s
        if schedule is None:
            schedule = self.config.delivery.retry_schedule_s
        return decide(
            delivery.series_attempt,  # a replayed delivery gets the whole schedule again
            result,
            schedule,
            jitter=self.config.delivery.retry_jitter,
            rng=self._rng,
            max_retry_after_s=self.config.ratelimit.max_retry_after_s,
        )

    def _is_gone(self, result: AttemptResult) -> bool:
        return result.status_code == 410 and self.config.health.enabled

    def _gone(self, endpoint: Endpoint) -> None:
        """410 Gone: the receiver says the endpoint no longer exists. It is disabled at once
        (here, and in the database for every daemon); its other deliveries wait."""
        waiting = self._scheduler.disable(endpoint.id)
        if waiting is None:  # another attempt's 410 did it already
            return
        self._release(waiting)
        self._on_gone(endpoint.id)

    def _pause(self, endpoint: Endpoint, retry_after_s: float) -> None:
        pause_s = min(retry_after_s, self.config.ratelimit.max_retry_after_s)
        waiting = self._scheduler.pause(endpoint.id, pause_s)
        self._share_pause(endpoint.id, pause_s)  # other daemons hold back too
        self._metrics.paused.inc()
        log.info("endpoint.paused", endpoint=endpoint.id, seconds=round(pause_s, 3))
        if waiting:
            self._release(waiting)

    def _feed_breaker(self, endpoint: Endpoint, ok: bool) -> None:
        state, cooldown_s, waiting = self._scheduler.record(endpoint.id, ok)
        if state is None:
            return
        self._metrics.breaker_transitions.labels(state.name.lower()).inc()
        if state is State.OPEN:
            log.warning("endpoint.circuit_opened", endpoint=endpoint.id, seconds=cooldown_s)
            self._share_pause(endpoint.id, cooldown_s)
            self._release(waiting)
        else:
            log.info("endpoint.circuit_closed", endpoint=endpoint.id)

    def _finish(self, endpoint_id: str, *, wake: bool) -> None:
        self._metrics.in_flight.dec()
        self._scheduler.done(endpoint_id, wake=wake)

    def _observe(
        self,
        endpoint: Endpoint,
        delivery: Delivery,
        result: AttemptResult,
        decision: RetryDecision | None,
    ) -> None:
        self._metrics.observe_attempt(endpoint.id, result)
        if decision is None:
            outcome = "delivered"
        elif decision.retry:
            outcome = "retry_scheduled"
        else:
            outcome = "dead_lettered"
            self._metrics.dead_letters.inc()
        self._metrics.count_delivery(outcome)
        if not logs.enabled("info", self.config.log.level):
            return  # its arguments cost more than the filtered call itself, at full rate
        log.info(
            "delivery.attempt",
            msg_id=delivery.msg_id,
            endpoint=endpoint.id,
            attempt=delivery.attempt,
            status=result.status_code,
            error=result.error_class,
            ms=round(result.duration_s * 1000, 1),
            outcome=outcome,
            retry_in_s=None
            if decision is None or not decision.retry
            else round(decision.delay_s, 3),
        )
