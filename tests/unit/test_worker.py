"""The worker with a fake deliverer and recorder, a real scheduler and a fake clock: what it
does before, during and after an attempt, without sockets or a database."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from daemon.config import Config
from daemon.leases import Leases
from daemon.metrics import Metrics
from daemon.models import AttemptResult, Delivery, Endpoint, Outcome
from daemon.recorder import Write
from daemon.scheduler import Limits, Scheduler
from daemon.signing import Signer
from daemon.worker import Worker
from tests.unit.conftest import FakeClock

CONFIG = Config()
ENDPOINT = Endpoint("ep", "t", "https://example.com/x", True, "whsec_" + "A" * 32, timeout_s=5.0)


class FakeDeliverer:
    def __init__(self, result: AttemptResult) -> None:
        self.result = result
        self.sent: list[Delivery] = []

    async def attempt(
        self, endpoint: Endpoint, delivery: Delivery, signer: Signer, timeout_s: float
    ) -> AttemptResult:
        self.sent.append(delivery)
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


def setup(result: AttemptResult, clock: FakeClock) -> tuple[Worker, Any, Any, Leases, Scheduler]:
    scheduler = Scheduler(Limits(concurrency=2, endpoint_max_in_flight=2), clock)
    scheduler.update_endpoint(ENDPOINT)
    deliverer, recorder, leases = FakeDeliverer(result), FakeRecorder(), Leases(clock)
    worker = Worker(
        lambda: CONFIG,
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
