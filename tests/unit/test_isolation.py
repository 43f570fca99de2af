"""Slow and hanging endpoints kept off the shared slots (isolation.py), through the scheduler,
with a fake clock: demotion, the slow lane, the share, restoration."""

from __future__ import annotations

import asyncio

from daemon.models import Delivery, Endpoint
from daemon.scheduler import Limits, Scheduler
from tests.unit.conftest import FakeClock

_ids = iter(range(1, 1_000_000))


def endpoint(ep_id: str, cap: int = 5) -> Endpoint:
    return Endpoint(ep_id, "t", f"https://example.com/{ep_id}", True, "whsec_x", max_in_flight=cap)


def deliveries(ep_id: str, count: int) -> list[Delivery]:
    return [
        Delivery(n, ep_id, f"m{n}", "e", b"{}", 1, 0.0) for n in [next(_ids) for _ in range(count)]
    ]


def scheduler(clock: FakeClock, *endpoints: Endpoint, **limits: object) -> Scheduler:
    """Endpoints that have answered before (in 10 ms), so not in their slow start."""
    s = Scheduler(Limits(**limits), clock)  # type: ignore[arg-type]
    for e in endpoints:
        s.update_endpoint(e)
        pace = s.pace(e.id)
        assert pace is not None
        pace.latency_s = 0.01
    return s


def start_all(s: Scheduler) -> list[Delivery]:
    started = []
    while (picked := s.take_now()) is not None:
        started.append(picked[1])
    return started


def finish(s: Scheduler, d: Delivery, duration_s: float, responded: bool = True) -> None:
    s.done(d.endpoint_id, delivery_id=d.id, duration_s=duration_s, responded=responded)


async def test_an_attempt_past_the_threshold_moves_to_the_slow_lane_and_demotes(
    clock: FakeClock,
) -> None:
    s = scheduler(clock, endpoint("hang", cap=5), concurrency=4, slow_lane=10, slow_after_s=2.0)
    s.submit(deliveries("hang", 3))
    assert len(start_all(s)) == 3
    assert s.capacity() == 1  # three of four regular slots held
    clock.advance(1.9)
    s.check_slow()
    assert s.slow_lane_in_use == 0 and s.demoted == 0
    clock.advance(0.2)
    s.check_slow()
    assert s.slow_lane_in_use == 3 and s.demoted == 1
    assert s.capacity() == 4  # every regular slot is free again
    [change] = s.take_changes()
    assert change.endpoint_id == "hang" and change.demoted and change.threshold_s == 2.0


async def test_a_demoted_endpoint_starts_one_attempt_at_a_time_in_the_slow_lane(
    clock: FakeClock,
) -> None:
    s = scheduler(
        clock, endpoint("hang"), endpoint("ok"), concurrency=4, slow_lane=10, slow_after_s=2.0
    )
    s.submit(deliveries("hang", 1))
    [first] = start_all(s)
    clock.advance(2.5)
    s.check_slow()  # demoted, limit 1
    finish(s, first, 30.0, responded=False)  # its timeout
    s.submit(deliveries("hang", 5))
    assert len(start_all(s)) == 1  # one at a time
    assert s.slow_lane_in_use == 1
    s.submit(deliveries("ok", 4))
    assert len(start_all(s)) == 4  # the regular slots are all the others'


async def test_with_the_slow_lane_full_demoted_endpoints_hold_half_the_slots_at_most(
    clock: FakeClock,
) -> None:
    hanging = [endpoint(f"h{i}") for i in range(4)]
    s = scheduler(clock, *hanging, endpoint("ok"), concurrency=4, slow_lane=0, slow_after_s=2.0)
    for e in hanging:
        s.submit(deliveries(e.id, 1))
    running = start_all(s)
    assert len(running) == 4
    clock.advance(2.1)
    s.check_slow()  # all four demoted; no slow lane: they keep their slots
    assert s.demoted == 4 and s.slow_lane_in_use == 0
    for d in running:
        finish(s, d, 30.0, responded=False)
    for e in hanging:
        s.submit(deliveries(e.id, 2))
    s.submit(deliveries("ok", 4))
    started = start_all(s)
    by_kind = [d.endpoint_id == "ok" for d in started]
    assert by_kind.count(False) <= 2  # the demoted ones: half of four
    assert by_kind.count(True) == 2  # the responsive one gets the other half


async def test_answers_within_the_threshold_restore_a_demoted_endpoint(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("ep", cap=3), concurrency=10, slow_after_s=2.0)
    s.submit(deliveries("ep", 1))
    [d] = start_all(s)
    clock.advance(2.5)
    s.check_slow()
    finish(s, d, 2.6)  # a slow answer
    assert s.take_changes()[0].demoted
    for limit in (1, 2):
        s.submit(deliveries("ep", 3))
        started = start_all(s)
        assert len(started) == limit  # additive increase, one more per quick answer
        for d in started:
            finish(s, d, 0.05)
        s.drain_queued()
    assert s.demoted == 0  # back at its cap of 3
    [change] = s.take_changes()
    assert not change.demoted


async def test_a_slow_but_healthy_endpoint_alone_keeps_its_slots(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("slowish", cap=5), concurrency=10, slow_after_s=2.0)
    for _ in range(20):
        s.submit(deliveries("slowish", 5))
        started = start_all(s)
        assert len(started) == 5
        clock.advance(1.0)  # every answer after 1 s
        s.check_slow()
        for d in started:
            finish(s, d, 1.0)
    assert s.demoted == 0 and s.take_changes() == []


async def test_the_threshold_follows_the_endpoints_usual_latency(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("ep"), concurrency=10, slow_after_s=2.0)
    for _ in range(10):  # answers in 1.5 s: its usual latency
        s.submit(deliveries("ep", 1))
        [d] = start_all(s)
        clock.advance(1.5)
        finish(s, d, 1.5)
    s.submit(deliveries("ep", 1))
    start_all(s)
    clock.advance(5.0)  # past 2 s, not past 5 x 1.5 s
    s.check_slow()
    assert s.demoted == 0
    clock.advance(3.0)
    s.check_slow()
    assert s.demoted == 1


async def test_an_endpoint_that_never_answered_starts_one_attempt_at_a_time_beside_others(
    clock: FakeClock,
) -> None:
    s = Scheduler(Limits(concurrency=10, endpoint_max_in_flight=5), clock)
    s.update_endpoint(endpoint("new"))
    s.update_endpoint(endpoint("other"))
    s.submit(deliveries("new", 5))
    s.submit(deliveries("other", 1))
    started = start_all(s)
    # it may be one that hangs: one at a time until it answers, while others have work
    assert sorted(d.endpoint_id for d in started) == ["new", "other"]
    first = next(d for d in started if d.endpoint_id == "new")
    clock.advance(0.05)
    finish(s, first, 0.05)
    assert len(start_all(s)) == 4  # answered: its whole cap


async def test_an_endpoint_alone_uses_its_whole_cap_from_the_start(clock: FakeClock) -> None:
    s = Scheduler(Limits(concurrency=10, endpoint_max_in_flight=5), clock)
    s.update_endpoint(endpoint("alone"))
    s.submit(deliveries("alone", 5))
    assert len(start_all(s)) == 5  # no one to protect: no slow start


async def test_endpoints_that_never_answered_hold_half_the_slots_while_others_wait(
    clock: FakeClock,
) -> None:
    s = Scheduler(Limits(concurrency=4, slow_lane=0), clock)
    for i in range(4):
        s.update_endpoint(endpoint(f"new{i}"))
        s.submit(deliveries(f"new{i}", 1))
    s.update_endpoint(endpoint("known"))
    pace = s.pace("known")
    assert pace is not None
    pace.latency_s = 0.02
    s.submit(deliveries("known", 4))
    started = start_all(s)
    assert sum(d.endpoint_id.startswith("new") for d in started) == 2
    assert sum(d.endpoint_id == "known" for d in started) == 2


async def test_a_quick_failure_without_an_answer_does_not_demote(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("ep"), concurrency=10, slow_after_s=2.0)
    s.submit(deliveries("ep", 3))
    for d in start_all(s):
        finish(s, d, 0.001, responded=False)  # connection refused
    assert s.demoted == 0


async def test_the_scheduler_hands_out_a_freed_slot_at_once(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("hang"), endpoint("ok"), concurrency=1, slow_lane=5)
    s.submit(deliveries("hang", 1))
    assert len(start_all(s)) == 1
    s.submit(deliveries("ok", 1))
    waiter = asyncio.ensure_future(s.next())
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.advance(2.1)
    s.check_slow()
    picked = await asyncio.wait_for(waiter, 1)
    assert picked[0].id == "ok"


async def test_an_endpoint_that_answers_slowly_but_always_is_restored_as_its_threshold_follows(
    clock: FakeClock,
) -> None:
    s = Scheduler(Limits(concurrency=10, endpoint_max_in_flight=3, slow_after_s=1.0), clock)
    s.update_endpoint(endpoint("slowish", cap=3))
    s.submit(deliveries("slowish", 1))
    [first] = start_all(s)
    clock.advance(1.2)
    s.check_slow()  # unknown, past 1 s: demoted
    assert s.demoted == 1
    clock.advance(0.3)
    finish(s, first, 1.5)  # it answers: its usual latency is 1.5 s, its threshold 7.5 s
    for _ in range(3):
        s.submit(deliveries("slowish", 3))
        for d in start_all(s):
            clock.advance(1.5)
            finish(s, d, 1.5)
        s.drain_queued()
    assert s.demoted == 0
    assert [c.demoted for c in s.take_changes()] == [True, False]


async def test_at_start_up_endpoints_that_hang_leave_the_regular_slots_in_half_a_second(
    clock: FakeClock,
) -> None:
    """No endpoint has answered yet (a daemon just started): twenty that hang fill every
    regular slot first. They must not keep them until their 2 s threshold, or an endpoint
    that answers in milliseconds waits that long behind them."""
    s = Scheduler(Limits(concurrency=10, slow_lane=20, slow_after_s=2.0), clock)
    for i in range(20):
        s.update_endpoint(endpoint(f"hang{i}"))
        s.submit(deliveries(f"hang{i}", 5))
    assert len(start_all(s)) == 10  # one each: they may be ones that hang
    s.update_endpoint(endpoint("ok"))
    s.submit(deliveries("ok", 1))
    clock.advance(0.4)
    s.check_slow()
    assert s.take_now() is None  # within their half second: the regular slots are full
    clock.advance(0.2)
    s.check_slow()
    # the first ten moved to the slow lane (not demoted: that waits for their threshold);
    # the next ten hanging ones were ahead of "ok" in the round
    assert s.slow_lane_in_use == 10 and s.demoted == 0
    second = start_all(s)
    assert len(second) == 10 and "ok" not in {d.endpoint_id for d in second}
    clock.advance(0.5)
    s.check_slow()
    # every hanging endpoint has its one attempt in the slow lane: nothing more of theirs
    # starts, and the one that answers gets a regular slot 1.1 s after start-up, not 2 s
    assert s.slow_lane_in_use == 20 and s.demoted == 0
    assert [d.endpoint_id for d in start_all(s)] == ["ok"]


async def test_an_unproven_attempt_keeps_its_slot_five_times_the_usual_answer_here(
    clock: FakeClock,
) -> None:
    s = Scheduler(Limits(concurrency=10, slow_lane=20, slow_after_s=2.0), clock)
    s.update_endpoint(endpoint("known"))
    s.submit(deliveries("known", 1))
    [known] = start_all(s)
    clock.advance(0.2)
    finish(s, known, 0.2)  # answers here take 200 ms: 1 s is five times that
    s.update_endpoint(endpoint("new"))
    s.submit(deliveries("new", 1))
    assert len(start_all(s)) == 1
    clock.advance(0.9)
    s.check_slow()
    assert s.slow_lane_in_use == 0
    clock.advance(0.2)
    s.check_slow()
    assert s.slow_lane_in_use == 1 and s.demoted == 0
    clock.advance(1.0)  # past its 2 s threshold: now it is slow, and demoted
    s.check_slow()
    assert s.demoted == 1


async def test_with_no_slow_lane_an_unproven_attempt_keeps_its_regular_slot(
    clock: FakeClock,
) -> None:
    s = Scheduler(Limits(concurrency=2, slow_lane=0, slow_after_s=2.0), clock)
    s.update_endpoint(endpoint("new"))
    s.submit(deliveries("new", 1))
    assert len(start_all(s)) == 1
    clock.advance(1.0)
    s.check_slow()
    assert s.slow_lane_in_use == 0 and s.capacity() == 1
