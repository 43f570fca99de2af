"""Runs attempts: takes the scheduler's next delivery, signs and POSTs it, decides what
happens next and hands the outcome to the recorder. One log event per attempt."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import structlog

from daemon import logs
from daemon.breaker import State
from daemon.config import Config
from daemon.delivery import Deliverer
from daemon.leases import Leases
from daemon.loops import TaskSet
from daemon.metrics import Metrics
from daemon.models import AttemptResult, Delivery, Endpoint, Outcome, RetryDecision
from daemon.recorder import Recorder, Write, pause_write
from daemon.retry import decide
from daemon.scheduler import Scheduler
from daemon.signing import Signer, make_signer

log = structlog.get_logger("webhookd.worker")

GONE_DEAD_LETTER = "http 410: the receiver says the endpoint is gone; endpoint disabled"
# An attempt starts only if its lease lasts this much longer than its timeout: time to record
# the outcome before anyone could rescue the row.
LEASE_SLACK_S = 0.5


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


def _attempt_crashed(_task: asyncio.Task[None], exc: BaseException) -> None:
    """What killed an attempt's task (a bug: `_attempts` catches what an attempt raises)."""
    log.error("worker.attempt_crashed", error=f"{type(exc).__name__}: {exc}")


class Worker:
    """The dispatch loop and the life of one attempt."""

    def __init__(
        self,
        config: Callable[[], Config],
        scheduler: Scheduler,
        deliverer: Deliverer,
        recorder: Recorder,
        metrics: Metrics,
        *,
        leases: Leases,
        gone_write: Callable[[str], Write],
        rng: random.Random | None = None,
    ) -> None:
        self._config = config  # read at each use: a reload applies to the next attempt
        self._scheduler = scheduler
        self._deliverer = deliverer
        self._recorder = recorder
        self._metrics = metrics
        self._leases = leases
        self._gone_write = gone_write  # disables an endpoint after a 410, for every daemon
        self._rng = rng or random.Random()
        self._signers = SignerCache()
        self._tasks = TaskSet(on_failure=_attempt_crashed)

    @property
    def config(self) -> Config:
        return self._config()

    async def run(self) -> None:
        """Start each delivery the scheduler hands out, until cancelled."""
        while True:
            endpoint, delivery = await self._scheduler.next()
            self._metrics.in_flight.inc()
            self._tasks.spawn(self._attempts(endpoint, delivery))

    async def _attempts(self, endpoint: Endpoint, delivery: Delivery) -> None:
        """Run an attempt, then go on with whatever may start in the slot it freed. Under
        load a slot passes from one attempt to the next inside one task, without a new task
        and a hop through `run` each time (both showed in profiles, and added latency)."""
        picked: tuple[Endpoint, Delivery] | None = (endpoint, delivery)
        while picked is not None:
            try:
                await self._attempt(*picked)
            except Exception as exc:  # a bug: the slot is free, the outcome was recorded
                log.error("worker.attempt_failed", error=repr(exc), msg_id=picked[1].msg_id)
            picked = self._scheduler.take_now()
            if picked is not None:
                self._metrics.in_flight.inc()

    @property
    def active(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float) -> int:
        """Let running attempts finish up to the deadline; returns how many were cut off."""
        return await self._tasks.drain(timeout_s)

    async def _attempt(self, endpoint: Endpoint, delivery: Delivery) -> None:
        """One attempt. Its slot is freed whatever happens, and once its result exists its
        outcome is recorded before anything else may fail (a log write, a metric)."""
        wake = True
        result: AttemptResult | None = None
        try:
            timeout_s = endpoint.timeout_s or self.config.delivery.timeout_s
            if not self._leases.covers(delivery, timeout_s + LEASE_SLACK_S):
                # The lease could expire mid-attempt (renewals failing: the database is away)
                # and another daemon would send it too. Give it back instead.
                log.warning(
                    "delivery.lease_too_short", msg_id=delivery.msg_id, endpoint=endpoint.id
                )
                self._recorder.release([delivery])
                return
            try:
                result = await self._send(endpoint, delivery, timeout_s)
            except asyncio.CancelledError:
                # Cut off by shutdown: the receiver may or may not have it. The lease is
                # released so another run delivers it again (at-least-once).
                self._recorder.release([delivery])
                raise
            decision = self._decide(endpoint, delivery, result)
            self._recorder.put(Outcome(delivery, result, decision))
            self._react(endpoint, result)
            self._observe(endpoint, delivery, result, decision)
            wake = False  # the caller takes the slot on, or wakes `run`
        finally:
            self._finish(endpoint.id, delivery, result, wake=wake)

    def _react(self, endpoint: Endpoint, result: AttemptResult) -> None:
        """What a result says about the endpoint: a pause, the breaker, a 410."""
        if result.retry_after_s is not None:
            self._pause(endpoint, result.retry_after_s)
        if result.about_endpoint:
            self._feed_breaker(endpoint, result.ok)
        else:
            self._scheduler.no_verdict(endpoint.id)
        if self._is_gone(result):
            self._gone(endpoint)

    async def _send(
        self, endpoint: Endpoint, delivery: Delivery, timeout_s: float
    ) -> AttemptResult:
        limit = self.config.delivery.max_payload_bytes
        if delivery.size > limit:
            return AttemptResult(
                time.time(),
                0.0,
                error_class="payload_too_large",
                error=f"payload is {delivery.size} bytes, limit {limit}",
            )
        try:
            signer = self._signers.get(endpoint)
        except ValueError as exc:
            # A secret or signature header written by SQL, past the checks of `endpoint add`:
            # a failed attempt like any other (the row may yet be fixed), never a lost slot.
            return AttemptResult(
                time.time(), 0.0, error_class="invalid_endpoint", error=f"cannot sign: {exc}"
            )
        if endpoint.chat is None:  # raw: the payload as it is, nothing rendered
            return await self._deliverer.attempt(endpoint, delivery, signer, timeout_s)
        return await self._send_chat(endpoint, delivery, signer, timeout_s)

    async def _send_chat(
        self, endpoint: Endpoint, delivery: Delivery, signer: Signer, timeout_s: float
    ) -> AttemptResult:
        """A Slack, Discord or Teams endpoint: the message rendered from its template."""
        assert endpoint.chat is not None
        try:
            rendered = endpoint.chat.render(delivery)
        except (ValueError, TypeError, RecursionError) as exc:
            # a payload nested deeper than the JSON parser or writer goes (jsonb allows it)
            return AttemptResult(
                time.time(),
                0.0,
                error_class="invalid_message",
                error=f"cannot render the {endpoint.chat.format} message: {type(exc).__name__}",
            )
        if rendered.missing:
            self._metrics.template_missing.inc(rendered.missing)
        return await self._deliverer.attempt(
            endpoint, delivery, signer, timeout_s, body=rendered.body
        )

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
        self._recorder.write(self._gone_write(endpoint.id))
        self._recorder.release(waiting)

    def _pause(self, endpoint: Endpoint, retry_after_s: float) -> None:
        pause_s = min(retry_after_s, self.config.ratelimit.max_retry_after_s)
        waiting = self._scheduler.pause(endpoint.id, pause_s)
        # other daemons hold back too; what waited here goes back in the same statement
        self._recorder.write(pause_write(endpoint.id, pause_s, waiting))
        self._metrics.paused.inc()
        log.info("endpoint.paused", endpoint=endpoint.id, seconds=round(pause_s, 3))

    def _feed_breaker(self, endpoint: Endpoint, ok: bool) -> None:
        state, cooldown_s, waiting = self._scheduler.record(endpoint.id, ok)
        if state is None:
            return
        self._metrics.breaker_transitions.labels(state.name.lower()).inc()
        if state is State.OPEN:
            log.warning("endpoint.circuit_opened", endpoint=endpoint.id, seconds=cooldown_s)
            self._recorder.write(pause_write(endpoint.id, cooldown_s, waiting))
        else:
            log.info("endpoint.circuit_closed", endpoint=endpoint.id)

    def _finish(
        self, endpoint_id: str, delivery: Delivery, result: AttemptResult | None, *, wake: bool
    ) -> None:
        self._metrics.in_flight.dec()
        self._scheduler.done(
            endpoint_id,
            wake=wake,
            delivery_id=delivery.id,
            duration_s=None if result is None else result.duration_s,
            responded=result is not None and result.status_code is not None,
        )

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
