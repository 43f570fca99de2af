"""The worker with a fake deliverer and recorder, a real scheduler and a fake clock: what it
does before, during and after an attempt, without sockets or a database."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from daemon.breaker import BreakerSettings
from daemon.config import Config
from daemon.leases import Leases
from daemon.metrics import Metrics
from daemon.models import AttemptResult, Delivery, Endpoint, Outcome
from daemon.recorder import Write
from daemon.scheduler import Limits, Scheduler
from daemon.signing import Signer
from daemon.templates import chat_payload
from daemon.worker import GONE_DEAD_LETTER, Worker
from tests.unit.conftest import FakeClock

CONFIG = Config()
DEFAULT_BREAKER = BreakerSettings()
ENDPOINT = Endpoint("ep", "t", "https://example.com/x", True, "whsec_" + "A" * 32, timeout_s=5.0)


class FakeDeliverer:
    def __init__(self, result: AttemptResult) -> None:
        self.result = result
        self.sent: list[Delivery] = []
        self.bodies: list[bytes | None] = []

    async def attempt(
        self,
        endpoint: Endpoint,
        delivery: Delivery,
        signer: Signer,
        timeout_s: float,
        body: bytes | None = None,
    ) -> AttemptResult:
        self.sent.append(delivery)
        self.bodies.append(body)
        return self.result


class FakeRecorder:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.writes: list[Write] = []
        self.released: list[Delivery] = []

    def put(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def write(self, change: Write) -> None:
        self.writes.append(change)

    def release(self, deliveries: Sequence[Delivery]) -> None:
        self.released.extend(deliveries)


def setup(
    result: AttemptResult,
    clock: FakeClock,
    endpoint: Endpoint = ENDPOINT,
    config: Config = CONFIG,
    breaker: BreakerSettings = DEFAULT_BREAKER,
) -> tuple[Worker, Any, Any, Leases, Scheduler]:
    limits = Limits(concurrency=2, endpoint_max_in_flight=2, breaker=breaker)
    scheduler = Scheduler(limits, clock)
    scheduler.update_endpoint(endpoint)
    deliverer, recorder, leases = FakeDeliverer(result), FakeRecorder(), Leases(clock)
    worker = Worker(
        lambda: config,
        scheduler,
        deliverer,  # type: ignore[arg-type]
        recorder,  # type: ignore[arg-type]
        Metrics(),
        leases=leases,
        gone_write=lambda ep: Write("disable", "endpoint_auto_disable", {"endpoint_id": ep}),
    )
    return worker, deliverer, recorder, leases, scheduler


def delivery(n: int = 1, lease_s: float = 35.0) -> Delivery:
    return Delivery(n, "ep", f"msg_{n}", "t", b"{}", 1, 0.0, lease_token=3, lease_s=lease_s)


async def run_one(worker: Worker, scheduler: Scheduler, d: Delivery) -> None:
    scheduler.submit([d])
    endpoint, picked = await asyncio.wait_for(scheduler.next(), 1)
    await worker._attempts(endpoint, picked)


async def test_an_attempt_whose_lease_cannot_cover_its_timeout_is_given_back_unsent() -> None:
    clock = FakeClock()
    worker, deliverer, recorder, leases, scheduler = setup(AttemptResult(0.0, 0.01, 200), clock)
    d = delivery(lease_s=8.0)
    leases.add([d], sent_at=clock())  # timeout 5 s + slack fits
    clock.advance(3.0)  # renewals failed meanwhile: 5 s left, not 5.5
    await run_one(worker, scheduler, d)
    assert deliverer.sent == [] and recorder.outcomes == []
    assert recorder.released == [d]
    assert scheduler.in_flight == 0


async def test_an_attempt_under_a_live_lease_is_sent_and_its_outcome_recorded() -> None:
    clock = FakeClock()
    worker, deliverer, recorder, leases, scheduler = setup(AttemptResult(0.0, 0.01, 200), clock)
    d = delivery()
    leases.add([d], sent_at=clock())
    await run_one(worker, scheduler, d)
    assert deliverer.sent == [d]
    assert [o.delivery for o in recorder.outcomes] == [d] and recorder.released == []
    assert scheduler.in_flight == 0


async def test_a_failing_log_or_metric_after_the_attempt_still_frees_the_slot() -> None:
    clock = FakeClock()
    worker, _, recorder, leases, scheduler = setup(AttemptResult(0.0, 0.01, 200), clock)

    def broken(*_args: object) -> None:
        raise BrokenPipeError("log pipe closed")

    worker._observe = broken  # type: ignore[method-assign]
    d = delivery()
    leases.add([d], sent_at=clock())
    await run_one(worker, scheduler, d)
    assert [o.delivery for o in recorder.outcomes] == [d]  # recorded before the failure
    assert scheduler.in_flight == 0


async def test_a_retry_after_pauses_the_endpoint_and_gives_back_its_queue_in_one_write() -> None:
    clock = FakeClock()
    answer = AttemptResult(0.0, 0.01, 429, "http_429", retry_after_s=30.0)
    worker, _, recorder, leases, scheduler = setup(answer, clock)
    first, queued = delivery(1), delivery(2)
    leases.add([first, queued], sent_at=clock())
    scheduler.submit([first, queued])
    endpoint, picked = await asyncio.wait_for(scheduler.next(), 1)
    assert picked == first
    await worker._attempts(endpoint, picked)
    [pause] = recorder.writes
    assert pause.query == "pause_and_release"
    assert pause.params["endpoint_id"] == "ep" and pause.params["pause_s"] == 30.0
    assert pause.releases == (queued,)
    assert scheduler.queued == 0


async def test_a_chat_endpoint_sends_its_rendered_message_and_counts_missing_paths() -> None:
    clock = FakeClock()
    chat = chat_payload("slack", "{{payload.who}} {{payload.nowhere}}", None)
    slack = replace(ENDPOINT, chat=chat)
    worker, deliverer, _, leases, scheduler = setup(AttemptResult(0.0, 0.01, 200), clock, slack)
    d = replace(delivery(), payload=b'{"who": "Ada"}')
    leases.add([d], sent_at=clock())
    await run_one(worker, scheduler, d)
    assert deliverer.bodies == [b'{"text":"Ada "}']
    assert worker._metrics.template_missing._value.get() == 1


async def test_a_raw_endpoint_sends_the_payload_with_nothing_rendered() -> None:
    clock = FakeClock()
    worker, deliverer, _, leases, scheduler = setup(AttemptResult(0.0, 0.01, 200), clock)
    d = delivery()
    leases.add([d], sent_at=clock())
    await run_one(worker, scheduler, d)
    assert deliverer.sent == [d] and deliverer.bodies == [None]
    assert worker._metrics.template_missing._value.get() == 0


async def test_a_payload_no_message_can_be_rendered_from_is_an_invalid_message_not_a_crash() -> (
    None
):
    clock = FakeClock()
    discord = replace(ENDPOINT, chat=chat_payload("discord", None, None))
    worker, deliverer, recorder, leases, scheduler = setup(
        AttemptResult(0.0, 0.01, 200), clock, discord
    )
    deep = replace(delivery(), payload=b"[" * 300 + b"]" * 300)  # deeper than orjson writes
    leases.add([deep], sent_at=clock())
    await run_one(worker, scheduler, deep)
    assert deliverer.sent == []
    [outcome] = recorder.outcomes
    assert outcome.result.error_class == "invalid_message"
    assert outcome.decision is not None and not outcome.decision.retry
    assert scheduler.in_flight == 0


async def attempt_first_of(worker: Worker, scheduler: Scheduler, *ds: Delivery) -> None:
    """Queue `ds`, and run the first one's task: it goes on with whatever may start next in
    the slot it frees, as under load."""
    scheduler.submit(list(ds))
    endpoint, picked = await asyncio.wait_for(scheduler.next(), 1)
    assert picked == ds[0]
    await worker._attempts(endpoint, picked)


async def test_a_410_gone_disables_the_endpoint_and_dead_letters_only_its_attempt() -> None:
    clock = FakeClock()
    worker, deliverer, recorder, leases, scheduler = setup(
        AttemptResult(0.0, 0.01, 410, "http_410"), clock
    )
    gone, queued = delivery(1), delivery(2)
    leases.add([gone, queued], sent_at=clock())
    await attempt_first_of(worker, scheduler, gone, queued)
    assert deliverer.sent == [gone]  # the queued one is not attempted
    [disable] = recorder.writes
    assert (disable.query, disable.params) == ("endpoint_auto_disable", {"endpoint_id": "ep"})
    assert recorder.released == [queued]
    [outcome] = recorder.outcomes
    assert outcome.decision is not None and not outcome.decision.retry
    assert outcome.decision.reason == GONE_DEAD_LETTER
    assert scheduler.endpoint("ep") is None and scheduler.in_flight == 0


async def test_a_410_with_endpoint_health_off_is_retried_like_any_failure() -> None:
    clock = FakeClock()
    config = CONFIG.with_overrides(health={"enabled": False}, delivery={"retry_jitter": 0})
    worker, _, recorder, leases, scheduler = setup(
        AttemptResult(0.0, 0.01, 410, "http_410"), clock, config=config
    )
    d = delivery()
    leases.add([d], sent_at=clock())
    await run_one(worker, scheduler, d)
    assert recorder.writes == [] and recorder.released == []
    [outcome] = recorder.outcomes
    assert outcome.decision is not None and outcome.decision.retry
    assert scheduler.endpoint("ep") is not None


async def test_the_breaker_opening_pauses_the_endpoint_and_gives_back_its_queue() -> None:
    clock = FakeClock()
    breaker = BreakerSettings(window=2, failure_ratio=1.0, cooldown_s=10.0)
    worker, deliverer, recorder, leases, scheduler = setup(
        AttemptResult(0.0, 0.01, 500, "http_500"), clock, breaker=breaker
    )
    first, second, queued = delivery(1), delivery(2), delivery(3)
    leases.add([first, second, queued], sent_at=clock())
    await attempt_first_of(worker, scheduler, first, second, queued)
    assert deliverer.sent == [first, second]  # the second failure opens the breaker
    [pause] = recorder.writes
    assert pause.query == "pause_and_release"
    assert pause.params["endpoint_id"] == "ep" and pause.params["pause_s"] == 10.0
    assert pause.releases == (queued,)
    assert [o.delivery for o in recorder.outcomes] == [first, second]
    assert scheduler.queued == 0 and scheduler.in_flight == 0


async def test_a_success_before_the_window_fills_keeps_the_breaker_closed() -> None:
    clock = FakeClock()
    breaker = BreakerSettings(window=2, failure_ratio=1.0, cooldown_s=10.0)
    worker, deliverer, recorder, leases, scheduler = setup(
        AttemptResult(0.0, 0.01, 200), clock, breaker=breaker
    )
    ds = [delivery(n) for n in range(1, 4)]
    leases.add(ds, sent_at=clock())
    await attempt_first_of(worker, scheduler, *ds)
    assert deliverer.sent == ds and recorder.writes == []


async def test_a_delivery_whose_lease_was_lost_is_given_back_unsent() -> None:
    clock = FakeClock()
    worker, deliverer, recorder, leases, scheduler = setup(AttemptResult(0.0, 0.01, 200), clock)
    d = delivery()
    leases.add([d], sent_at=clock())
    # A renewal that no longer returns the row: another daemon rescued it.
    assert leases.renewed([d.id], [3], kept=[], sent_at=clock()) == [d.id]
    await run_one(worker, scheduler, d)
    assert deliverer.sent == [] and recorder.outcomes == []
    assert recorder.released == [d]  # fenced by its token: changes nothing in the database
    assert scheduler.in_flight == 0


async def test_queued_deliveries_whose_leases_were_lost_are_never_attempted() -> None:
    clock = FakeClock()
    worker, deliverer, _, leases, scheduler = setup(AttemptResult(0.0, 0.01, 200), clock)
    kept, lost = delivery(1), delivery(2)
    leases.add([kept, lost], sent_at=clock())
    scheduler.submit([kept, lost])
    gone = leases.renewed([kept.id, lost.id], [3, 3], kept=[kept.id], sent_at=clock())
    assert scheduler.forget(gone) == [lost]  # what the service does with a lost lease
    endpoint, picked = await asyncio.wait_for(scheduler.next(), 1)
    await worker._attempts(endpoint, picked)
    assert deliverer.sent == [kept]
